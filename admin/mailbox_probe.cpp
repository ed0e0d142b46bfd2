#include "admin/mailbox_probe.h"

#include <array>
#include <string_view>
#include <utility>

#include "core/log.h"
#include "core/tcp_stream.h"
#include "core/timer.h"

namespace deliverd::admin {
namespace {

// The steps the answer names (MailboxTestResult::step), for each protocol: the API's vocabulary.
enum class Step { Resolve, PortPolicy, Ssrf, Connect, Tls, Auth, Protocol, Timeout };
enum class Proto { Smtp, Imap };

struct StepName {
  std::string_view smtp, imap;
};
constexpr std::array<StepName, 8> kStepNames = {{
    {"resolve", "imap_resolve"},
    {"port_policy", "imap_port_policy"},
    {"ssrf", "imap_ssrf"},
    {"connect", "imap_connect"},
    {"tls", "imap_tls"},
    {"auth", "imap_login"},
    {"smtp", "imap_login"},
    {"timeout", "timeout"},
}};

std::string_view step_name(Proto p, Step s) {
  const StepName& n = kStepNames[static_cast<size_t>(s)];
  return p == Proto::Smtp ? n.smtp : n.imap;
}

// One check (SMTP or IMAP) of one target: port policy, resolve (the resolver's AddressPolicy vets
// every address), then the protocol's own exchange with exactly the vetted address, under one
// deadline. Heap object: it frees itself once it has answered; callbacks that may still be on
// the stack hold a Depth so nothing is touched after delete.
class Check {
 public:
  using Done = std::function<void(MailboxTestResult)>;
  struct Target {
    std::string host;
    int port = 0;
    int timeout_ms = 0;
  };
  virtual ~Check() = default;

  // May answer before it returns (port policy).
  void start(dns::Resolver* resolver) {
    Depth d(this);
    timer_->start(static_cast<uint64_t>(target_.timeout_ms), [this] {
      Depth d(this);
      fail(Step::Timeout, std::string(proto_ == Proto::Imap ? "IMAP" : "SMTP") + " check did not finish in time");
    });
    if (!dns::port_allowed(target_.port))
      return fail(Step::PortPolicy, "port " + std::to_string(target_.port) + " is not allowed");
    resolver_ = resolver;
    resolve_id_ = resolver->resolve_host(target_.host, [this](const dns::ResolvedHost& r) {
      resolve_id_ = 0;
      Depth d(this);
      resolved(r);
    });
  }

 protected:
  Check(uv_loop_t* loop, Proto proto, Target target, Done done)
      : loop_(loop), proto_(proto), target_(std::move(target)), done_(std::move(done)), timer_(loop) {}

  // Starts the protocol exchange with the vetted address (port set).
  virtual void connect(const sockaddr_storage& addr) = 0;
  // Drops the exchange without calling back: the check has answered (or timed out).
  virtual void abandon() = 0;

  struct Depth {
    explicit Depth(Check* c) : c(c) { ++c->depth_; }
    ~Depth() {
      if (--c->depth_ == 0 && c->finished_) delete c;
    }
    Check* c;
  };

  void fail(Step step, std::string message) {
    finish(MailboxTestResult{false, std::string(step_name(proto_, step)), std::move(message)});
  }
  void pass() { finish(MailboxTestResult{true, "", "ok"}); }
  bool finished() const { return finished_; }

  uv_loop_t* loop_;
  Proto proto_;
  Target target_;
  std::string ip_;  // the vetted address connected to

 private:
  void resolved(const dns::ResolvedHost& r) {
    if (r.allowed.empty()) {
      if (!r.refused.empty() || r.error == dns::Code::RefusedByPolicy) {
        std::string why = r.refused.empty() ? std::string(dns::to_string(r.error))
                                            : r.refused.front().first + " is " + r.refused.front().second;
        return fail(Step::Ssrf, target_.host + ": address refused by policy (" + why + ")");
      }
      return fail(Step::Resolve, target_.host + ": " + (r.error == dns::Code::None ? "no address" : std::string(dns::to_string(r.error))));
    }
    sockaddr_storage addr = dns::with_port(r.allowed.front(), target_.port);
    ip_ = dns::address_to_string(reinterpret_cast<const sockaddr*>(&addr));
    connect(addr);
  }

  void finish(MailboxTestResult r) {
    if (finished_) return;
    finished_ = true;
    timer_.reset();
    if (resolve_id_ != 0) resolver_->cancel(resolve_id_);
    abandon();
    auto done = std::move(done_);
    // Every caller holds a Depth: the last one to leave frees the check.
    done(std::move(r));
  }

