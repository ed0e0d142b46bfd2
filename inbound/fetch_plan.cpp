#include "inbound/fetch_plan.h"

#include <string_view>

#include "core/ascii.h"
#include "inbound/headers.h"

namespace deliverd::inbound {
namespace {

// Report parts are what a classifier decides on, so they are fetched whole (up to the bound).
bool is_report_part(const BodyPart& p) {
  if (p.type == "text") return p.subtype == "rfc822-headers";
  if (p.type != "message") return false;
  return p.subtype == "delivery-status" || p.subtype == "global-delivery-status" || p.subtype == "feedback-report" ||
         p.subtype == "global-headers" || p.subtype == "disposition-notification";
}

bool is_returned_message(const BodyPart& p) {
  return p.type == "message" && (p.subtype == "rfc822" || p.subtype == "global");
}

ContentType type_of(const BodyPart& p) {
  ContentType t;
  t.type = p.type;
  t.subtype = p.subtype;
  t.params = p.params;
  return t;
}

// What the walk found, by priority: when a message has more parts than the plan allows, the
// report parts win over the returned header, and both over the notice text.
struct Candidates {
  std::vector<PlannedSection> reports, returned, texts;
};

// Never below an encapsulated message: its parts are the mail we sent, not the notice about it.
// The depth is bounded by the parser's max_depth, so the recursion is too.
void collect(const BodyPart& p, Candidates& out) {
  if (p.multipart()) {
    for (const auto& child : p.parts) collect(child, out);
    return;
  }
  if (is_report_part(p)) {
    out.reports.push_back({p.section, type_of(p), p.encoding});
  } else if (is_returned_message(p)) {
    // Only the header: Message-ID, To and Subject are all correlation needs, and the body may be
    // the whole campaign mail with its attachments.
    out.returned.push_back({p.section + ".HEADER", type_of(p), ""});
  } else if (p.type == "text" && p.subtype == "plain" && p.disposition != "attachment") {
    if (out.texts.size() < 2) out.texts.push_back({p.section, type_of(p), p.encoding});
  }
}

// Base64 cut by a partial fetch ends in an incomplete quantum, which the strict decoder refuses
// (decode_transfer then hands back the encoded text). Complete base64 always ends on a quantum,
// padded, so only a cut body loses anything here.
std::string_view whole_base64_quanta(std::string_view data, bool& cut) {
  if (data.find('=') != std::string_view::npos) return data;
  size_t chars = 0, keep = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    char c = data[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (++chars % 4 == 0) keep = i + 1;
  }
  if (chars % 4 == 0) return data;
  cut = true;
  return data.substr(0, keep);
}

}  // namespace

std::vector<std::string> FetchPlan::names() const {
  std::vector<std::string> out;
  out.reserve(sections.size());
  for (const auto& s : sections) out.push_back(s.section);
  return out;
}

FetchPlan plan_fetch(const BodyPart& structure, const FetchPlanLimits& limits) {
  FetchPlan plan;
  ContentType header_type;  // the top-level header block is RFC 5322 text
  plan.sections.push_back({"HEADER", header_type, ""});
  Candidates c;
  collect(structure, c);
  size_t max = limits.max_sections < 1 ? 1 : limits.max_sections;
  for (auto* group : {&c.reports, &c.returned, &c.texts})
    for (auto& s : *group)
      if (plan.sections.size() < max) plan.sections.push_back(std::move(s));
  return plan;
}

Message assemble_message(const FetchPlan& plan, const FetchData& data, const MimeLimits& limits) {
  Message m;
  for (size_t i = 0; i < plan.sections.size(); ++i) {
    const PlannedSection& planned = plan.sections[i];
    const BodySection* got = data.section(planned.section);
    if (!got || !got->data) {
      m.truncated = true;
      continue;
    }
    if (i == 0) {
      m.headers = parse_headers(*got->data);
      if (m.headers.truncated) m.truncated = true;
      continue;
    }
    if (m.parts.size() >= limits.max_parts) {
      m.truncated = true;
      break;
    }
    Part p;
    p.type = planned.type;
    std::string_view raw = *got->data;
    if (core::iequals(planned.encoding, "base64")) raw = whole_base64_quanta(raw, p.truncated);
    p.body = decode_transfer(raw, planned.encoding);
    if (p.body.size() > limits.max_part_bytes) {
      p.body.resize(limits.max_part_bytes);
      p.truncated = true;
    }
    if (p.truncated) m.truncated = true;
    m.parts.push_back(std::move(p));
  }
  return m;
}

}  // namespace deliverd::inbound
