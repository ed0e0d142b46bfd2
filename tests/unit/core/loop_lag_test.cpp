#include "core/loop_lag.h"

#include <gtest/gtest.h>

#include <chrono>

#include "core/metrics.h"
#include "core/timer.h"

namespace deliverd::core {
namespace {

void busy_for(std::chrono::milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
  }
}

// A callback that holds the loop shows as a turn at least that long; time the loop spends
// waiting for events (here a 300 ms timer with nothing else to do) does not count as lag.
TEST(LoopLag, AHeldLoopShowsAndWaitingDoesNot) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    LoopLagMonitor lag(&loop);
    TimerHandle wait(&loop);
    wait->start(300, [] {});
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_LT(lag.max_seconds(), 0.3) << "the 300 ms spent waiting counted as lag";

    TimerHandle hold(&loop);
    hold->start(0, [] { busy_for(std::chrono::milliseconds(40)); });
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_GE(lag.max_seconds(), 0.04);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the monitor's and the timers' close callbacks
  EXPECT_EQ(uv_loop_close(&loop), 0) << "a handle was left open";
  const std::string text = Registry::global().render();
  EXPECT_NE(text.find("deliverd_loop_lag_seconds_bucket{le=\"0.05\"}"), std::string::npos) << text;
}

}  // namespace
}  // namespace deliverd::core
