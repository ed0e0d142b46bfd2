#pragma once
// Access tokens for OAuth mailboxes, owned by the daemon: refreshed at the provider's token
// endpoint (core::HttpsClient) ahead of expiry, at most one refresh in flight per mailbox in this
// process, and — through a Redis lease — one per mailbox across the fleet, the fresh token shared
// sealed through Redis so N daemons do not refresh N times. A rotated refresh token is written
// durably (RefreshTokenStore::save_pending) before the access token that came with it is handed
// out, and kept next to the current one until it has worked once, so a daemon that dies at any
// point loses neither.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/https_client.h"
#include "core/result.h"
#include "core/timer.h"
#include "oauth/token_response.h"

namespace deliverd::queue {
class RedisClient;
}

namespace deliverd::oauth {

struct Provider {
  std::string name, token_url, client_id, client_secret, scope;
};

// What a refresh needs to know of one mailbox.
struct MailboxGrant {
  std::string mailbox;  // the key for the cache, the lease and the store
  std::string provider;
  // The current one; "" = read it from the store right before the refresh (the daemon keeps no
  // refresh token in memory: another daemon may have rotated it since).
  std::string refresh_token;
  std::string pending_refresh_token;  // saved but not yet seen to work; "" when none
};

struct AccessToken {
  std::string token;
  int64_t issued_ms = 0;   // wall clock (ms since the epoch), as shared through Redis
  int64_t expires_ms = 0;  // wall clock
};

// Why no token could be had (STYLE.md §7); the names are the outcome reasons.
enum class FailureKind : uint8_t { Revoked, Unavailable, ClientRejected, BadAnswer, NoProvider, StoreFailed };
constexpr std::string_view kFailureNames[] = {"oauth_revoked",    "oauth_unavailable", "oauth_client_rejected",
                                              "oauth_bad_answer", "oauth_no_provider", "oauth_store_failed"};
constexpr std::string_view to_string(FailureKind k) { return kFailureNames[static_cast<size_t>(k)]; }
// Revoked needs the user (reconnect the mailbox); every other kind may heal by itself.
constexpr bool is_permanent(FailureKind k) { return k == FailureKind::Revoked; }

struct TokenFailure {
  FailureKind kind = FailureKind::Unavailable;
  std::string detail;  // "invalid_grant: Token has been expired or revoked.", "timeout in tls", …
};

// The last refresh of a mailbox, for the API and logs.
struct RefreshRecord {
  int64_t at_ms = 0;
  std::string result;  // "ok" or a FailureKind name
  int64_t expires_ms = 0;
};

// Durable home of refresh tokens (PostgreSQL in the daemon). Each call answers once, on the loop.
class RefreshTokenStore {
 public:
  virtual ~RefreshTokenStore() = default;
  // Writes `token` as the pending refresh token of the mailbox and answers once it is durable.
  virtual void save_pending(const std::string& mailbox, const std::string& token, std::function<void(bool ok)> cb) = 0;
  // The pending token worked: it replaces the current one.
  virtual void promote_pending(const std::string& mailbox, std::function<void(bool ok)> cb) = 0;
  // The pending token was refused: it is forgotten; the current one stays.
  virtual void drop_pending(const std::string& mailbox, std::function<void(bool ok)> cb) = 0;
  // The tokens as stored now (another daemon may have rotated them); ok=false when unreadable.
  virtual void load(const std::string& mailbox, std::function<void(bool ok, MailboxGrant)> cb) = 0;
  virtual void record(const std::string& mailbox, const RefreshRecord& r) { (void)mailbox, (void)r; }
};

struct TokenManagerOptions {
  std::string redis_prefix = "deliverd:";
  std::string owner = "deliverd";  // this daemon's name in the lease
  int lease_ms = 30000;            // longer than a refresh may take (the client's total timeout)
  int poll_ms = 100;               // how often a daemon waiting on another's refresh looks again
  // A failure is given again, without asking the endpoint, for this long: every job of a mailbox
  // whose endpoint is down must not become a request. A revoked grant is remembered until
  // forget() (the mailbox changed: a new grant).
  int failure_hold_ms = 5000;
  // Seals the shared access token (store::SecretBox in the daemon); both must be set to share.
  std::function<std::string(std::string_view plain, std::string_view ad)> seal;
  std::function<core::Result<std::string, std::string>(std::string_view sealed, std::string_view ad)> open;
};

// How long before expiry a token counts as stale: 10 % of its lifetime, at least 1 s, at most
// 5 min — an hour-long Google token is refreshed 5 min early, a 5-second test token 1 s early.
int64_t refresh_margin_ms(int64_t lifetime_ms);

class TokenManager {
 public:
  // redis may be null (a lone daemon: no lease, no sharing). Everything must outlive the manager.
  TokenManager(uv_loop_t* loop, core::HttpsClient* https, queue::RedisClient* redis, RefreshTokenStore* store,
               TokenManagerOptions opts);
  ~TokenManager();
  TokenManager(const TokenManager&) = delete;
  TokenManager& operator=(const TokenManager&) = delete;

