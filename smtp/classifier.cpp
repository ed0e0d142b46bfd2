#include "smtp/classifier.h"

#include <algorithm>
#include <array>

#include "core/ascii.h"

namespace deliverd::smtp {
namespace {

using core::Status;

constexpr std::array<KnownReply, 22> kKnown = {{
    // Gmail
    {550, "5.4.5", "", Fault::Mailbox, Status::Deferred, "gmail_daily_sending_quota"},
    {421, "4.7.28", "", Fault::Throttled, Status::Deferred, "gmail_unsolicited_rate"},
    {421, "4.7.0", "", Fault::Throttled, Status::Deferred, "gmail_try_again_later"},
    {450, "4.2.1", "", Fault::RecipientTransient, Status::Deferred, "gmail_recipient_rate"},
    {452, "4.2.2", "", Fault::RecipientTransient, Status::Deferred, "recipient_over_quota"},
    {454, "4.7.0", "login", Fault::Throttled, Status::Deferred, "gmail_too_many_logins"},
    {550, "5.7.26", "", Fault::PolicyAuth, Status::Failed, "dmarc_unauthenticated"},
    {535, "5.7.8", "", Fault::PolicyAuth, Status::Failed, "gmail_bad_credentials"},
    {534, "5.7.9", "", Fault::PolicyAuth, Status::Failed, "gmail_app_password_required"},
    {534, "5.7.14", "", Fault::PolicyAuth, Status::Failed, "gmail_web_login_required"},
    {550, "5.7.1", "daily", Fault::Mailbox, Status::Deferred, "daily_limit"},
    // Microsoft 365 / Exchange Online
    {432, "4.3.2", "", Fault::Throttled, Status::Deferred, "m365_concurrency_limit"},
    {554, "5.2.0", "", Fault::Mailbox, Status::Failed, "m365_submission_exception"},
    {550, "5.7.515", "", Fault::PolicyAuth, Status::Failed, "m365_auth_level"},
    {535, "5.7.3", "", Fault::PolicyAuth, Status::Failed, "m365_auth_unsuccessful"},
    {535, "5.7.139", "", Fault::PolicyAuth, Status::Failed, "m365_basic_auth_disabled"},
    {550, "5.7.708", "", Fault::Throttled, Status::Deferred, "m365_ip_blocked"},
    {550, "5.7.511", "", Fault::PolicyAuth, Status::Failed, "m365_banned_sender"},
    {554, "5.7.1", "sendasdenied", Fault::PolicyAuth, Status::Failed, "m365_send_as_denied"},
    {451, "4.7.500", "", Fault::Throttled, Status::Deferred, "m365_server_busy"},
    {452, "4.3.1", "", Fault::Mailbox, Status::Deferred, "insufficient_storage"},
    // Generic provider wording for sending limits (Yahoo, Zoho, …).
    {0, "", "sending limit", Fault::Mailbox, Status::Deferred, "sending_limit_text"},
}};

bool recipient_phase(core::Phase phase) { return phase == core::Phase::Rcpt || phase == core::Phase::Body; }

}  // namespace

std::span<const KnownReply> known_replies() { return kKnown; }

Fault network_fault(bool relay) { return relay ? Fault::Mailbox : Fault::RecipientTransient; }

Classification classify(const core::Reply& r, core::Phase phase, bool relay) {
  if (r.code >= 200 && r.code < 400) return {Fault::Success, Status::Delivered, "positive"};
  for (const auto& k : kKnown) {
    if (k.code != 0 && k.code != r.code) continue;
    if (!k.enhanced.empty() && k.enhanced != r.enhanced) continue;
    if (!core::icontains(r.text, k.text)) continue;
    return {k.fault, k.status, k.rule};
  }
  bool permanent = r.code >= 500;
  std::string_view enh = r.enhanced;
  if (phase == core::Phase::Auth)
    return permanent ? Classification{Fault::PolicyAuth, Status::Failed, "auth_rejected"}
                     : Classification{Fault::Throttled, Status::Deferred, "auth_tempfail"};
  if (r.code == 421) return {Fault::Throttled, Status::Deferred, "service_closing"};
  if (enh.starts_with("4.7.")) return {Fault::Throttled, Status::Deferred, "security_tempfail"};
  if (recipient_phase(phase)) {
    if (!permanent) return {Fault::RecipientTransient, Status::Deferred, "recipient_tempfail"};
    return {Fault::RecipientPermanent, Status::Bounced, "recipient_rejected"};
  }
  if (enh.starts_with("5.7.")) return {Fault::PolicyAuth, Status::Failed, "sender_policy"};
  if (!permanent) return {relay ? Fault::Mailbox : Fault::RecipientTransient, Status::Deferred, "server_tempfail"};
  // A permanent refusal before the recipient: our name, our sender address or ourselves.
  return {relay ? Fault::Mailbox : Fault::PolicyAuth, Status::Failed, "server_rejected"};
}

}  // namespace deliverd::smtp
