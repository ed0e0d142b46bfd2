#pragma once
// Queue lag as metrics, polled every few seconds: stream length, entries pending in the group,
// age of the oldest pending entry (from its id's time), and jobs waiting in the retry set.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/lifetime.h"
#include "core/timer.h"
#include "queue/redis_client.h"

namespace deliverd::queue {

struct LagMonitorConfig {
  std::string stream = "deliverd:jobs", group = "deliverd", retry = "deliverd:retry";
  int interval_ms = 5000;
};

class LagMonitor {
 public:
  LagMonitor(uv_loop_t* loop, RedisClient& client, LagMonitorConfig cfg, std::function<int64_t()> now_ms);
  ~LagMonitor();
  LagMonitor(const LagMonitor&) = delete;
  LagMonitor& operator=(const LagMonitor&) = delete;
  void poll();  // also runs every interval_ms
  // From the last poll: age of the oldest pending entry (the queue lag operators watch).
  double oldest_pending_age_s() const { return oldest_pending_age_s_; }

 private:
  RedisClient& client_;
  LagMonitorConfig cfg_;
  std::function<int64_t()> now_ms_;
  core::TimerHandle timer_;
  double oldest_pending_age_s_ = 0;
  core::Lifetime alive_;  // replies may arrive after destruction
};

}  // namespace deliverd::queue