  void set_providers(std::vector<Provider> providers);
  const Provider* provider(const std::string& name) const;

  using Callback = std::function<void(core::Result<AccessToken, TokenFailure>)>;
  // A token that is not stale. The callback comes later on the loop (or at once when a fresh token
  // is in memory); callers that ask while a refresh runs wait for that refresh.
  void get(const MailboxGrant& grant, Callback cb);
  // The server refused `token` as expired or invalid: the next get() refreshes (unless another
  // daemon already shared a newer token).
  void invalidate(const std::string& mailbox, const std::string& token);
  // The mailbox changed (a new grant, another provider, removed): nothing remembered of it stays.
  void forget(const std::string& mailbox);
  // One refresh outside the cache, the lease and the store: the connection test of a grant that
  // is not stored yet. The answer may carry a rotated refresh token, which is the one to store.
  using ExchangeCallback = std::function<void(core::Result<TokenGrant, TokenFailure>)>;
  void request_grant(const std::string& provider, const std::string& refresh_token, ExchangeCallback cb);
  // Tokens in memory that expire within `ms`.
  size_t expiring_within(int64_t ms) const;
  // Refreshes done here (not those taken from Redis): by mailbox, for tests and logs.
  uint64_t refreshes() const { return refreshes_; }

 private:
  struct Flight;
  void start_flight(const std::string& mailbox);
  void look_shared(const std::string& mailbox);
  void try_lease(const std::string& mailbox);
  void load_and_refresh(const std::string& mailbox);
  void refresh(const std::string& mailbox, bool with_pending, bool reloaded);
  core::HttpsClient::RequestId exchange(const Provider& p, const std::string& refresh_token, ExchangeCallback cb);
  void on_grant(const std::string& mailbox, const std::string& used, bool used_pending, TokenGrant g, uint64_t t0);
  void publish(const std::string& mailbox, const AccessToken& t);
  void release_lease(const std::string& mailbox);
  void finish(const std::string& mailbox, core::Result<AccessToken, TokenFailure> r);
  void count(const std::string& provider, std::string_view result, uint64_t t0);
  std::string key(const std::string& mailbox, std::string_view what) const;
  bool fresh(const AccessToken& t) const;

  uv_loop_t* loop_;
  core::HttpsClient* https_;
  queue::RedisClient* redis_;
  RefreshTokenStore* store_;
  TokenManagerOptions opts_;
  std::vector<Provider> providers_;
  std::unordered_map<std::string, AccessToken> tokens_;
  std::unordered_map<std::string, std::unique_ptr<Flight>> flights_;
  struct Held {
    TokenFailure failure;
    int64_t until_ms = 0;  // INT64_MAX for a revoked grant
  };
  std::unordered_map<std::string, Held> held_;  // failures given again without a request
  std::shared_ptr<bool> alive_;
  uint64_t refreshes_ = 0;
};

}  // namespace deliverd::oauth
