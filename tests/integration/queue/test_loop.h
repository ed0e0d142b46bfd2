#pragma once
// A libuv loop for one test: runs until a condition holds (or a generous deadline passes, so a
// slow CI machine does not flake), and on teardown checks that every handle was closed.
#include <gtest/gtest.h>
#include <uv.h>

#include <csignal>

#include <functional>

namespace deliverd::testing {

class TestLoop {
 public:
  TestLoop() {
    // As in the daemon: a write to a peer that vanished must be an error value, not a signal.
    ::signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &tick_);
  }
  ~TestLoop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    // Objects closed by the test free themselves in close callbacks; let those run.
    for (int i = 0; i < 100 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++i) {
    }
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a libuv handle was left open";
  }
  uv_loop_t* get() { return &loop_; }

  // True if pred became true before timeout_ms.
  bool run_until(const std::function<bool()>& pred, int timeout_ms = 20000) {
    // The tick only wakes the loop so the predicate is re-checked.
    uv_timer_start(&tick_, [](uv_timer_t*) {}, 5, 5);
    const uint64_t deadline = uv_now(&loop_) + static_cast<uint64_t>(timeout_ms);
    bool ok = pred();
    while (!ok && uv_now(&loop_) < deadline) {
      uv_run(&loop_, UV_RUN_ONCE);
      ok = pred();
    }
    uv_timer_stop(&tick_);
    return ok;
  }
  // Runs the loop for about ms (to show that something does NOT happen).
  void run_for(int ms) {
    const uint64_t end = uv_now(&loop_) + static_cast<uint64_t>(ms);
    run_until([&] { return uv_now(&loop_) >= end; }, ms + 1000);
  }

 private:
  uv_loop_t loop_{};
  uv_timer_t tick_{};
};

}  // namespace deliverd::testing
