#pragma once
// Abuse reports in the Abuse Reporting Format (RFC 5965): the message/feedback-report part of a
// multipart/report; report-type=feedback-report. Only the fields deliverd acts on are kept.
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::inbound {

struct FeedbackReport {
  std::string feedback_type;  // lower-case: "abuse", "fraud", "not-spam", "virus", "other", …
  std::string user_agent, version;
  std::string original_mail_from;  // address only
  std::string original_rcpt_to;    // address only: the complaining recipient, when the reporter says
  std::string arrival_date;
  std::string source_ip;
  std::string reported_domain;
};

// An error when Feedback-Type is missing (RFC 5965 3.1 makes it required).
core::Result<FeedbackReport, std::string> parse_feedback_report(std::string_view body);

}  // namespace deliverd::inbound
