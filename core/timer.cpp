#include "core/timer.h"

namespace deliverd::core {

Timer* Timer::create(uv_loop_t* loop) {
  auto* t = new Timer();
  uv_timer_init(loop, &t->timer_);
  t->timer_.data = t;
  return t;
}

void Timer::start(uint64_t ms, std::function<void()> cb) {
  if (closing_) return;
  cb_ = std::move(cb);
  uv_timer_start(&timer_, on_timer, ms, 0);
}

void Timer::start_repeating(uint64_t ms, std::function<void()> cb) { start_repeating(ms, ms, std::move(cb)); }

void Timer::start_repeating(uint64_t first_ms, uint64_t every_ms, std::function<void()> cb) {
  if (closing_) return;
  cb_ = std::move(cb);
  uv_timer_start(&timer_, on_timer, first_ms, every_ms);
}

void Timer::stop() {
  if (!closing_) uv_timer_stop(&timer_);
}

bool Timer::active() const { return !closing_ && uv_is_active(reinterpret_cast<const uv_handle_t*>(&timer_)); }

void Timer::close() {
  if (closing_) return;
  closing_ = true;
  cb_ = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) { delete static_cast<Timer*>(h->data); });
}

void Timer::on_timer(uv_timer_t* t) {
  auto* self = static_cast<Timer*>(t->data);
  if (self->closing_ || !self->cb_) return;
  // Copy: the callback may restart this timer with a new callback.
  auto cb = self->cb_;
  cb();
}

}  // namespace deliverd::core
