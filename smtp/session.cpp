#include "smtp/session.h"

#include <algorithm>

#include "core/log.h"
#include "core/metrics.h"
#include "smtp/composer.h"

namespace deliverd::smtp {
namespace {

struct Metrics {
  core::Gauge& active;
  core::Family<core::Counter>& replies;
  core::Family<core::Counter>& failures;
};

Metrics& metrics() {
  auto& reg = core::Registry::global();
  static Metrics m{
      reg.gauge("deliverd_smtp_sessions_active", "SMTP client sessions currently open").get(),
      reg.counter("deliverd_smtp_replies_total", "SMTP replies received, by phase and reply class",
                  {"phase", "class"}),
      reg.counter("deliverd_smtp_session_failures_total", "SMTP sessions that did not deliver, by phase and reason",
                  {"phase", "reason"}),
  };
  return m;
}

std::string reply_class(int code) { return std::string(1, static_cast<char>('0' + code / 100)) + "xx"; }

// An envelope address goes verbatim into a command line, so anything that could end or extend
// the command is refused before connecting.
bool safe_path(std::string_view a) {
  return a.size() <= 512 && std::none_of(a.begin(), a.end(), [](char c) {
           auto u = static_cast<unsigned char>(c);
           return u < 0x21 || u == 0x7f || c == '<' || c == '>';
         });
}

std::string address_string(const sockaddr* sa) {
  char buf[64] = {};
  if (sa->sa_family == AF_INET)
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(sa), buf, sizeof buf);
  else if (sa->sa_family == AF_INET6)
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(sa), buf, sizeof buf);
  return buf;
}

std::string io_reason(int status) {
  switch (status) {
    case UV_EOF: return "connection_closed";
    case UV_ECONNRESET: return "connection_reset";
    case UV_ECONNREFUSED: return "connection_refused";
    case UV_ETIMEDOUT: return "timeout";
    default: return "io_error";
  }
}

bool has_8bit(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

}  // namespace

std::optional<Phase> phase_from_name(std::string_view name) {
  for (const auto& p : kPhases)
    if (p.name == name) return p.phase;
  return std::nullopt;
}

Session::Guard::~Guard() {
  if (--s->depth_ == 0 && s->finished_) delete s;
}

Session::Session(uv_loop_t* loop, const SessionConfig& cfg, std::string host, Envelope env, Done done)
    : cfg_(cfg),
      host_(std::move(host)),
      env_(std::move(env)),
      done_(std::move(done)),
      phase_timer_(loop),
      total_timer_(loop),
      parser_(ReplyLimits{cfg.max_reply_line, cfg.max_reply_bytes}) {
  metrics().active.inc();
}

Session::~Session() { metrics().active.dec(); }

Session* Session::start(uv_loop_t* loop, const SessionConfig& cfg, const sockaddr* vetted_addr, std::string host_name,
                        Envelope env, Done done) {
  auto* s = new Session(loop, cfg, std::move(host_name), std::move(env), std::move(done));
  s->ip_ = address_string(vetted_addr);
  // Failures found here are reported from the loop, so `done` never runs inside start().
  auto fail_soon = [s](core::Status st, std::string reason, std::string detail) {
    s->phase_timer_->start(0, [s, st, reason, detail] {
      Guard g(s);
      s->fail(st, reason, detail);
    });
  };
  if (!safe_path(s->env_.mail_from) || s->env_.rcpt_to.empty() || !safe_path(s->env_.rcpt_to)) {
    fail_soon(core::Status::Rejected, "invalid_envelope", "envelope address contains forbidden characters");
    return s;
  }
  s->total_timer_->start(cfg.total_ms, [s] {
    Guard g(s);
    s->fail(core::Status::Deferred, "session_timeout",
            "session exceeded " + std::to_string(s->cfg_.total_ms) + " ms");
  });
  s->stream_ = core::TcpStream::create(loop, s);
  s->enter(Phase::Connect);
  if (int rc = s->stream_->connect(vetted_addr); rc != 0) fail_soon(core::Status::Deferred, io_reason(rc), uv_strerror(rc));
  return s;
}

void Session::abort(std::string why) {
  Guard g(this);
  if (finished_) return;
  fail(core::Status::Deferred, "aborted", std::move(why));
}

void Session::enter(Phase p) {
  if (finished_) return;
  phase_ = p;
  uint64_t ms = cfg_.timeouts[p];
  phase_timer_->start(ms, [this, ms] {
    Guard g(this);
    fail(core::Status::Deferred, "timeout",
         "nothing from the server within " + std::to_string(ms) + " ms in phase " + std::string(to_string(phase_)));
  });
}

void Session::send(std::string bytes) {
  if (finished_ || !stream_) return;
  if (int rc = stream_->write(std::move(bytes)); rc != 0) fail(core::Status::Deferred, io_reason(rc), uv_strerror(rc));
}

void Session::on_connected(int status) {
  Guard g(this);
  if (finished_) return;
  if (status != 0) return fail(core::Status::Deferred, io_reason(status), uv_strerror(status));
  enter(Phase::Banner);
}

