#pragma once
// One SMTP delivery over plain TCP, in the Postfix manner (STYLE.md §2): named phases, one table
// of timeouts, one advance() that moves between phases, one fail() that turns every failure into
// a core::Outcome naming the phase. TLS/STARTTLS, AUTH and PIPELINING slot in as further phases.
#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/outcome.h"
#include "core/tcp_stream.h"
#include "core/timer.h"
#include "smtp/ehlo.h"
#include "smtp/reply_parser.h"

namespace deliverd::smtp {

enum class Phase { Connect, Banner, Ehlo, Helo, Mail, Rcpt, Data, Body, Quit };
inline constexpr size_t kPhaseCount = 9;

struct PhaseInfo {
  Phase phase;
  std::string_view name;
  uint64_t default_timeout_ms;  // RFC 5321 4.5.3.2
};

// The one table: names and default timeouts, indexed by Phase.
inline constexpr std::array<PhaseInfo, kPhaseCount> kPhases = {{
    {Phase::Connect, "connect", 30'000},
    {Phase::Banner, "banner", 300'000},
    {Phase::Ehlo, "ehlo", 300'000},
    {Phase::Helo, "helo", 300'000},
    {Phase::Mail, "mail", 300'000},
    {Phase::Rcpt, "rcpt", 300'000},
    {Phase::Data, "data", 120'000},
    {Phase::Body, "body", 600'000},  // sending the payload and waiting for the reply to "."
    {Phase::Quit, "quit", 10'000},
}};

constexpr std::string_view to_string(Phase p) { return kPhases[static_cast<size_t>(p)].name; }
std::optional<Phase> phase_from_name(std::string_view name);

struct PhaseTimeouts {
  std::array<uint64_t, kPhaseCount> ms = [] {
    std::array<uint64_t, kPhaseCount> a{};
    for (size_t i = 0; i < kPhaseCount; ++i) a[i] = kPhases[i].default_timeout_ms;
    return a;
  }();
  uint64_t& operator[](Phase p) { return ms[static_cast<size_t>(p)]; }
  uint64_t operator[](Phase p) const { return ms[static_cast<size_t>(p)]; }
};

struct SessionConfig {
  std::string helo_name = "localhost";
  PhaseTimeouts timeouts;
  uint64_t total_ms = 30 * 60 * 1000;  // bound on the whole session, whatever the phases allow
  size_t max_reply_line = 2048;
  size_t max_reply_bytes = 64 * 1024;
};

struct Envelope {
  std::string mail_from, rcpt_to;
  std::string message;  // composed, not yet dot-stuffed
};

class Session final : private core::StreamHandler {
 public:
  using Done = std::function<void(const core::Outcome&)>;

  // Connects to exactly vetted_addr (never resolves). `done` is called exactly once, never from
  // inside start(); the session deletes itself right after, so the pointer is valid only until then.
  static Session* start(uv_loop_t* loop, const SessionConfig& cfg, const sockaddr* vetted_addr,
                        std::string host_name, Envelope env, Done done);

  // Ends promptly with a deferred outcome, reason "aborted". No-op once done has been called.
  void abort(std::string why);

  Phase phase() const { return phase_; }

 private:
  Session(uv_loop_t* loop, const SessionConfig& cfg, std::string host, Envelope env, Done done);
  ~Session() override;

  // StreamHandler
  void on_connected(int status) override;
  void on_data(std::string_view bytes) override;
  void on_end(int status) override;

  void enter(Phase p);                  // switches phase and re-arms the timer from the table
  void advance(const core::Reply& r);   // the reply to the current phase's command
  void send(std::string bytes);
  void succeed(const core::Reply& r);   // 250 after the payload: the delivery is decided
  void fail(core::Status status, std::string reason, std::string detail, const core::Reply& reply = {});
  void fail_reply(const core::Reply& r);  // 4xx/5xx mapped to a status by phase
  void finish(core::Outcome outcome);

  // Keeps `this` alive while a callback runs; the last one out deletes a finished session.
  struct Guard {
    explicit Guard(Session* s) : s(s) { ++s->depth_; }
    ~Guard();
    Session* s;
  };

  SessionConfig cfg_;
  std::string host_;
  std::string ip_;
  Envelope env_;
  Done done_;
  core::TcpStream* stream_ = nullptr;
  core::TimerHandle phase_timer_;
  core::TimerHandle total_timer_;
  ReplyParser parser_;
  EhloCapabilities caps_;
  Phase phase_ = Phase::Connect;
  std::optional<core::Outcome> decided_;  // set at the 250 after DATA; QUIT cannot change it
  int depth_ = 0;
  bool finished_ = false;
};

}  // namespace deliverd::smtp
