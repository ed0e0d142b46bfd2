#include "policy/signals.h"

namespace deliverd::policy {

std::string_view to_string(Signal s) {
  switch (s) {
    case Signal::Neutral:
      return "neutral";
    case Signal::Success:
      return "success";
    case Signal::Failure:
      return "failure";
    case Signal::AuthFailure:
      return "auth_failure";
    case Signal::Quota:
      return "quota";
  }
  return "neutral";
}

Signal breaker_signal(const core::Outcome& o) {
  using core::Fault;
  const Fault f = o.fault;
  if (o.status == core::Status::Delivered || f == Fault::Success) return Signal::Success;
  // Recipient faults never count, whatever their code (DESIGN.md: they bounce, not trip).
  if (f == Fault::RecipientPermanent || f == Fault::RecipientTransient) return Signal::Neutral;
  if (f == Fault::None) return Signal::Neutral;  // no SMTP exchange decided it (policy, bad envelope)
  if (o.reply.enhanced == "5.4.5" || o.reply.enhanced == "5.2.0") return Signal::Quota;
  const bool auth_reply = o.reply.code == 535 || o.reply.code == 534 || o.reply.code == 530;
  if (o.phase == core::Phase::Auth && (f == Fault::PolicyAuth || auth_reply)) return Signal::AuthFailure;
  if (f == Fault::Mailbox || f == Fault::Throttled || f == Fault::PolicyAuth) return Signal::Failure;
  return Signal::Neutral;
}

bool counts_as_send(const core::Outcome& o) {
  return o.status == core::Status::Delivered || o.status == core::Status::Bounced;
}

bool is_hard_bounce(const core::Outcome& o) {
  if (o.status != core::Status::Bounced) return false;
  const std::string& e = o.reply.enhanced;
  if (e.rfind("5.1.", 0) == 0 || e == "5.2.1") return true;
  if (e.empty() && o.fault == core::Fault::RecipientPermanent)
    return o.reply.code == 550 || o.reply.code == 551 || o.reply.code == 553;
  return false;
}

}  // namespace deliverd::policy