  Done done_;
  core::TimerHandle timer_;
  dns::Resolver* resolver_ = nullptr;
  dns::Resolver::RequestId resolve_id_ = 0;
  int depth_ = 0;
  bool finished_ = false;
};

// SMTP: the delivery session itself, in probe mode. Its outcome is mapped onto the probe's steps.
class SmtpCheck final : public Check {
 public:
  SmtpCheck(uv_loop_t* loop, Target target, smtp::SessionConfig cfg, Done done)
      : Check(loop, Proto::Smtp, std::move(target), std::move(done)), cfg_(std::move(cfg)) {}

 private:
  void connect(const sockaddr_storage& addr) override {
    session_ = smtp::Session::probe(loop_, cfg_, reinterpret_cast<const sockaddr*>(&addr), target_.host,
                                    [this](const core::Outcome& o) {
                                      session_ = nullptr;  // freed by itself after this call
                                      Depth d(this);
                                      if (finished()) return;
                                      if (o.status == core::Status::Delivered) return pass();
                                      Step s = step_of(o);
                                      fail(s, message(s, o));
                                    });
  }

  void abandon() override {
    if (auto* s = std::exchange(session_, nullptr)) s->abort("connection test ended");
  }

  static Step step_of(const core::Outcome& o) {
    if (o.reason == core::Reason::Timeout || o.reason == core::Reason::SessionTimeout) return Step::Timeout;
    if (o.reason == core::Reason::StarttlsUnavailable) return Step::Tls;  // found in the EHLO reply
    switch (o.phase) {
      case core::Phase::Connect:
      case core::Phase::Banner:
        return Step::Connect;
      case core::Phase::Tls:
      case core::Phase::StartTls:
        return Step::Tls;
      case core::Phase::Auth:
        return Step::Auth;
      default:
        return Step::Protocol;
    }
  }

  std::string message(Step s, const core::Outcome& o) const {
    std::string reply = o.reply.code ? std::to_string(o.reply.code) + " " + o.reply.text : "";
    switch (s) {
      case Step::Connect:
        if (!reply.empty()) return "unexpected greeting: " + reply;
        if (o.phase == core::Phase::Banner) return "the server closed the connection (" + o.detail + ")";
        return "cannot connect to " + ip_ + ": " + o.detail;
      case Step::Tls:
        if (!reply.empty()) return "STARTTLS refused: " + reply;
        if (o.phase == core::Phase::Tls) return "TLS handshake failed: " + o.detail;
        return o.detail;
      case Step::Auth:
        return reply.empty() ? o.detail : "authentication failed: " + reply;
      case Step::Protocol:
        return reply.empty() ? o.detail : std::string(core::to_string(o.phase)) + " refused: " + reply;
      default:
        return o.detail;
    }
  }

  smtp::SessionConfig cfg_;
  smtp::Session* session_ = nullptr;
};

constexpr size_t kMaxImapLine = 8192;

// RFC 3501 quoted string; CR, LF and NUL were refused before we got here.
std::string imap_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// IMAP: 993 implicit TLS or 143 STARTTLS, LOGIN (only once TLS is up), LOGOUT.
class ImapCheck final : public Check, private core::StreamHandler {
 public:
  ImapCheck(uv_loop_t* loop, Target target, std::shared_ptr<core::TlsContext> tls, std::string username,
            std::string password, Done done)
      : Check(loop, Proto::Imap, std::move(target), std::move(done)),
        tls_(std::move(tls)),
        username_(std::move(username)),
        password_(std::move(password)) {}

 private:
  enum class State { Connect, Tls, Greeting, StartTls, Login, Logout };

  void connect(const sockaddr_storage& addr) override {
    stream_ = core::TcpStream::create(loop_, this);
    int rc = stream_->connect(reinterpret_cast<const sockaddr*>(&addr));
    if (rc != 0) fail(Step::Connect, "cannot connect to " + ip_ + ": " + uv_strerror(rc));
  }

  void abandon() override {
    if (auto* s = std::exchange(stream_, nullptr)) s->close();
  }

  void on_connected(int status) override {
    Depth d(this);
    if (status != 0) return fail(Step::Connect, "cannot connect to " + ip_ + ": " + uv_strerror(status));
    if (target_.port == 993) return begin_tls();
    state_ = State::Greeting;
  }

  void begin_tls() {
    state_ = State::Tls;
    core::TlsClientParams params;
    params.ctx = tls_;
    params.server_name = target_.host;
    params.verify = true;
    if (!tls_ || stream_->start_tls_client(params) != 0) return fail(Step::Tls, "cannot start TLS");
  }

