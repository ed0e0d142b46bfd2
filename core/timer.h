#pragma once
// A libuv timer owned by one object; freed in its close callback (STYLE.md §1).
#include <uv.h>

#include <cstdint>
#include <functional>

namespace deliverd::core {

class Timer {
 public:
  static Timer* create(uv_loop_t* loop);
  // One-shot after `ms`; restarting replaces the previous deadline and callback.
  void start(uint64_t ms, std::function<void()> cb);
  void start_repeating(uint64_t ms, std::function<void()> cb);
  // First after first_ms (0: on the next loop turn), then every every_ms.
  void start_repeating(uint64_t first_ms, uint64_t every_ms, std::function<void()> cb);
  void stop();
  bool active() const;
  // Idempotent; the callback is never called after close().
  void close();

 private:
  Timer() = default;
  static void on_timer(uv_timer_t* t);
  uv_timer_t timer_{};
  std::function<void()> cb_;
  bool closing_ = false;
};

// Owns a Timer* and closes it on destruction, so members can hold one safely.
class TimerHandle {
 public:
  TimerHandle() = default;
  explicit TimerHandle(uv_loop_t* loop) : t_(Timer::create(loop)) {}
  TimerHandle(TimerHandle&& o) noexcept : t_(o.t_) { o.t_ = nullptr; }
  TimerHandle& operator=(TimerHandle&& o) noexcept {
    reset();
    t_ = o.t_;
    o.t_ = nullptr;
    return *this;
  }
  TimerHandle(const TimerHandle&) = delete;
  TimerHandle& operator=(const TimerHandle&) = delete;
  ~TimerHandle() { reset(); }
  void reset() {
    if (t_) t_->close();
    t_ = nullptr;
  }
  Timer* operator->() const { return t_; }
  explicit operator bool() const { return t_ != nullptr; }

 private:
  Timer* t_ = nullptr;
};

}  // namespace deliverd::core
