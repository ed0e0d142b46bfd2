#pragma once
// Retention by age for the streams deliverd appends to but does not consume: results and dead
// letters. MAXLEN ~ at every XADD bounds their length; this bounds their age too, so a quiet
// system does not keep a million old events for ever. Every interval, per stream,
// XTRIM <stream> MINID ~ <now − max_age> LIMIT <limit>: whole stream nodes only (cheap), at most
// `limit` entries per call so one call never holds Redis for long; a call that hit the limit is
// followed by another shortly after.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/lifetime.h"
#include "core/timer.h"
#include "queue/redis_client.h"

namespace deliverd::queue {

struct TrimmedStream {
  std::string key;
  int64_t max_age_ms = 0;  // 0: no age limit
};

struct StreamTrimmerConfig {
  std::vector<TrimmedStream> streams;
  size_t limit = 10000;  // entries per XTRIM call
  uint64_t again_ms = 100;  // after a call that hit the limit
};

class StreamTrimmer {
 public:
  // client must outlive the trimmer. now_ms is the wall clock (entry ids are wall-clock times).
  StreamTrimmer(uv_loop_t* loop, RedisClient& client, StreamTrimmerConfig cfg, std::function<int64_t()> now_ms);
  ~StreamTrimmer();
  StreamTrimmer(const StreamTrimmer&) = delete;
  StreamTrimmer& operator=(const StreamTrimmer&) = delete;

  // Every stream once every interval: min(60 s, its age / 4), at least 1 s.
  void start();
  // One round now; done gets the entries removed (-1 on an error).
  void trim_once(std::function<void(long long removed)> done = {});
  // Reload: new ages apply from the next round.
  void set_streams(std::vector<TrimmedStream> streams) { cfg_.streams = std::move(streams); }
  uint64_t interval_ms() const;

 private:
  void trim(size_t index, long long removed, std::function<void(long long)> done);
  RedisClient& client_;
  StreamTrimmerConfig cfg_;
  std::function<int64_t()> now_ms_;
  uv_loop_t* loop_;
  core::TimerHandle timer_;
  bool running_ = false;
  core::Lifetime alive_;  // last: ends first, before the members callbacks use
};

}  // namespace deliverd::queue