void Session::on_data(std::string_view bytes) {
  Guard g(this);
  if (finished_) return;
  parser_.feed(bytes);
  while (!finished_) {
    auto r = parser_.next();
    if (!r) return fail(core::Status::Deferred, "protocol_error", std::string(to_string(r.error())));
    if (!r.value()) return;
    advance(*r.value());
  }
}

void Session::on_end(int status) {
  Guard g(this);
  if (finished_) return;
  fail(core::Status::Deferred, io_reason(status),
       status == UV_EOF ? "server closed the connection" : std::string(uv_strerror(status)));
}

void Session::advance(const core::Reply& r) {
  metrics().replies.with({std::string(to_string(phase_)), reply_class(r.code)}).inc();
  bool positive = r.code >= 200 && r.code < 300;
  switch (phase_) {
    case Phase::Connect:
      return fail(core::Status::Deferred, "protocol_error", "reply before connect completed", r);
    case Phase::Banner:
      if (!positive) return fail_reply(r);
      send("EHLO " + cfg_.helo_name + "\r\n");
      return enter(Phase::Ehlo);
    case Phase::Ehlo:
      if (r.code >= 500) {  // RFC 5321 4.1.1.1: an old server; try HELO
        send("HELO " + cfg_.helo_name + "\r\n");
        return enter(Phase::Helo);
      }
      [[fallthrough]];
    case Phase::Helo: {
      if (!positive) return fail_reply(r);
      caps_ = phase_ == Phase::Ehlo ? parse_ehlo(r) : EhloCapabilities{};
      // Stuffed once here: SIZE= announces the payload size, and the message is then dropped.
      std::string payload = dot_stuff(env_.message);
      std::string cmd = "MAIL FROM:<" + env_.mail_from + ">";
      if (caps_.size_advertised) cmd += " SIZE=" + std::to_string(payload.size());
      if (caps_.eightbitmime && has_8bit(payload)) cmd += " BODY=8BITMIME";
      env_.message = std::move(payload);
      send(cmd + "\r\n");
      return enter(Phase::Mail);
    }
    case Phase::Mail:
      if (!positive) return fail_reply(r);
      send("RCPT TO:<" + env_.rcpt_to + ">\r\n");
      return enter(Phase::Rcpt);
    case Phase::Rcpt:
      if (!positive) return fail_reply(r);
      send("DATA\r\n");
      return enter(Phase::Data);
    case Phase::Data:
      if (r.code != 354) return fail_reply(r);
      send(std::move(env_.message));
      return enter(Phase::Body);
    case Phase::Body:
      if (!positive) return fail_reply(r);
      return succeed(r);
    case Phase::Quit:
      return finish(*decided_);
  }
}

void Session::succeed(const core::Reply& r) {
  core::Outcome o;
  o.status = core::Status::Delivered;
  o.phase = to_string(Phase::Body);
  o.reason = "delivered";
  o.reply = r;
  decided_ = std::move(o);
  send("QUIT\r\n");
  enter(Phase::Quit);
}

void Session::fail_reply(const core::Reply& r) {
  std::string phase(to_string(phase_));
  send("QUIT\r\n");  // best effort, the server is still talking to us; its reply is not awaited
  if (r.code >= 400 && r.code < 500) return fail(core::Status::Deferred, phase + "_deferred", "temporary failure", r);
  if (r.code >= 500) {
    // The recipient or this message was refused: a bounce. Anything earlier is the sending
    // side's fault (our name, our sender address, the server refusing us): failed.
    bool recipient = phase_ == Phase::Rcpt || phase_ == Phase::Body;
    return fail(recipient ? core::Status::Bounced : core::Status::Failed, phase + "_rejected", "permanent failure", r);
  }
  fail(core::Status::Deferred, "protocol_error", "unexpected reply code " + std::to_string(r.code), r);
}

void Session::fail(core::Status status, std::string reason, std::string detail, const core::Reply& reply) {
  if (finished_) return;
  if (decided_) {
    // The 250 after DATA already delivered the message; a later problem must not cause a resend.
    core::log_debug("smtp_quit_incomplete", {{"host", host_}, {"reason", reason}});
    return finish(*decided_);
  }
  core::Outcome o;
  o.status = status;
  o.phase = to_string(phase_);
  if (reason == "invalid_envelope") o.phase = "envelope";
  o.reason = std::move(reason);
  o.detail = std::move(detail);
  o.reply = reply;
  finish(std::move(o));
}

void Session::finish(core::Outcome outcome) {
  if (finished_) return;
  finished_ = true;
  outcome.host = host_;
  outcome.ip = ip_;
  if (outcome.status != core::Status::Delivered) metrics().failures.with({outcome.phase, outcome.reason}).inc();
  std::string code = std::to_string(outcome.reply.code);
  core::log_info("smtp_session_end", {{"status", core::to_string(outcome.status)},
                                      {"phase", outcome.phase},
                                      {"reason", outcome.reason},
                                      {"code", code},
                                      {"enhanced", outcome.reply.enhanced},
                                      {"host", host_},
                                      {"ip", ip_}});
  phase_timer_.reset();
  total_timer_.reset();
  if (stream_) stream_->close();
  stream_ = nullptr;
  Done done = std::move(done_);
  if (done) done(outcome);
}

}  // namespace deliverd::smtp
