#include "admin/mailbox_probe.h"

#include <array>
#include <string_view>
#include <utility>

#include "core/log.h"
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
    finish(MailboxTestResult{false, std::string(step_name(proto_, step)), std::move(message), {}});
  }
  void pass() { finish(MailboxTestResult{true, "", "ok", {}}); }
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

// IMAP: the inbound client, the one the mailbox watcher uses: 993 TLS or 143 STARTTLS, LOGIN (or
// AUTHENTICATE PLAIN where LOGIN is disabled) only once TLS is verified, then LOGOUT.
class ImapCheck final : public Check {
 public:
  ImapCheck(uv_loop_t* loop, Target target, inbound::ImapConfig cfg, inbound::ImapCredentials creds, Done done)
      : Check(loop, Proto::Imap, std::move(target), std::move(done)), cfg_(std::move(cfg)), creds_(std::move(creds)) {}

 private:
  void connect(const sockaddr_storage& addr) override {
    inbound::ImapClient::Hooks hooks;
    hooks.closed = [this](const std::optional<inbound::ImapError>&) { client_ = nullptr; };
    client_ = inbound::ImapClient::connect(loop_, cfg_, reinterpret_cast<const sockaddr*>(&addr), target_.host,
                                           std::move(hooks), [this](const inbound::ImapResult<core::Ok>& r) {
                                             Depth d(this);
                                             if (!finished() && !r) failed(r.error());
                                           });
    client_->login(creds_, [this](const inbound::ImapResult<core::Ok>& r) {
      Depth d(this);
      if (finished()) return;
      if (!r) return failed(r.error());
      client_->logout([this](const inbound::ImapResult<core::Ok>& out) {
        Depth d(this);
        if (finished()) return;
        if (!out) return failed(out.error());
        pass();
      });
    });
  }

  void abandon() override {
    if (auto* c = std::exchange(client_, nullptr)) c->close();
  }

  void failed(const inbound::ImapError& e) {
    using K = inbound::ImapErrorKind;
    using C = inbound::ImapCommand;
    switch (e.kind) {
      case K::Connect:
        return fail(Step::Connect, "cannot connect to " + ip_ + ": " + e.text);
      case K::Tls:
        return fail(Step::Tls, e.text);
      case K::Timeout:
        return fail(Step::Timeout, "IMAP check did not finish in time (" + std::string(to_string(e.command)) + ")");
      case K::LoginFailed: {
        bool named = e.code != inbound::Code::None && e.code != inbound::Code::Other;
        return fail(Step::Auth, "LOGIN failed: " + (named ? "[" + std::string(to_string(e.code)) + "] " : "") + e.text);
      }
      case K::AuthUnavailable:
      case K::InvalidArgument:
      case K::CommandFailed:
        return fail(Step::Auth, e.text);
      default:
        break;
    }
    switch (e.command) {
      case C::Connect:
      case C::Greeting:
      case C::Capability:
        return fail(Step::Connect, e.text);
      case C::Tls:
      case C::StartTls:
        return fail(Step::Tls, e.text);
      default:
        return fail(Step::Auth, e.text);
    }
  }

  inbound::ImapConfig cfg_;
  inbound::ImapCredentials creds_;
  inbound::ImapClient* client_ = nullptr;
};

void log_result(const std::string& mailbox, const MailboxTestResult& r) {
  core::log_info("mailbox_probe", {{"mailbox", mailbox}, {"ok", r.ok ? "true" : "false"}, {"step", r.step}});
}

// An OAuth mailbox logs in to IMAP with the access token its SMTP check used (AUTHENTICATE
// XOAUTH2); any other with the IMAP password.
inbound::ImapCredentials imap_credentials(const MailboxProbeRequest& req) {
  if (!req.mailbox.oauth_provider.empty())
    return {req.imap.username, "", req.mailbox.oauth_token, inbound::ImapAuthMethod::Auto};
  return inbound::ImapCredentials::with_password(req.imap.username, req.imap.password);
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
    auto finish = [done, id = req.mailbox.id](MailboxTestResult r2) {
      log_result(id, r2);
      done(std::move(r2));
    };
    // Only the two IMAP ports: TLS from the first byte or STARTTLS, never plaintext.
    if (req.imap.port != 993 && req.imap.port != 143)
      return finish(
          {false, "imap_port_policy", "port " + std::to_string(req.imap.port) + " is not an IMAP port (993, 143)", {}});
    inbound::ImapConfig cfg = config.imap;
    cfg.tls = config.tls;
    cfg.security = req.imap.port == 993 ? core::Security::Tls : core::Security::StartTls;
    auto* imap =
        new ImapCheck(loop, {req.imap.host, req.imap.port, config.timeout_ms}, std::move(cfg),
                      imap_credentials(req), std::move(finish));
    imap->start(resolver);
  };
  auto* smtp = new SmtpCheck(loop_, {m.smtp_host, m.smtp_port, config_.timeout_ms}, std::move(cfg), after_smtp);
  smtp->start(resolver_);
}

}  // namespace deliverd::admin
