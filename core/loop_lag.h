#pragma once
// How long the event loop goes without looking for new I/O. Each turn's busy time — the turn's
// length less the time it waited in the kernel for events (libuv's idle-time metric) — is the
// longest any event arriving during that turn waited before the loop could see it. Observed into
// deliverd_loop_lag_seconds once a turn, so a stall of any length shows, however short it was.
#include <uv.h>

#include <cstdint>

namespace deliverd::core {

class LoopLagMonitor {
 public:
  LoopLagMonitor() = default;
  // Turns on the loop's idle-time accounting (before uv_run) and starts observing.
  explicit LoopLagMonitor(uv_loop_t* loop);
  LoopLagMonitor(LoopLagMonitor&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  LoopLagMonitor& operator=(LoopLagMonitor&& o) noexcept;
  LoopLagMonitor(const LoopLagMonitor&) = delete;
  LoopLagMonitor& operator=(const LoopLagMonitor&) = delete;
  ~LoopLagMonitor() { reset(); }
  void reset();

  // The longest turn so far, in seconds (0 before the first).
  double max_seconds() const;

 private:
  struct State;
  State* s_ = nullptr;  // freed in the check handle's close callback
};

}  // namespace deliverd::core
