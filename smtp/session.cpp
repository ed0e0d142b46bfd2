#include "smtp/session.h"

#include <netinet/in.h>

#include <algorithm>
#include <utility>

#include "core/base64.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/sasl.h"
#include "dns/address_policy.h"
#include "smtp/classifier.h"
#include "smtp/composer.h"

namespace deliverd::smtp {
namespace {

struct Metrics {
  core::Gauge& active;
  core::Family<core::Counter>& replies;
  core::Family<core::Counter>& failures;
  core::Family<core::Counter>& tls;
  core::Counter& reused;
};

Metrics& metrics() {
  auto& reg = core::Registry::global();
  static Metrics m{
      reg.gauge("deliverd_smtp_sessions_active", "SMTP client sessions currently open").get(),
      reg.counter("deliverd_smtp_replies_total", "SMTP replies received, by phase and reply class", {"phase", "class"}),
      reg.counter("deliverd_smtp_session_failures_total", "SMTP sessions that did not deliver, by phase and reason",
                  {"phase", "reason"}),
      reg.counter("deliverd_smtp_tls_handshakes_total", "TLS handshakes by SMTP sessions, by result", {"result"}),
      reg.counter("deliverd_smtp_connection_reuses_total", "Messages sent on an already open SMTP connection").get(),
  };
  return m;
}

std::string reply_class(int code) { return std::string(1, static_cast<char>('0' + code / 100)) + "xx"; }

// An envelope address goes verbatim into a command line, so anything that could end or extend
// the command is refused before connecting: no control character anywhere, and no space or angle
// bracket outside the quoted local part that RFC 5321 allows them in.
bool safe_path(std::string_view a) {
  if (a.size() > 512) return false;
  bool quoted = false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto u = static_cast<unsigned char>(a[i]);
    if (u < 0x20 || u == 0x7f) return false;
    if (quoted && a[i] == '\\') {  // a quoted pair: the next character is taken as it is
      if (++i == a.size() || static_cast<unsigned char>(a[i]) < 0x20 || a[i] == 0x7f) return false;
    } else if (a[i] == '"') {
      quoted = !quoted;
    } else if (!quoted && (u == 0x20 || a[i] == '<' || a[i] == '>')) {
      return false;
    }
  }
  return !quoted;
}

core::Reason io_reason(int status) {
  switch (status) {
    case UV_EOF:
      return core::Reason::ConnectionClosed;
    case UV_ECONNRESET:
      return core::Reason::ConnectionReset;
    case UV_ECONNREFUSED:
      return core::Reason::ConnectionRefused;
    case UV_ETIMEDOUT:
      return core::Reason::Timeout;
    default:
      return core::Reason::IoError;
  }
}

// A refusal (5xx) or deferral (4xx) answered in a phase without a reason of its own.
core::Reason reply_reason(Phase p, bool permanent) {
  using R = core::Reason;
  switch (p) {
    case Phase::Banner: return permanent ? R::BannerRejected : R::BannerDeferred;
    case Phase::Ehlo: return permanent ? R::EhloRejected : R::EhloDeferred;
    case Phase::Helo: return permanent ? R::HeloRejected : R::HeloDeferred;
    case Phase::Mail: return permanent ? R::MailRejected : R::MailDeferred;
    case Phase::Rcpt: return permanent ? R::RcptRejected : R::RcptDeferred;
    case Phase::Data: return permanent ? R::DataRejected : R::DataDeferred;
    case Phase::Body: return permanent ? R::BodyRejected : R::BodyDeferred;
    case Phase::Rset: return permanent ? R::RsetRejected : R::RsetDeferred;
    default: return R::ProtocolError;  // the other phases pass their own reason or never get here
  }
}

bool has_8bit(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

}  // namespace

std::optional<TlsPolicy> tls_policy_from_name(std::string_view s) {
  auto p = core::tls_policy_from_name(s);
  if (p == TlsPolicy::Required || p == TlsPolicy::Opportunistic) return p;
  return std::nullopt;
}

SessionConfig submission_config(SessionConfig base, Security security, Credentials auth) {
  base.security = security;
  // A mailbox's own server: its certificate must check out; a lab mailbox without TLS has none.
  base.tls_policy = security == Security::None ? TlsPolicy::None : TlsPolicy::Required;
  base.relay = true;
  base.auth = std::move(auth);
  return base;
}

Session::Session(uv_loop_t* loop, const SessionConfig& cfg, const sockaddr* vetted_addr, std::string host, Envelope env,
                 Done done, SessionHooks hooks)
    : cfg_(cfg),
      host_(std::move(host)),
      env_(std::move(env)),
      done_(std::move(done)),
      hooks_(std::move(hooks)),
      phase_timer_(loop),
      total_timer_(loop),
      parser_(ReplyLimits{cfg.max_reply_line, cfg.max_reply_bytes}) {
  metrics().active.inc();
  int port = dns::port_of(vetted_addr);
  ip_ = dns::address_to_string(vetted_addr);
  if (vetted_addr->sa_family == AF_INET)
    port_ = ntohs(reinterpret_cast<const sockaddr_in*>(vetted_addr)->sin_port);
  else if (vetted_addr->sa_family == AF_INET6)
    port_ = ntohs(reinterpret_cast<const sockaddr_in6*>(vetted_addr)->sin6_port);
  in_transaction_ = true;
  tls_fallback_ = cfg_.tls_fallback;
  if (cfg_.tls_name.empty()) cfg_.tls_name = host_;
  // The resumption key names the peer exactly: the certificate name and the address connected to.
  tls_key_ = cfg_.tls_name + "@" + ip_ + ":" + std::to_string(port);
}

Session::~Session() { metrics().active.dec(); }

Session* Session::start(uv_loop_t* loop, const SessionConfig& cfg, const sockaddr* vetted_addr, std::string host_name,
                        Envelope env, Done done, SessionHooks hooks) {
  auto* s =
      new Session(loop, cfg, vetted_addr, std::move(host_name), std::move(env), std::move(done), std::move(hooks));
  if (!safe_path(s->env_.mail_from) || s->env_.rcpt_to.empty() || !safe_path(s->env_.rcpt_to)) {
    s->fail_soon(core::Status::Rejected, core::Reason::InvalidEnvelope, "envelope address contains forbidden characters");
    return s;
  }
  s->open(loop, vetted_addr);
  return s;
}

Session* Session::probe(uv_loop_t* loop, const SessionConfig& cfg, const sockaddr* vetted_addr, std::string host_name,
                        Done done) {
  auto* s = new Session(loop, cfg, vetted_addr, std::move(host_name), Envelope{}, std::move(done), SessionHooks{});
  s->probe_ = true;
  s->open(loop, vetted_addr);
  return s;
}

void Session::fail_soon(core::Status status, core::Reason reason, std::string detail) {
  phase_timer_->start(0, [this, status, reason, detail = std::move(detail)] {
    Entry g(this);
    fail(status, reason, detail);
  });
}

void Session::open(uv_loop_t* loop, const sockaddr* vetted_addr) {
  if (cfg_.security != Security::None && !cfg_.tls)
    return fail_soon(core::Status::Failed, core::Reason::TlsUnconfigured, "TLS requested but no TLS context given");
  total_timer_->start(cfg_.total_ms, [this] {
    Entry g(this);
    if (!in_transaction_) return close_session();
    fail(core::Status::Deferred, core::Reason::SessionTimeout, "session exceeded " + std::to_string(cfg_.total_ms) + " ms");
  });
  stream_ = core::TcpStream::create(loop, this);
  enter(Phase::Connect);
  if (int rc = stream_->connect(vetted_addr); rc != 0)
    fail_soon(core::Status::Deferred, io_reason(rc), uv_strerror(rc));
}

void Session::abort(std::string why) {
  Entry g(this);
  if (finished_) return;
  fail(core::Status::Deferred, core::Reason::Aborted, std::move(why));
}

void Session::send_next(Envelope env, Done done) {
  Entry g(this);
  if (!idle()) {
    core::Outcome o;
    o.status = core::Status::Deferred;
    o.phase = outcome_phase(phase_);
    o.reason = core::Reason::SessionUnavailable;
    o.detail = "the connection is not idle";
    if (done) done(o);
    return;
  }
  env_ = std::move(env);
  done_ = std::move(done);
  in_transaction_ = true;
  metrics().reused.inc();
  if (!safe_path(env_.mail_from) || env_.rcpt_to.empty() || !safe_path(env_.rcpt_to)) {
    core::Outcome o;
    o.status = core::Status::Rejected;
    o.phase = core::Phase::Envelope;
    o.reason = core::Reason::InvalidEnvelope;
    o.detail = "envelope address contains forbidden characters";
    report(std::move(o), true);
    return;
  }
  send("RSET\r\n");
  enter(Phase::Rset);
}

void Session::quit() {
  Entry g(this);
  if (finished_ || closing_) return;
  begin_quit();
}

void Session::enter(Phase p) {
  if (finished_) return;
  phase_ = p;
  uint64_t ms = cfg_.timeouts[p];
  phase_timer_->start(ms, [this, ms] {
    Entry g(this);
    if (phase_ == Phase::Idle) return begin_quit();
    if (phase_ == Phase::Quit) return close_session();
    fail(core::Status::Deferred, core::Reason::Timeout,
         "nothing from the server within " + std::to_string(ms) + " ms in phase " + std::string(to_string(phase_)));
  });
}

void Session::send(std::string bytes) {
  if (finished_ || !stream_) return;
  if (int rc = stream_->write(std::move(bytes)); rc != 0) {
    std::string detail = stream_->tls_error().empty() ? std::string(uv_strerror(rc)) : stream_->tls_error();
    fail(core::Status::Deferred, io_reason(rc), detail);
  }
}

void Session::on_connected(int status) {
  Entry g(this);
  if (finished_) return;
  if (status != 0) return fail(core::Status::Deferred, io_reason(status), uv_strerror(status));
  if (cfg_.security == Security::Tls) return start_tls();
  enter(Phase::Banner);
}

void Session::start_tls() {
  core::TlsClientParams p;
  p.server_name = cfg_.tls_name;
  p.verify = cfg_.security == Security::Tls || core::verified_tls_required(cfg_.tls_policy);
  // RFC 7672 2.2: TLSA records exist but none is usable → TLS is still mandatory, unauthenticated.
  if (cfg_.tls_policy == TlsPolicy::Dane && cfg_.dane.empty()) p.verify = false;
  p.check = !p.verify && cfg_.tls_check && cfg_.tls && cfg_.tls_policy != TlsPolicy::Dane;
  p.ctx = !p.verify && !p.check && cfg_.tls_opportunistic ? cfg_.tls_opportunistic : cfg_.tls;
  tls_checked_ = p.verify || p.check;
  p.session_key = tls_key_;
  if (cfg_.tls_policy == TlsPolicy::Dane) p.dane = cfg_.dane;
  enter(Phase::Tls);
  if (int rc = stream_->start_tls_client(p); rc != 0)
    fail(core::Status::Failed, core::Reason::TlsFailed, std::string("cannot start TLS: ") + uv_strerror(rc));
}

void Session::on_tls_handshake(bool ok, const std::string& error) {
  Entry g(this);
  if (finished_) return;
  metrics().tls.with({ok ? "ok" : "failed"}).inc();
  // Without a check OpenSSL's verdict is about a trust store nobody asked for: not reported.
  const long verdict = tls_checked_ ? stream_->tls_verify_result() : 0;
  tls_local_ip_ = stream_->local_ip();
  if (!ok) {
    tls_result_ = verdict != 0 ? core::tls_result_of_verify(verdict) : core::TlsResult::ValidationFailure;
    tls_result_detail_ = error;
    bool cert = error.rfind("certificate verify failed", 0) == 0;
    return fail(core::Status::Deferred, cert ? core::Reason::TlsCertificate : core::Reason::TlsFailed, error, {},
                network_fault(cfg_.relay));
  }
  tls_on_ = true;
  // Unchecked opportunistic TLS is a success as such; a checked one says what the check found.
  tls_result_ = core::tls_result_of_verify(verdict);
  if (verdict != 0) tls_result_detail_ = "certificate check: " + core::tls_verify_error_text(verdict);
  // RFC 3207 4.2: everything learned before TLS is discarded.
  caps_ = EhloCapabilities{};
  parser_.reset();
  if (cfg_.security == Security::Tls) return enter(Phase::Banner);
  send("EHLO " + cfg_.helo_name + "\r\n");
  enter(Phase::Ehlo);
}

void Session::on_data(std::string_view bytes) {
  Entry g(this);
  if (finished_) return;
  if (phase_ == Phase::Idle) {
    // Typically "421 idle timeout" as the server hangs up; the connection is done either way.
    core::log_debug("smtp_idle_unsolicited", {{"host", host_}});
    return close_session();
  }
  parser_.feed(bytes);
  while (!finished_) {
    auto r = parser_.next();
    if (!r) return fail(core::Status::Deferred, core::Reason::ProtocolError, std::string(to_string(r.error())));
    if (!r.value()) return;
    advance(*r.value());
  }
}

void Session::on_end(int status) {
  Entry g(this);
  if (finished_) return;
  if (!in_transaction_) return close_session();
  std::string detail = status == UV_EOF ? "server closed the connection" : std::string(uv_strerror(status));
  if (stream_ && !stream_->tls_error().empty()) detail = stream_->tls_error();
  fail(core::Status::Deferred, io_reason(status), detail);
}

void Session::advance(const core::Reply& r) {
  metrics().replies.with({std::string(to_string(phase_)), reply_class(r.code)}).inc();
  bool positive = r.code >= 200 && r.code < 300;
  switch (phase_) {
    case Phase::Connect:
    case Phase::Tls:
    case Phase::Idle:
      return fail(core::Status::Deferred, core::Reason::ProtocolError, "reply while none was expected", r);
    case Phase::Banner:
      if (!positive) return fail_reply(r);
      send("EHLO " + cfg_.helo_name + "\r\n");
      return enter(Phase::Ehlo);
    case Phase::Ehlo:
      if (r.code >= 500 && !tls_on_) {  // RFC 5321 4.1.1.1: an old server; try HELO
        send("HELO " + cfg_.helo_name + "\r\n");
        return enter(Phase::Helo);
      }
      if (!positive) return fail_reply(r);
      caps_ = parse_ehlo(r);
      return after_ehlo();
    case Phase::Helo:
      if (!positive) return fail_reply(r);
      caps_ = EhloCapabilities{};
      return after_ehlo();
    case Phase::StartTls:
      if (r.code != 220) {
        // Opportunistic: a refusal (4xx or 5xx) is the server saying it has no TLS for us now;
        // as Postfix's "may" does, this connection continues in plaintext.
        if (cfg_.tls_policy == TlsPolicy::Opportunistic && cfg_.security == Security::StartTls && r.code >= 400) {
          tls_on_ = false;
          tls_fallback_ = core::TlsFallback::StarttlsRefused;
          return after_ehlo();
        }
        return fail_reply(r, core::Reason::StarttlsFailed);
      }
      // Bytes queued behind the 220 were sent before TLS and must not be read as if protected
      // (the STARTTLS command injection attack).
      if (parser_.buffered() > 0)
        return fail(core::Status::Deferred, core::Reason::ProtocolError, "data after the STARTTLS reply", r);
      return start_tls();
    case Phase::Auth:
      return auth_reply(r);
    case Phase::Mail:
      if (!positive) return fail_reply(r);
      if (!pipelined_) send("RCPT TO:<" + env_.rcpt_to + ">\r\n");
      return enter(Phase::Rcpt);
    case Phase::Rcpt:
      if (!positive) return fail_reply(r);
      if (!pipelined_) send("DATA\r\n");
      return enter(Phase::Data);
    case Phase::Data:
      if (r.code != 354) return fail_reply(r);
      send(std::move(env_.message));
      env_.message.clear();
      return enter(Phase::Body);
    case Phase::Body:
      if (!positive) return fail_reply(r);
      return succeed(r);
    case Phase::Rset:
      if (!positive) return fail_reply(r);
      return start_transaction();
    case Phase::Quit:
      return close_session();
  }
}

void Session::after_ehlo() {
  if (cfg_.security == Security::StartTls && !tls_on_ && tls_fallback_ == core::TlsFallback::None) {
    if (caps_.starttls) {
      send("STARTTLS\r\n");
      return enter(Phase::StartTls);
    }
    if (cfg_.tls_policy != TlsPolicy::Opportunistic || cfg_.tls_check) {
      tls_result_ = core::TlsResult::StarttlsNotSupported;
      tls_result_detail_ = "the server does not offer STARTTLS";
      tls_local_ip_ = stream_ ? stream_->local_ip() : "";
    }
    if (cfg_.tls_policy != TlsPolicy::Opportunistic) {
      send("QUIT\r\n");
      return fail(cfg_.relay ? core::Status::Failed : core::Status::Deferred, core::Reason::StarttlsUnavailable,
                  "TLS is required but the server does not offer STARTTLS", {},
                  cfg_.relay ? core::Fault::PolicyAuth : core::Fault::RecipientTransient);
    }
  }
  if (!cfg_.auth.empty()) return start_auth();
  if (probe_) return probe_passed(core::Reply{});
  start_transaction();
}

bool Session::credentials_protected() const {
  if (cfg_.allow_plaintext_auth) return true;
  return tls_on_ && stream_ && stream_->tls_info().verified;
}

void Session::start_auth() {
  const Credentials& c = cfg_.auth;
  if (!credentials_protected()) {
    // Plaintext, or opportunistic TLS that anyone in the path could have terminated: a secret
    // sent now could be read. Nothing of it leaves the process.
    enter(Phase::Auth);
    send("QUIT\r\n");
    return fail(core::Status::Failed, core::Reason::AuthNeedsTls,
                "credentials are sent only over TLS with a verified certificate, and this connection has none", {},
                core::Fault::PolicyAuth);
  }
  std::string cmd;
  if (!c.oauth_token.empty()) {
    if (caps_.supports_auth("XOAUTH2")) {
      auth_mech_ = AuthMech::XOauth2;
      cmd = "AUTH XOAUTH2 " + core::base64_encode(core::sasl_xoauth2(c.username, c.oauth_token));
    } else if (caps_.supports_auth("OAUTHBEARER")) {
      auth_mech_ = AuthMech::OAuthBearer;
      cmd = "AUTH OAUTHBEARER " +
            core::base64_encode(core::sasl_oauthbearer(c.username, host_, port_, c.oauth_token));
    }
  } else if (caps_.supports_auth("PLAIN")) {
    auth_mech_ = AuthMech::Plain;
    cmd = "AUTH PLAIN " + core::base64_encode(core::sasl_plain(c.username, c.password));
  } else if (caps_.supports_auth("LOGIN")) {
    auth_mech_ = AuthMech::Login;
    cmd = "AUTH LOGIN";
  }
  if (cmd.empty()) {
    send("QUIT\r\n");
    return fail(core::Status::Failed, core::Reason::AuthUnavailable,
                c.oauth_token.empty() ? "the server offers neither AUTH PLAIN nor LOGIN"
                                      : "the server offers neither AUTH XOAUTH2 nor OAUTHBEARER",
                {}, core::Fault::PolicyAuth);
  }
  auth_step_ = 0;
  send(cmd + "\r\n");
  enter(Phase::Auth);
}

void Session::auth_reply(const core::Reply& r) {
  // RFC 4954 says 235; like Postfix's client, any 2xx counts (Postfix's own smtp-sink says 250).
  if (r.code / 100 == 2) return probe_ ? probe_passed(r) : start_transaction();
  if (r.code == 334) {
    ++auth_step_;
    if (auth_mech_ == AuthMech::Login && auth_step_ == 1) {
      send(core::base64_encode(cfg_.auth.username) + "\r\n");
      return enter(Phase::Auth);
    }
    if (auth_mech_ == AuthMech::Login && auth_step_ == 2) {
      send(core::base64_encode(cfg_.auth.password) + "\r\n");
      return enter(Phase::Auth);
    }
    if (auth_mech_ == AuthMech::XOauth2 && auth_step_ == 1) {
      // The challenge is a JSON error; the mechanism's answer (an empty line) asks for the final
      // (failure) reply.
      send(core::base64_encode(core::kXoauth2ErrorAnswer) + "\r\n");
      return enter(Phase::Auth);
    }
    if (auth_mech_ == AuthMech::OAuthBearer && auth_step_ == 1) {
      // RFC 7628 §3.2.3: the error challenge is answered with ^A; the server's final reply follows.
      send(core::base64_encode(core::kOauthbearerErrorAnswer) + "\r\n");
      return enter(Phase::Auth);
    }
    send("*\r\n");  // RFC 4954: cancel an exchange we cannot continue
    return fail(core::Status::Failed, core::Reason::AuthFailed, "unexpected AUTH challenge", r,
                core::Fault::PolicyAuth);
  }
  fail_reply(r, r.code >= 500 ? core::Reason::AuthFailed : core::Reason::AuthDeferred);
}

void Session::start_transaction() {
  // RFC 6531 3.4 and RFC 6532 3.7: UTF-8 in the envelope or in the header needs SMTPUTF8. The
  // composer writes raw UTF-8 into the header only for an address with a UTF-8 local part.
  const std::string_view header = std::string_view(env_.message).substr(0, env_.message.find("\r\n\r\n"));
  const bool utf8 = has_8bit(env_.mail_from) || has_8bit(env_.rcpt_to) || has_8bit(header);
  auto refuse = [this](core::Reason reason, std::string detail) {
    core::Outcome o;
    o.status = core::Status::Bounced;
    o.phase = core::Phase::Mail;
    o.reason = reason;
    o.detail = std::move(detail);
    o.fault = core::Fault::RecipientPermanent;
    report(std::move(o), true);
  };
  if (utf8 && !caps_.smtputf8) {
    const std::string& who = has_8bit(env_.rcpt_to) ? env_.rcpt_to : env_.mail_from;
    return refuse(core::Reason::Smtputf8Unsupported,
                  (has_8bit(who) ? who : std::string("the message header")) +
                      " needs SMTPUTF8 (RFC 6531) and " + host_ + " does not offer it, so the message cannot be sent there");
  }
  std::string payload = dot_stuff(env_.message);
  if (caps_.size_limit > 0 && payload.size() > caps_.size_limit)
    return refuse(core::Reason::MessageTooLarge, "message of " + std::to_string(payload.size()) +
                                           " bytes exceeds the server's SIZE " + std::to_string(caps_.size_limit));
  std::string cmd = "MAIL FROM:<" + env_.mail_from + ">";
  if (caps_.size_advertised) cmd += " SIZE=" + std::to_string(payload.size());
  if (caps_.eightbitmime && has_8bit(payload)) cmd += " BODY=8BITMIME";
  if (utf8) cmd += " SMTPUTF8";
  cmd += "\r\n";
  env_.message = std::move(payload);
  pipelined_ = cfg_.pipelining && caps_.pipelining;
  if (pipelined_) cmd += "RCPT TO:<" + env_.rcpt_to + ">\r\nDATA\r\n";
  send(std::move(cmd));
  enter(Phase::Mail);
}

void Session::succeed(const core::Reply& r) {
  core::Outcome o;
  o.status = core::Status::Delivered;
  o.phase = core::Phase::Body;
  o.reason = core::Reason::Delivered;
  o.reply = r;
  o.fault = core::Fault::Success;
  report(std::move(o), true);
}

void Session::probe_passed(const core::Reply& r) {
  core::Outcome o;
  o.status = core::Status::Delivered;  // nothing was sent: this server would take mail from us
  o.phase = outcome_phase(phase_);
  o.reason = core::Reason::ProbePassed;
  o.reply = r;
  o.fault = core::Fault::Success;
  report(std::move(o), true);  // then QUIT, as after a message
}

void Session::fail_reply(const core::Reply& r, core::Reason reason) {
  core::Outcome o;
  o.phase = outcome_phase(phase_);
  o.reply = r;
  if (r.code < 400) {
    o.status = core::Status::Deferred;
    o.reason = core::Reason::ProtocolError;
    o.detail = "unexpected reply code " + std::to_string(r.code);
    o.fault = network_fault(cfg_.relay);
  } else {
    Classification c = classify(r, o.phase, cfg_.relay);
    o.status = c.status;
    o.fault = c.fault;
    o.reason = reason == core::Reason::None ? reply_reason(phase_, r.code >= 500) : reason;
    o.detail =
        std::string(r.code >= 500 ? "permanent failure" : "temporary failure") + " (" + std::string(c.rule) + ")";
  }
  // After a refused MAIL/RCPT/DATA/"." the server is back at the start of a transaction, unless
  // pipelined replies are still due or it said 421 (closing).
  bool outstanding = pipelined_ && (phase_ == Phase::Mail || phase_ == Phase::Rcpt);
  bool clean = r.code >= 400 && r.code != 421 && !outstanding &&
               (phase_ == Phase::Mail || phase_ == Phase::Rcpt || phase_ == Phase::Data || phase_ == Phase::Body);
  if (clean && hooks_.idle) return report(std::move(o), true);
  send("QUIT\r\n");  // best effort, the server is still talking to us; its reply is not awaited
  report(std::move(o), false);
  close_session();
}

void Session::fail(core::Status status, core::Reason reason, std::string detail, const core::Reply& reply,
                   core::Fault fault) {
  if (finished_) return;
  if (in_transaction_) {
    core::Outcome o;
    o.status = status;
    o.phase = reason == core::Reason::InvalidEnvelope ? core::Phase::Envelope : outcome_phase(phase_);
    o.reason = reason;
    o.detail = std::move(detail);
    o.reply = reply;
    o.fault = fault == core::Fault::None && status == core::Status::Deferred ? network_fault(cfg_.relay) : fault;
    // Neither says anything about the server: a bad envelope never reached it, an abort is ours.
    if (reason == core::Reason::InvalidEnvelope || reason == core::Reason::Aborted) o.fault = core::Fault::None;
    report(std::move(o), false);
  }
  close_session();
}

void Session::report(core::Outcome outcome, bool reusable) {
  if (!in_transaction_ || finished_) return;
  in_transaction_ = false;
  ++messages_;
  outcome.host = host_;
  outcome.ip = ip_;
  if (tls_on_ && stream_) {
    core::TlsInfo info = stream_->tls_info();
    outcome.tls_version = info.version;
    outcome.tls_cipher = info.cipher;
  }
  outcome.tls_policy = applied_tls_policy();
  outcome.tls_fallback = tls_on_ ? core::TlsFallback::None : tls_fallback_;
  outcome.tls_result = std::exchange(tls_result_, core::TlsResult::None);
  outcome.tls_result_detail = std::move(tls_result_detail_);
  tls_result_detail_.clear();
  outcome.tls_local_ip = std::exchange(tls_local_ip_, std::string());
  if (outcome.status != core::Status::Delivered)
    metrics().failures.with({std::string(to_string(outcome.phase)), std::string(to_string(outcome.reason))}).inc();
  // The delivery logs its outcome (one line a delivery, daemon/delivery.cpp); this is the
  // transaction's own view, for debugging.
  core::log_debug("smtp_transaction_end", {{"status", core::to_string(outcome.status)},
                                           {"phase", core::to_string(outcome.phase)},
                                           {"reason", core::to_string(outcome.reason)},
                                           {"fault", core::to_string(outcome.fault)},
                                           {"code", std::to_string(outcome.reply.code)},
                                           {"enhanced", outcome.reply.enhanced},
                                           {"host", host_},
                                           {"ip", ip_},
                                           {"tls", outcome.tls_version}});
  env_ = Envelope{};
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(outcome);
  if (finished_ || !reusable || closing_) return;
  if (hooks_.idle) {
    enter(Phase::Idle);
    if (stream_) stream_->release_buffers();  // thousands may wait idle: keep each small
    hooks_.idle(this);
    return;
  }
  begin_quit();
}

TlsPolicy Session::applied_tls_policy() const {
  return cfg_.security == Security::None ? TlsPolicy::None : cfg_.tls_policy;
}

void Session::begin_quit() {
  if (finished_ || closing_) return;
  closing_ = true;
  send("QUIT\r\n");
  enter(Phase::Quit);
}

void Session::close_session() {
  if (finished_) return;
  finished_ = true;
  finish_self();  // every caller holds an Entry: the session is freed when the outermost one leaves
  closing_ = true;
  phase_timer_.reset();
  total_timer_.reset();
  if (stream_) stream_->close();
  stream_ = nullptr;
  auto closed = std::move(hooks_.closed);
  hooks_ = SessionHooks{};
  if (closed) closed(this);
}

}  // namespace deliverd::smtp