  void on_tls_handshake(bool ok, const std::string& error) override {
    Depth d(this);
    if (!ok) return fail(Step::Tls, "TLS handshake failed: " + error);
    tls_on_ = true;
    if (target_.port == 993)
      state_ = State::Greeting;
    else
      login();
  }

  void on_end(int status) override {
    Depth d(this);
    Step s = state_ == State::Connect || state_ == State::Greeting ? Step::Connect
             : state_ == State::Tls || state_ == State::StartTls   ? Step::Tls
                                                                   : Step::Auth;
    fail(s, "the server closed the connection (" + std::string(uv_strerror(status)) + ")");
  }

  void on_data(std::string_view bytes) override {
    Depth d(this);
    if (finished()) return;
    line_buf_.append(bytes);
    size_t eol;
    while (!finished() && (eol = line_buf_.find("\r\n")) != std::string::npos) {
      std::string line = line_buf_.substr(0, eol);
      line_buf_.erase(0, eol + 2);
      on_line(line);
    }
    if (!finished() && line_buf_.size() > kMaxImapLine) fail(Step::Auth, "IMAP line too long");
  }

  void send(std::string s) {
    if (stream_->write(std::move(s)) != 0) fail(Step::Connect, "write failed");
  }

  void on_line(const std::string& line) {
    if (state_ == State::Greeting) {
      if (line.rfind("* OK", 0) == 0 || line.rfind("* PREAUTH", 0) == 0) {
        if (!tls_on_) {
          state_ = State::StartTls;
          return send("a1 STARTTLS\r\n");
        }
        return login();
      }
      return fail(Step::Connect, "unexpected IMAP greeting: " + line.substr(0, 200));
    }
    if (line.rfind("* ", 0) == 0) return;  // untagged data
    auto tagged_ok = [&](std::string_view tag) { return line.rfind(std::string(tag) + " OK", 0) == 0; };
    switch (state_) {
      case State::StartTls:
        if (!tagged_ok("a1")) return fail(Step::Tls, "STARTTLS refused: " + line.substr(0, 200));
        if (!line_buf_.empty()) return fail(Step::Tls, "data after the STARTTLS reply");
        return begin_tls();
      case State::Login:
        if (!tagged_ok("a2")) return fail(Step::Auth, "LOGIN failed: " + line.substr(0, 200));
        state_ = State::Logout;
        return send("a3 LOGOUT\r\n");
      case State::Logout:
        return pass();
      default:
        return;
    }
  }

  void login() {
    // Never in plaintext: the password would be readable on the way.
    if (!tls_on_) return fail(Step::Tls, "LOGIN is sent only over TLS");
    state_ = State::Login;
    send("a2 LOGIN " + imap_quote(username_) + " " + imap_quote(password_) + "\r\n");
  }

  std::shared_ptr<core::TlsContext> tls_;
  std::string username_, password_;
  core::TcpStream* stream_ = nullptr;
  std::string line_buf_;
  State state_ = State::Connect;
  bool tls_on_ = false;
};

void log_result(const std::string& mailbox, const MailboxTestResult& r) {
  core::log_info("mailbox_probe", {{"mailbox", mailbox}, {"ok", r.ok ? "true" : "false"}, {"step", r.step}});
}

}  // namespace

MailboxProber::MailboxProber(uv_loop_t* loop, dns::Resolver* resolver, MailboxProberConfig config)
    : loop_(loop), resolver_(resolver), config_(std::move(config)) {}

void MailboxProber::probe(const MailboxProbeRequest& req, std::function<void(MailboxTestResult)> done) {
  const store::Mailbox& m = req.mailbox;
  smtp::SessionConfig base = config_.smtp;
  base.tls = config_.tls;
  smtp::SessionConfig cfg =
      smtp::submission_config(std::move(base), m.security,
                              smtp::Credentials{m.username, m.password, m.oauth_token});
  auto after_smtp = [loop = loop_, resolver = resolver_, config = config_, req, done](MailboxTestResult r) {
    if (!r.ok || req.imap.empty()) {
      log_result(req.mailbox.id, r);
      return done(std::move(r));
    }
    auto* imap = new ImapCheck(loop, {req.imap.host, req.imap.port, config.timeout_ms}, config.tls, req.imap.username,
                               req.imap.password, [done, id = req.mailbox.id](MailboxTestResult r2) {
                                 log_result(id, r2);
                                 done(std::move(r2));
                               });
    imap->start(resolver);
  };
  auto* smtp = new SmtpCheck(loop_, {m.smtp_host, m.smtp_port, config_.timeout_ms}, std::move(cfg), after_smtp);
  smtp->start(resolver_);
}

}  // namespace deliverd::admin
