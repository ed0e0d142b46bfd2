#include "core/loop_lag.h"

#include <algorithm>
#include <utility>

#include "core/metrics.h"

namespace deliverd::core {
namespace {

Histogram& lag_histogram() {
  static Histogram& h = Registry::global()
                            .histogram("deliverd_loop_lag_seconds",
                                       "Busy time of each event-loop turn: how long an event arriving in it waited",
                                       {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1})
                            .get();
  return h;
}

}  // namespace

struct LoopLagMonitor::State {
  uv_check_t check{};
  uv_loop_t* loop = nullptr;
  uint64_t last_ns = 0, last_idle_ns = 0, max_ns = 0;
  bool first = true;  // the first turn also holds what ran before uv_run: not the loop's lag
};

LoopLagMonitor::LoopLagMonitor(uv_loop_t* loop) : s_(new State) {
  lag_histogram();
  s_->loop = loop;
  uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
  uv_check_init(loop, &s_->check);
  s_->check.data = s_;
  uv_check_start(&s_->check, [](uv_check_t* c) {
    auto* s = static_cast<State*>(c->data);
    const uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(s->loop);
    const uint64_t turn = now - s->last_ns, waited = idle - s->last_idle_ns;
    const uint64_t busy = turn > waited ? turn - waited : 0;
    s->last_ns = now;
    s->last_idle_ns = idle;
    if (std::exchange(s->first, false)) return;
    s->max_ns = std::max(s->max_ns, busy);
    lag_histogram().observe(static_cast<double>(busy) / 1e9);
  });
  // Observing must not keep a loop that has nothing else to do running.
  uv_unref(reinterpret_cast<uv_handle_t*>(&s_->check));
}

LoopLagMonitor& LoopLagMonitor::operator=(LoopLagMonitor&& o) noexcept {
  if (this != &o) {
    reset();
    s_ = o.s_;
    o.s_ = nullptr;
  }
  return *this;
}

void LoopLagMonitor::reset() {
  if (!s_) return;
  uv_check_stop(&s_->check);
  uv_close(reinterpret_cast<uv_handle_t*>(&s_->check), [](uv_handle_t* h) { delete static_cast<State*>(h->data); });
  s_ = nullptr;
}

double LoopLagMonitor::max_seconds() const { return s_ ? static_cast<double>(s_->max_ns) / 1e9 : 0; }

}  // namespace deliverd::core
