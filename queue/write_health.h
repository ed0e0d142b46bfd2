#pragma once
// Whether Redis takes writes. A Redis at maxmemory (OOM), a replica after a failover (READONLY),
// one whose last save failed (MISCONF) or one short of its min-replicas (NOREPLICAS) still
// answers reads, and XREADGROUP is not refused under OOM: a daemon that kept reading would send
// messages whose outcome, idempotency marker and ack it cannot record. So the first refused
// write stops intake (the Consumer is held), a gauge and a log line say why, and a small probe
// write every probe_ms finds out when writes are taken again; then intake resumes by itself.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/lifetime.h"
#include "core/timer.h"
#include "queue/redis_client.h"

namespace deliverd::queue {

struct WriteHealthConfig {
  std::string probe_key = "deliverd:probe";  // + ":" + consumer name: one small key per daemon
  int probe_ms = 1000;
};

class WriteHealth {
 public:
  // client must outlive this object; its write-refusal handler is set here.
  WriteHealth(uv_loop_t* loop, RedisClient& client, WriteHealthConfig cfg);
  ~WriteHealth();
  WriteHealth(const WriteHealth&) = delete;
  WriteHealth& operator=(const WriteHealth&) = delete;

  bool accepting() const { return reason_.empty(); }
  const std::string& reason() const { return reason_; }
  // Called on every change (false: writes refused, with the reason; true: taken again).
  void on_change(std::function<void(bool accepting)> fn) { on_change_ = std::move(fn); }
  // A reply that refused a write (what the client's handler passes on).
  void refused(std::string_view reason, const std::string& error);

 private:
  void probe();
  RedisClient& client_;
  WriteHealthConfig cfg_;
  std::string reason_;
  uint64_t since_ms_ = 0;
  uv_loop_t* loop_;
  core::TimerHandle probe_timer_;
  std::function<void(bool)> on_change_;
  core::Lifetime alive_;  // last: ends first, before the members callbacks use
};

}  // namespace deliverd::queue
