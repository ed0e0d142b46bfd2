#pragma once
// sd_notify(3) on the event loop: readiness, STATUS= lines, reload/stop markers and the watchdog.
// WATCHDOG=1 is sent from a uv timer, so a stalled loop stops the pings and systemd restarts us
// (WatchdogSec=). Without NOTIFY_SOCKET every call is a cheap no-op.
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace deliverd::daemon {

// The STATUS= text systemctl status shows while running, e.g.
// "delivering: 12 SMTP sessions, 40 jobs in flight, queue lag 1.5s".
std::string running_status(size_t smtp_sessions, size_t jobs_inflight, double queue_lag_s);

class Notifier {
 public:
  // Heap object: the watchdog timer handle lives inside it and is freed in its close callback.
  static Notifier* open(uv_loop_t* loop);

  // READY=1 with a STATUS= line.
  void ready(std::string_view status_text);
  // STATUS=… (single line: newlines are replaced by spaces).
  void status(std::string_view text);
  // RELOADING=1 with MONOTONIC_USEC= (systemd >= 253 wants it for Type=notify-reload; older
  // versions ignore the extra field). Call ready() when the reload is done.
  void reloading(std::string_view status_text = "reloading configuration");
  // STOPPING=1; also stops the watchdog pings.
  void stopping(std::string_view status_text = "draining in-flight deliveries");

  bool watchdog_enabled() const { return watchdog_usec_ != 0; }
  uint64_t watchdog_interval_usec() const { return watchdog_usec_; }

  // Idempotent; the object is deleted once the timer handle has closed. Nothing may use the
  // pointer after close().
  void close();

 private:
  explicit Notifier(uv_loop_t* loop);
  ~Notifier() = default;
  void send(const std::string& state);
  void on_watchdog();
  static void on_closed(uv_handle_t* h);

  uv_loop_t* loop_;
  uv_timer_t timer_{};
  uint64_t watchdog_usec_ = 0;
  bool timer_running_ = false;
  bool closing_ = false;
};

}  // namespace deliverd::daemon
