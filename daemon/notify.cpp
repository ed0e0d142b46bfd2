#include "daemon/notify.h"

#include <systemd/sd-daemon.h>

#include <cstdio>
#include <ctime>

#include "core/log.h"

namespace deliverd::daemon {
namespace {

std::string one_line(std::string_view text) {
  std::string s(text);
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

uint64_t monotonic_usec() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace

std::string running_status(size_t smtp_sessions, size_t jobs_inflight, double queue_lag_s) {
  char lag[32];
  std::snprintf(lag, sizeof lag, "%.1fs", queue_lag_s < 0 ? 0.0 : queue_lag_s);
  return "delivering: " + std::to_string(smtp_sessions) + " SMTP sessions, " + std::to_string(jobs_inflight) +
         " jobs in flight, queue lag " + lag;
}

Notifier* Notifier::open(uv_loop_t* loop) { return new Notifier(loop); }

Notifier::Notifier(uv_loop_t* loop) : loop_(loop) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uint64_t usec = 0;
  // unset_environment=0: children (none today) and a re-exec keep seeing the watchdog settings.
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_usec_ = usec;
    // Half the interval, as sd_watchdog_enabled(3) recommends, so one late tick is not fatal.
    uint64_t every_ms = usec / 2000;
    if (every_ms == 0) every_ms = 1;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<Notifier*>(t->data)->on_watchdog(); }, every_ms, every_ms);
    timer_running_ = true;
    core::log_info("watchdog_enabled", {{"interval_ms", std::to_string(usec / 1000)}});
  }
}

void Notifier::send(const std::string& state) {
  if (closing_) return;
  int r = sd_notify(0, state.c_str());
  if (r < 0) core::log_warn("sd_notify_failed", {{"errno", std::to_string(-r)}});
}

void Notifier::ready(std::string_view status_text) { send("READY=1\nSTATUS=" + one_line(status_text)); }

void Notifier::status(std::string_view text) { send("STATUS=" + one_line(text)); }

void Notifier::reloading(std::string_view status_text) {
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()) + "\nSTATUS=" + one_line(status_text));
}

void Notifier::stopping(std::string_view status_text) {
  send("STOPPING=1\nSTATUS=" + one_line(status_text));
  // The drain may take [daemon] shutdown_grace_s; systemd's stop timeout governs it now.
  if (timer_running_) {
    uv_timer_stop(&timer_);
    timer_running_ = false;
  }
}

void Notifier::on_watchdog() { send("WATCHDOG=1"); }

void Notifier::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_closed);
}

void Notifier::on_closed(uv_handle_t* h) { delete static_cast<Notifier*>(h->data); }

}  // namespace deliverd::daemon
