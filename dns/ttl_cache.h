#pragma once
// Answers kept for their TTL, at most max_entries of them (least recently used goes first), the
// count mirrored in a gauge. Shared by dns::Resolver and dns::TlsaResolver; times are the loop's
// milliseconds (uv_now).
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/metrics.h"

namespace deliverd::dns {

template <class V>
class TtlCache {
 public:
  TtlCache(size_t max_entries, core::Gauge& entries) : max_(max_entries), entries_(entries) {}
  ~TtlCache() { clear(); }
  TtlCache(const TtlCache&) = delete;
  TtlCache& operator=(const TtlCache&) = delete;

  // ttl_s 0, or a cache of size 0, keeps nothing.
  void put(const std::string& key, V value, uint32_t ttl_s, uint64_t now_ms) {
    if (max_ == 0 || ttl_s == 0) return;
    uint64_t expires = now_ms + uint64_t{ttl_s} * 1000;
    if (auto it = map_.find(key); it != map_.end()) {
      it->second.value = std::move(value);
      it->second.expires_ms = expires;
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return;
    }
    while (map_.size() >= max_ && !lru_.empty()) {
      map_.erase(lru_.back());
      lru_.pop_back();
      entries_.dec();
    }
    lru_.push_front(key);
    map_.emplace(key, Entry{std::move(value), expires, lru_.begin()});
    entries_.inc();
  }

  // The unexpired value, or nullptr; valid until the next put or clear.
  const V* get(const std::string& key, uint64_t now_ms) {
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    if (it->second.expires_ms <= now_ms) {
      lru_.erase(it->second.lru);
      map_.erase(it);
      entries_.dec();
      return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return &it->second.value;
  }

  void clear() {
    entries_.dec(static_cast<double>(map_.size()));
    map_.clear();
    lru_.clear();
  }
  size_t size() const { return map_.size(); }

 private:
  struct Entry {
    V value;
    uint64_t expires_ms = 0;
    std::list<std::string>::iterator lru;
  };
  size_t max_;
  core::Gauge& entries_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;  // front = most recently used
};

}  // namespace deliverd::dns
