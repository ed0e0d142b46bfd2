#pragma once
// Authentication of admin API requests: "Authorization: Bearer dlv_<prefix>_<secret>", looked up
// by prefix, compared by SHA-256 in constant time, refused when revoked or expired. Failed
// attempts draw from two token buckets: one per client address and one per (client address, key
// prefix). Nothing counts per prefix alone: the prefix is visible in every request that carries
// the key, so a bucket of its own would let anyone lock any key out. An empty bucket answers 429
// with Retry-After before the key is even looked at, so a throttled client learns nothing about
// the keys it tries; a client's failures never throttle another client address, and successful
// requests draw nothing.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>

#include "admin/failure_limiter.h"
#include "admin/http_types.h"
#include "admin/permissions.h"
#include "core/lifetime.h"
#include "store/pg_connection.h"

namespace deliverd::admin {

struct AuthConfig {
  double failure_burst = 20;          // failed attempts allowed at once per client address
  double prefix_failure_burst = 5;    // … and per (client address, key prefix)
  double failure_refill_per_s = 0.2;  // one more attempt every 5 s after that
  size_t max_tracked = 100000;        // buckets remembered per table (STYLE §4); the stalest go first
};

class Authenticator {
 public:
  using Callback = std::function<void(std::variant<Principal, Response>)>;
  Authenticator(uv_loop_t* loop, store::PgConnection* pg, AuthConfig config);
  // Answers a Principal, or the response to send (401, 429, 503).
  void authenticate(const Request& req, Callback cb);

 private:
  void refuse(const std::string& ip, const std::string& prefix, std::string_view reason, int status,
              std::string_view code, std::string_view message, const Callback& cb);
  uv_loop_t* loop_;
  store::PgConnection* pg_;
  AuthConfig config_;
  FailureLimiter by_ip_, by_ip_prefix_;
  core::Lifetime alive_;  // key lookups may answer after the authenticator is gone
};

}  // namespace deliverd::admin
