// Fuzz target: the IMAP response parser, fed hostile server bytes split into chunks at
// input-chosen points, with small limits so every bound (literal, line, response, depth, values)
// is reached often; and the same bytes parsed as one framed response.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "inbound/fetch_plan.h"
#include "inbound/imap_parser.h"

namespace {

size_t count_parts(const deliverd::inbound::BodyPart& p) {
  size_t n = 1;
  for (const auto& c : p.parts) n += count_parts(c);
  return n;
}

// Whatever structure a server claims, the plan stays within its bounds and the message built
// from the same response's sections stays within the MIME limits.
void plan_and_assemble(const deliverd::inbound::FetchData& f) {
  if (!f.body_structure) return;
  deliverd::inbound::FetchPlanLimits plan_limits;
  plan_limits.max_sections = 6;
  auto plan = deliverd::inbound::plan_fetch(*f.body_structure, plan_limits);
  if (plan.sections.empty() || plan.sections.size() > plan_limits.max_sections || plan.sections[0].section != "HEADER")
    std::abort();
  deliverd::inbound::MimeLimits mime;
  mime.max_part_bytes = 512;
  auto m = deliverd::inbound::assemble_message(plan, f, mime);
  if (m.parts.size() > plan.sections.size() - 1) std::abort();
  for (const auto& p : m.parts)
    if (p.body.size() > mime.max_part_bytes) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t chunk = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  deliverd::inbound::ParserLimits limits;
  limits.max_literal = 4096;
  limits.max_response = 16384;
  limits.max_line = 2048;
  limits.max_depth = 16;
  limits.max_values = 2048;
  deliverd::inbound::ResponseParser parser(limits);
  for (size_t off = 0; off < in.size(); off += chunk) {
    parser.feed(in.substr(off, chunk));
    for (;;) {
      auto r = parser.next();
      if (!r || !r.value()) break;
      const auto& resp = *r.value();
      if (resp.wire_bytes > limits.max_response) std::abort();
      if (resp.fetch.body_structure && count_parts(*resp.fetch.body_structure) > limits.max_values) std::abort();
      for (const auto& s : resp.fetch.sections)
        if (s.data && s.data->size() > limits.max_literal + limits.max_line) std::abort();
      plan_and_assemble(resp.fetch);
    }
    // Bounded: at most one response in the making plus one read.
    if (parser.buffered() > limits.max_response + chunk + 2) std::abort();
  }
  if (auto whole = deliverd::inbound::parse_response(in, limits); whole.ok()) plan_and_assemble(whole->fetch);
  return 0;
}
