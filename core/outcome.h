#pragma once
// The vocabulary every module shares: how a delivery attempt ended (DESIGN.md "Outcomes").
#include <string>
#include <string_view>

namespace deliverd::core {

enum class Status { Delivered, Deferred, Bounced, Suppressed, Rejected, Expired, Failed };

constexpr std::string_view to_string(Status s) {
  switch (s) {
    case Status::Delivered: return "delivered";
    case Status::Deferred: return "deferred";
    case Status::Bounced: return "bounced";
    case Status::Suppressed: return "suppressed";
    case Status::Rejected: return "rejected";
    case Status::Expired: return "expired";
    case Status::Failed: return "failed";
  }
  return "failed";
}

constexpr Status kAllStatuses[] = {Status::Delivered, Status::Deferred, Status::Bounced, Status::Suppressed,
                                   Status::Rejected,  Status::Expired,  Status::Failed};

// One SMTP reply as the server sent it: "550 5.1.1 no such user" → {550, "5.1.1", "no such user"}.
struct Reply {
  int code = 0;          // 0 when no reply was received (connect failure, timeout, …)
  std::string enhanced;  // "" when the server did not send an enhanced status code
  std::string text;      // the reply text, lines joined with "\n", without code prefixes
};

struct Outcome {
  Status status = Status::Failed;
  std::string phase;   // where it ended: "policy", "resolve", "connect", "banner", "ehlo", "mail", …
  std::string reason;  // short machine-readable cause: "rcpt_rejected", "ssrf_refused", "timeout", …
  Reply reply;
  std::string detail;  // human-readable explanation
  std::string host;    // the host name connected to (or tried)
  std::string ip;      // the vetted address actually used
  std::string tls_version;
  std::string tls_cipher;
  // Whose problem it was (smtp/classifier.h): "success", "recipient_permanent", "recipient_transient",
  // "mailbox", "throttled", "policy_auth"; "" when no SMTP exchange decided it.
  std::string fault;
};

}  // namespace deliverd::core
