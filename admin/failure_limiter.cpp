#include "admin/failure_limiter.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>

namespace deliverd::admin {

FailureLimiter::FailureLimiter(double burst, double refill_per_s, size_t max_tracked)
    : burst_(burst), refill_(refill_per_s), max_tracked_(std::max<size_t>(1, max_tracked)) {}

double FailureLimiter::level(Bucket& b, uint64_t now_ms) const {
  if (now_ms > b.at_ms) {
    b.tokens = std::min(burst_, b.tokens + refill_ * static_cast<double>(now_ms - b.at_ms) / 1000.0);
    b.at_ms = now_ms;
  }
  return b.tokens;
}

int FailureLimiter::retry_after_s(std::string_view key, uint64_t now_ms) {
  auto it = index_.find(key);
  if (it == index_.end()) return 0;
  double t = level(*it->second, now_ms);
  if (t >= burst_) {
    List::iterator node = it->second;
    index_.erase(it);
    recent_.erase(node);
    return 0;
  }
  if (t >= 1.0) return 0;
  if (refill_ <= 0) return 3600;
  return std::max(1, static_cast<int>(std::ceil((1.0 - t) / refill_)));
}

void FailureLimiter::record_failure(std::string_view key, uint64_t now_ms) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    if (index_.size() >= max_tracked_) {
      index_.erase(std::string_view(recent_.back().key));
      recent_.pop_back();
    }
    recent_.push_front(Bucket{std::string(key), burst_, now_ms});
    it = index_.emplace(std::string_view(recent_.front().key), recent_.begin()).first;
  } else {
    recent_.splice(recent_.begin(), recent_, it->second);  // iterators stay valid
  }
  Bucket& b = *it->second;
  level(b, now_ms);
  b.tokens = std::max(0.0, b.tokens - 1.0);
}

std::string limiter_key_for_address(const std::string& ip) {
  in6_addr a6{};
  if (ip.find(':') == std::string::npos || inet_pton(AF_INET6, ip.c_str(), &a6) != 1) return ip;
  std::fill(a6.s6_addr + 8, a6.s6_addr + 16, 0);
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, &a6, buf, sizeof buf);
  return std::string(buf) + "/64";
}

}  // namespace deliverd::admin
