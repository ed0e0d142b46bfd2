#include "daemon/message_builder.h"

#include "core/ascii.h"
#include "core/log.h"
#include "daemon/config.h"
#include "smtp/composer.h"

namespace deliverd::daemon {

MessageBuilder::MessageBuilder(MessageBuilderConfig cfg, std::optional<smtp::UnsubscribeTokens> tokens,
                               DomainKeys signers)
    : cfg_(std::move(cfg)), tokens_(std::move(tokens)), signers_(std::move(signers)) {}

void MessageBuilder::reconfigure(MessageBuilderConfig cfg, DomainKeys signers) {
  cfg_ = std::move(cfg);
  signers_ = std::move(signers);
}

core::Result<std::string, BuildFailure> MessageBuilder::build(const queue::Job& job, const store::Mailbox& mailbox,
                                                              std::time_t now) const {
  smtp::MessageSpec spec;
  spec.from_email = mailbox.email;
  spec.from_name = job.from_name;
  spec.to_email = job.to_email;
  spec.to_name = job.to_name;
  spec.reply_to = job.reply_to;
  spec.subject = job.subject;
  spec.text = job.text;
  spec.headers = job.headers;
  spec.html = job.html;
  spec.raw = job.raw;
  spec.campaign = job.campaign;
  if (!job.campaign.empty()) {
    spec.unsubscribe_url = job.unsubscribe_url;
    spec.unsubscribe_mailto = job.unsubscribe_mailto.empty() ? cfg_.unsubscribe_mailto : job.unsubscribe_mailto;
    if (spec.unsubscribe_url.empty() && tokens_ && !cfg_.unsubscribe_base_url.empty())
      spec.unsubscribe_url = cfg_.unsubscribe_base_url + "/u/" + tokens_->issue({job.account, job.to_email, job.campaign});
    auto postal = cfg_.account_postal_addresses.find(job.account);
    spec.postal_address = postal != cfg_.account_postal_addresses.end() ? postal->second : cfg_.postal_address;
  }
  auto composed = smtp::compose(spec, now);
  if (!composed) return core::Err(BuildFailure{core::Status::Rejected, core::Reason::InvalidMessage, composed.error()});
  std::string message = std::move(composed).value();
  const std::string from_domain = core::ascii_lowercase(mailbox.email.substr(mailbox.email.rfind('@') + 1));
  if (auto key = signers_.find(from_domain); key != signers_.end()) {
    if (!dkim_account_allowed(key->second.accounts, job.account)) {
      core::log_warn("dkim_key_not_allowed", {{"account", job.account},
                                              {"mailbox", mailbox.id},
                                              {"domain", from_domain},
                                              {"note", "[[dkim]] accounts does not name this account: sent unsigned"}});
      return message;
    }
    auto signed_message = key->second.signer.sign(message, now);
    if (!signed_message)
      return core::Err(BuildFailure{core::Status::Failed, core::Reason::DkimFailed, signed_message.error()});
    message = std::move(signed_message).value();
  }
  return message;
}

}  // namespace deliverd::daemon
