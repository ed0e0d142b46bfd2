#pragma once
// A bounded table of token buckets, one per key (a client address, an address and key prefix,
// …); the caller decides what draws a token (failed authentications, page views). Only keys that
// have drawn are remembered. When the table is full, the key that drew least recently is
// forgotten — in O(1), through a recency list beside the hash map — so a flood of new keys never
// makes the table refuse everyone, and no request scans the table.
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

namespace deliverd::admin {

class FailureLimiter {
 public:
  FailureLimiter(double burst, double refill_per_s, size_t max_tracked);
  FailureLimiter(const FailureLimiter&) = delete;
  FailureLimiter& operator=(const FailureLimiter&) = delete;

  // 0 when the key may draw now, else the seconds until it may (at least 1). Never adds the key;
  // a key whose bucket has refilled completely is forgotten, since it carries no information.
  int retry_after_s(std::string_view key, uint64_t now_ms);
  // Takes one token (the bucket starts full), and makes the key the most recent.
  void record_failure(std::string_view key, uint64_t now_ms);
  size_t tracked() const { return index_.size(); }

 private:
  struct Bucket {
    std::string key;
    double tokens;
    uint64_t at_ms;
  };
  using List = std::list<Bucket>;
  double level(Bucket& b, uint64_t now_ms) const;

  double burst_, refill_;
  size_t max_tracked_;
  List recent_;                                              // most recent first
  std::unordered_map<std::string_view, List::iterator> index_;  // views into the list's keys
};

// The limiter key of a client address: IPv6 addresses count by their /64 (one subscriber's
// network, as providers hand them out), IPv4 addresses as they are.
std::string limiter_key_for_address(const std::string& ip);

}  // namespace deliverd::admin
