#pragma once
// Turns one job into the bytes that go out: composition (smtp/composer: MIME, headers, the
// unsubscribe link and headers of campaign mail, the postal footer) and the DKIM signature of
// the sending domain. Pure apart from the clock it is given, so it is tested without a daemon.
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/outcome.h"
#include "core/result.h"
#include "queue/job.h"
#include "smtp/dkim.h"
#include "smtp/unsubscribe_token.h"
#include "store/mailboxes.h"

namespace deliverd::daemon {

// Message-IDs take the sender's domain (the mailbox's), never the daemon's host name, which would
// name the platform in every tenant's mail and tie the tenants together.
struct MessageBuilderConfig {
  std::string unsubscribe_base_url;  // our one-click endpoint ("" = none)
  std::string unsubscribe_mailto;    // default mailto for List-Unsubscribe ("" = none)
  std::string postal_address;        // CAN-SPAM footer of campaign mail, by default …
  std::map<std::string, std::string> account_postal_addresses;  // … and per account
};

// Why a job's message could not be built: the job ends with this (phase "policy").
struct BuildFailure {
  core::Status status;
  core::Reason reason;
  std::string detail;
};

// A [[dkim]] key and the accounts that may sign with it (["*"]: every account).
struct DomainKey {
  smtp::DkimSigner signer;
  std::vector<std::string> accounts;
};
using DomainKeys = std::map<std::string, DomainKey>;  // by sending domain (lower case)

class MessageBuilder {
 public:
  // tokens: our unsubscribe tokens when a key is configured. A message is signed only with a key
  // its account may use; another account's mailbox in that domain sends unsigned (and is logged).
  MessageBuilder(MessageBuilderConfig cfg, std::optional<smtp::UnsubscribeTokens> tokens, DomainKeys signers);

  core::Result<std::string, BuildFailure> build(const queue::Job& job, const store::Mailbox& mailbox,
                                                std::time_t now) const;

  // A reload's settings and keys; the token key is bound at start.
  void reconfigure(MessageBuilderConfig cfg, DomainKeys signers);
  const std::optional<smtp::UnsubscribeTokens>& tokens() const { return tokens_; }

 private:
  MessageBuilderConfig cfg_;
  std::optional<smtp::UnsubscribeTokens> tokens_;
  DomainKeys signers_;
};

}  // namespace deliverd::daemon
