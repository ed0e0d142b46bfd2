#pragma once
// One c-ares channel driven by a libuv loop: a uv_poll per socket c-ares opens, one timer from
// ares_timeout, and a zero-delay timer through which results are handed out, so callbacks
// always come on a later loop turn. dns::Resolver and dns::TlsaResolver each embed one (their
// servers and flags differ); the owner is a heap object that frees itself from on_closed
// (STYLE §1).
#include <ares.h>
#include <uv.h>

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

namespace deliverd::dns {

struct AresOptions {
  std::vector<std::string> servers;  // "127.0.0.1:5353", "[::1]:53", "192.0.2.1"; empty = resolv.conf
  int timeout_ms = 3000;             // first try; c-ares doubles it on later tries
  int tries = 2;
  int flags = 0;  // ARES_FLAG_*
};

// "127.0.0.1:5353", "[::1]:53", "::1", "192.0.2.1" → the same in c-ares' CSV syntax; throws
// std::runtime_error naming the entry when it is not an IP address with an optional port.
std::string server_csv_entry(const std::string& s);

class AresLoop {
 public:
  // Throws std::runtime_error when c-ares refuses the options or a server. on_closed runs once,
  // after close(), when the last handle has closed; the owner may free itself (and this) there.
  AresLoop(uv_loop_t* loop, const AresOptions& opts, std::function<void()> on_closed);
  ~AresLoop();
  AresLoop(const AresLoop&) = delete;
  AresLoop& operator=(const AresLoop&) = delete;

  ares_channel channel() const { return channel_; }
  const std::string& servers_csv() const { return csv_; }  // "" = the system's
  // After a query was handed to channel(): arms its timeout.
  void sent() { rearm_timer(); }
  // fn runs on a later loop turn, unless close() comes first.
  void schedule(std::function<void()> fn);
  bool closing() const { return closing_; }
  // Destroys the channel (its query callbacks run now and must check closing()), drops what was
  // scheduled and closes every handle.
  void close();

 private:
  struct SockPoll {
    uv_poll_t poll{};
    AresLoop* owner = nullptr;
    ares_socket_t fd = ARES_SOCKET_BAD;
  };
  void rearm_timer();
  void close_poll(SockPoll* p);
  void handle_closed();
  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable);
  static void on_poll(uv_poll_t* h, int status, int events);
  static void on_ares_timer(uv_timer_t* t);
  static void on_deliver_timer(uv_timer_t* t);

  uv_loop_t* loop_;
  std::function<void()> on_closed_;
  std::string csv_;
  ares_channel channel_ = nullptr;
  uv_timer_t ares_timer_{};
  uv_timer_t deliver_timer_{};
  int open_handles_ = 0;
  bool closing_ = false;
  bool deliver_armed_ = false;
  std::unordered_map<ares_socket_t, SockPoll*> polls_;
  std::vector<std::function<void()>> deliver_;
};

}  // namespace deliverd::dns
