#pragma once
// The access tokens of OAuth mailboxes, for the daemon's sends: oauth::TokenManager over the
// loop's HTTPS client (names through the resolver, so the target policy vets the token endpoint
// like any other peer), Redis (the refresh lease and the sealed shared token) and the grants in
// PostgreSQL (store/oauth_grants.h). A token that cannot be had becomes an outcome here.
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/outcome.h"
#include "core/result.h"
#include "core/tls_context.h"
#include "oauth/token_manager.h"
#include "store/mailboxes.h"

namespace deliverd {
namespace dns {
class Resolver;
class ResolverLookup;
}  // namespace dns
namespace queue {
class RedisClient;
}
namespace store {
class PgConnection;
class SecretBox;
}  // namespace store
}  // namespace deliverd

namespace deliverd::daemon {

struct OAuthTokensParts {
  uv_loop_t* loop = nullptr;
  dns::Resolver* resolver = nullptr;
  std::shared_ptr<core::TlsContext> tls;  // the [smtp] trust: system CAs + ca_file
  queue::RedisClient* redis = nullptr;
  store::PgConnection* pg = nullptr;
  const store::SecretBox* secrets = nullptr;
  std::string redis_prefix;  // [policy] redis_prefix
  std::string owner;         // this daemon's consumer name, for the lease
  std::vector<oauth::Provider> providers;
};

// What a job of an OAuth mailbox ends as when no token could be had: revoked → failed (the user
// must connect the mailbox again); everything else → deferred, a fault of the mailbox (the
// breaker counts it), so the job waits out the endpoint's outage in the retry set.
core::Outcome oauth_failure_outcome(const oauth::TokenFailure& f, const std::string& provider);

class OAuthTokens {
 public:
  explicit OAuthTokens(OAuthTokensParts parts);
  ~OAuthTokens();
  OAuthTokens(const OAuthTokens&) = delete;
  OAuthTokens& operator=(const OAuthTokens&) = delete;

  using TokenCallback = std::function<void(core::Result<std::string, oauth::TokenFailure>)>;
  // An access token for the mailbox (m.oauth_provider set); the callback may come at once.
  void token(const store::Mailbox& m, TokenCallback cb);
  // For the connection test: an access token from a refresh. A grant not stored yet (the refresh
  // token in m) is refreshed once on its own; the answer's rotated refresh token, if any, is
  // handed back to be stored instead of the one given. A stored grant goes through token().
  struct ProbeToken {
    std::string access_token;
    std::string rotated_refresh_token;  // "" when the provider did not rotate it
  };
  void probe_token(const store::Mailbox& m, std::function<void(core::Result<ProbeToken, oauth::TokenFailure>)> cb);
  // The server refused `token` (AUTH 535): the next token() refreshes.
  void refused(const store::Mailbox& m, const std::string& token);
  // The mailbox changed (a new grant, removed): what was remembered of it goes.
  void forget(const store::MailboxRef& ref);
  // On reload: the [[oauth]] providers and the TLS trust as configured now.
  void reconfigure(std::vector<oauth::Provider> providers, std::shared_ptr<core::TlsContext> tls);

 private:
  class GrantStore;
  std::unique_ptr<dns::ResolverLookup> lookup_;
  core::HttpsClient* https_ = nullptr;
  std::unique_ptr<GrantStore> store_;
  std::unique_ptr<oauth::TokenManager> manager_;
};

}  // namespace deliverd::daemon
