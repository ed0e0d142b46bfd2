// Fuzz target: a whole message through the MIME walker and the classifier, with small limits so
// the depth, part and byte bounds are reached often. Whatever the bytes, the signal is bounded
// and its text fields are what a result event can carry.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/utf8.h"
#include "inbound/classifier.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  deliverd::inbound::MimeLimits limits;
  limits.max_depth = 4;
  limits.max_parts = 8;
  limits.max_part_bytes = 4096;
  auto m = deliverd::inbound::parse_message(in, limits);
  if (m.parts.size() > limits.max_parts) std::abort();
  for (const auto& p : m.parts)
    if (p.body.size() > limits.max_part_bytes) std::abort();
  auto s = deliverd::inbound::classify(m);
  if (s.recipients.size() > deliverd::inbound::kMaxDsnRecipients || s.referenced_ids.size() > 64) std::abort();
  if (!deliverd::core::is_valid_utf8(s.subject)) std::abort();
  if (s.kind == deliverd::inbound::SignalKind::Ignored && !s.recipients.empty()) std::abort();
  return 0;
}
