#pragma once
// Authentication of admin API requests: "Authorization: Bearer dlv_<prefix>_<secret>", looked up
// by prefix, compared by SHA-256 in constant time, refused when revoked or expired. Failed
// attempts draw from two token buckets, one per client address and one per key prefix; an empty
// bucket answers 429 with Retry-After before the key is even looked at, so a throttled client
// learns nothing about the keys it tries. Successful requests draw nothing.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <variant>

#include "core/lifetime.h"
#include "admin/http_types.h"
#include "admin/permissions.h"
#include "store/pg_connection.h"

namespace deliverd::admin {

struct AuthConfig {
  double failure_burst = 20;          // failed attempts allowed at once per address and per prefix
  double failure_refill_per_s = 0.2;  // one more attempt every 5 s after that
  size_t max_tracked = 100000;        // buckets remembered (STYLE §4); full buckets go first
};

// A token bucket per key (client address or key prefix); only failures take tokens.
class FailureLimiter {
 public:
  explicit FailureLimiter(double burst, double refill_per_s, size_t max_tracked)
      : burst_(burst), refill_(refill_per_s), max_tracked_(max_tracked) {}
  // 0 when an attempt may go ahead, else the seconds until one may (at least 1).
  int retry_after_s(const std::string& key, uint64_t now_ms);
  void record_failure(const std::string& key, uint64_t now_ms);
  size_t tracked() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens;
    uint64_t at_ms;
  };
  double level(Bucket& b, uint64_t now_ms) const;
  void evict(uint64_t now_ms);
  double burst_, refill_;
  size_t max_tracked_;
  std::unordered_map<std::string, Bucket> buckets_;
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
  FailureLimiter by_ip_, by_prefix_;
  core::Lifetime alive_;  // key lookups may answer after the authenticator is gone
};

}  // namespace deliverd::admin
