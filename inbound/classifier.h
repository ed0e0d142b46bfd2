#pragma once
// What a message in a sending mailbox's inbox says about mail deliverd sent: a bounce or a
// delay (RFC 3464 / RFC 6533 DSNs, and the plain-text notices of qmail, Exim, Microsoft
// Exchange / 365, Gmail and Yahoo), a complaint (RFC 5965 ARF), an automatic reply (RFC 3834
// and the headers and subjects that predate it), a reply (a message naming earlier Message-IDs),
// or nothing. The classifier only reads; which job a signal belongs to is correlation's
// question (the referenced ids, the recipients), and what a bounce status means for suppression
// is the policy's (policy::is_hard_bounce on the outcome built from it).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "inbound/dsn.h"
#include "inbound/mime.h"

namespace deliverd::inbound {

enum class SignalKind : uint8_t { Ignored, Bounce, Delay, Complaint, AutoReply, Reply };
// "ignored", "bounce", "delay", "complaint", "auto_reply", "reply": the result event's `event`.
std::string_view to_string(SignalKind k);
inline constexpr SignalKind kAllSignalKinds[] = {SignalKind::Ignored,   SignalKind::Bounce,    SignalKind::Delay,
                                                 SignalKind::Complaint, SignalKind::AutoReply, SignalKind::Reply};

struct SignalRecipient {
  std::string address;  // as the report gives it (core::parse_address normalises)
  DsnAction action = DsnAction::Unknown;
  std::string status;      // "5.1.1"; inferred from the text for notices without one
  std::string diagnostic;  // the remote server's answer, as reported
  std::string remote_mta;
};

struct Signal {
  SignalKind kind = SignalKind::Ignored;
  std::string_view rule;  // what decided: "rfc3464", "qmail", "arf", "auto_submitted", …
  std::vector<SignalRecipient> recipients;  // Bounce/Delay: the failed or delayed ones;
                                            // Complaint, AutoReply, Reply: the one it came from
  // Message-IDs the signal is about, most telling first: the returned message's, then
  // In-Reply-To, then References (newest first).
  std::vector<std::string> referenced_ids;
  std::string message_id;  // the signal message's own, without brackets
  std::string date;        // its Date field, as sent
  std::string from;        // its From address
  std::string subject;     // decoded (RFC 2047), for logs
  std::string feedback_type;  // Complaint: ARF Feedback-Type
  std::string error;          // a report part that was there but did not parse
};

Signal classify(const Message& m);

}  // namespace deliverd::inbound
