#include "inbound/arf.h"

#include "core/ascii.h"
#include "inbound/headers.h"

namespace deliverd::inbound {

core::Result<FeedbackReport, std::string> parse_feedback_report(std::string_view body) {
  HeaderLimits limits;
  limits.max_fields = 64;
  limits.max_bytes = 16 * 1024;
  // Some reporters start the part with an empty line; the fields are one block after it.
  size_t start = 0;
  while (start < body.size() && (body[start] == '\r' || body[start] == '\n')) ++start;
  Headers h = parse_headers(body.substr(start), nullptr, limits);
  FeedbackReport r;
  std::string_view type = h.value("Feedback-Type");
  size_t end = type.find_first_of(" \t;(");
  r.feedback_type = core::ascii_lowercase(type.substr(0, end));
  if (r.feedback_type.empty()) return core::Err{std::string("the report has no Feedback-Type")};
  r.user_agent = std::string(h.value("User-Agent"));
  r.version = std::string(h.value("Version"));
  r.original_mail_from = address_in(h.value("Original-Mail-From"));
  r.original_rcpt_to = address_in(h.value("Original-Rcpt-To"));
  r.arrival_date = std::string(h.value("Arrival-Date"));
  if (r.arrival_date.empty()) r.arrival_date = std::string(h.value("Received-Date"));
  r.source_ip = std::string(h.value("Source-IP"));
  r.reported_domain = std::string(h.value("Reported-Domain"));
  return r;
}

}  // namespace deliverd::inbound
