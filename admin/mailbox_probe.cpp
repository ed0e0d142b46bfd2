#include "admin/mailbox_probe.h"

#include <openssl/evp.h>

#include <memory>
#include <optional>

#include "core/log.h"
#include "core/tcp_stream.h"
#include "core/timer.h"
#include "smtp/ehlo.h"
#include "smtp/reply_parser.h"

namespace deliverd::admin {
namespace {

constexpr size_t kMaxImapLine = 8192;

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// RFC 3501 quoted string; CR, LF and NUL were refused before we got here.
std::string imap_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// One connection check (SMTP or IMAP). Heap object: it frees itself once it has answered.
class Check : public core::StreamHandler {
 public:
  enum class Proto { Smtp, Imap };
  struct Params {
    Proto proto;
    std::string host;
    int port;
    bool implicit_tls, starttls;
    std::string username, password, oauth_token;
    std::string helo_name;
    int timeout_ms;
  };

  static void run(uv_loop_t* loop, dns::Resolver* resolver, std::shared_ptr<core::TlsContext> tls, Params p,
                  std::function<void(MailboxTestResult)> done) {
    auto* c = new Check(loop, std::move(tls), std::move(p), std::move(done));
    Depth d(c);
    c->start(resolver);
  }

 private:
  enum class Step { Resolve, Connect, Tls, Greeting, Ehlo, StartTls, Auth, Quit, ImapStartTls, ImapLogin, ImapLogout };

  Check(uv_loop_t* loop, std::shared_ptr<core::TlsContext> tls, Params p, std::function<void(MailboxTestResult)> done)
      : loop_(loop), tls_(std::move(tls)), p_(std::move(p)), done_(std::move(done)), timer_(loop) {}

  // finish() may run inside a stream or resolver callback; the object is freed only when the
  // outermost callback has returned, so no member is touched after delete.
  struct Depth {
    explicit Depth(Check* c) : c(c) { ++c->depth_; }
    ~Depth() {
      if (--c->depth_ == 0 && c->finished_) delete c;
    }
    Check* c;
  };

  std::string prefixed(std::string_view step) const {
    return (p_.proto == Proto::Imap ? "imap_" : "") + std::string(step);
  }

  void start(dns::Resolver* resolver) {
    timer_->start(static_cast<uint64_t>(p_.timeout_ms), [this] {
      finish(false, "timeout",
             std::string(p_.proto == Proto::Imap ? "IMAP" : "SMTP") + " check did not finish in time");
    });
    if (!dns::port_allowed(p_.port))
      return finish(false, prefixed("port_policy"), "port " + std::to_string(p_.port) + " is not allowed");
    step_ = Step::Resolve;
    // The resolver answers asynchronously; finish() may have run (timeout) before it does.
    std::weak_ptr<bool> alive = alive_;
    resolver->resolve_host(p_.host, [this, alive](const dns::ResolvedHost& r) {
      if (alive.expired()) return;
      Depth d(this);
      on_resolved(r);
    });
  }

  void on_resolved(const dns::ResolvedHost& r) {
    if (r.allowed.empty()) {
      if (!r.refused.empty() || r.error == "refused_by_policy") {
        std::string why = r.refused.empty() ? r.error : r.refused.front().first + " is " + r.refused.front().second;
        return finish(false, prefixed("ssrf"), p_.host + ": address refused by policy (" + why + ")");
      }
      return finish(false, prefixed("resolve"), p_.host + ": " + (r.error.empty() ? "no address" : r.error));
    }
    sockaddr_storage addr = dns::with_port(r.allowed.front(), p_.port);
    ip_ = dns::address_to_string(reinterpret_cast<const sockaddr*>(&addr));
    step_ = Step::Connect;
    stream_ = core::TcpStream::create(loop_, this);
    int rc = stream_->connect(reinterpret_cast<const sockaddr*>(&addr));
    if (rc != 0) return finish(false, prefixed("connect"), "cannot connect to " + ip_ + ": " + uv_strerror(rc));
  }

  void on_connected(int status) override {
    Depth d(this);
    if (status != 0) return finish(false, prefixed("connect"), "cannot connect to " + ip_ + ": " + uv_strerror(status));
    if (p_.implicit_tls) return begin_tls();
    step_ = Step::Greeting;
  }

  void begin_tls() {
    step_ = Step::Tls;
    core::TlsClientParams params;
    params.ctx = tls_;
    params.server_name = p_.host;
    params.verify = true;
    if (!tls_ || stream_->start_tls_client(params) != 0) return finish(false, prefixed("tls"), "cannot start TLS");
  }

  void on_tls_handshake(bool ok, const std::string& error) override {
    Depth d(this);
    if (!ok) return finish(false, prefixed("tls"), "TLS handshake failed: " + error);
    tls_on_ = true;
    if (p_.proto == Proto::Smtp) {
      if (p_.implicit_tls) {
        step_ = Step::Greeting;
      } else {
        send("EHLO " + p_.helo_name + "\r\n");
        step_ = Step::Ehlo;
      }
    } else {
      if (p_.implicit_tls)
        step_ = Step::Greeting;
      else
        imap_login();
    }
  }

  void on_end(int status) override {
    Depth d(this);
    finish(false, step_ == Step::Connect || step_ == Step::Greeting ? prefixed("connect") : prefixed(step_name()),
           "the server closed the connection (" + std::string(uv_strerror(status)) + ")");
  }

  void on_data(std::string_view bytes) override {
    if (finished_) return;
    Depth d(this);
    if (p_.proto == Proto::Smtp) {
      parser_.feed(bytes);
      while (!finished_) {
        auto r = parser_.next();
        if (!r) return finish(false, "smtp", "malformed reply: " + std::string(smtp::to_string(r.error())));
        if (!*r) break;
        smtp_reply(**r);
      }
    } else {
      line_buf_.append(bytes);
      size_t eol;
      while (!finished_ && (eol = line_buf_.find("\r\n")) != std::string::npos) {
        std::string line = line_buf_.substr(0, eol);
        line_buf_.erase(0, eol + 2);
        imap_line(line);
      }
      if (!finished_ && line_buf_.size() > kMaxImapLine) finish(false, "imap_login", "IMAP line too long");
    }
  }

  std::string step_name() const {
    switch (step_) {
      case Step::Tls:
      case Step::StartTls:
      case Step::ImapStartTls:
        return "tls";
      case Step::Auth:
        return "auth";
      case Step::ImapLogin:
      case Step::ImapLogout:
        return "login";
      default:
        return p_.proto == Proto::Smtp ? "smtp" : "login";
    }
  }

  void send(std::string s) {
    if (stream_->write(std::move(s)) != 0) finish(false, prefixed("connect"), "write failed");
  }

  // ---- SMTP ----
  void smtp_reply(const core::Reply& r) {
    std::string text = std::to_string(r.code) + " " + r.text;
    switch (step_) {
      case Step::Greeting:
        if (r.code != 220) return finish(false, "connect", "unexpected greeting: " + text);
        send("EHLO " + p_.helo_name + "\r\n");
        step_ = Step::Ehlo;
        return;
      case Step::Ehlo: {
        if (r.code != 250) return finish(false, "smtp", "EHLO refused: " + text);
        caps_ = smtp::parse_ehlo(r);
        if (p_.starttls && !tls_on_) {
          if (!caps_.starttls) return finish(false, "tls", "the server does not offer STARTTLS");
          send("STARTTLS\r\n");
          step_ = Step::StartTls;
          return;
        }
        return smtp_auth();
      }
      case Step::StartTls:
        if (r.code != 220) return finish(false, "tls", "STARTTLS refused: " + text);
        parser_.reset();
        return begin_tls();
      case Step::Auth:
        if (r.code == 235) return smtp_quit();
        if (r.code == 334 && mech_ == "LOGIN" && auth_step_ < 2) {
          send(base64(auth_step_++ == 0 ? p_.username : p_.password) + "\r\n");
          return;
        }
        if (r.code == 334) {  // XOAUTH2's error challenge: an empty line fetches the final reply
          send("\r\n");
          return;
        }
        return finish(false, "auth", "authentication failed: " + text);
      case Step::Quit:
        return finish(true, "", "");
      default:
        return;
    }
  }

  void smtp_auth() {
    if (p_.username.empty()) return smtp_quit();
    std::string cmd;
    if (!p_.oauth_token.empty() && caps_.supports_auth("XOAUTH2")) {
      mech_ = "XOAUTH2";
      cmd = "AUTH XOAUTH2 " + base64("user=" + p_.username + "\x01" + "auth=Bearer " + p_.oauth_token + "\x01\x01");
    } else if (p_.oauth_token.empty() && caps_.supports_auth("PLAIN")) {
      mech_ = "PLAIN";
      cmd = "AUTH PLAIN " + base64(std::string(1, '\0') + p_.username + std::string(1, '\0') + p_.password);
    } else if (p_.oauth_token.empty() && caps_.supports_auth("LOGIN")) {
      mech_ = "LOGIN";
      cmd = "AUTH LOGIN";
    } else {
      return finish(false, "auth", "the server offers no AUTH mechanism we can use");
    }
    step_ = Step::Auth;
    send(cmd + "\r\n");
  }

  void smtp_quit() {
    step_ = Step::Quit;
    send("QUIT\r\n");
  }

  // ---- IMAP ----
  void imap_line(const std::string& line) {
    if (step_ == Step::Greeting) {
      if (line.rfind("* OK", 0) == 0 || line.rfind("* PREAUTH", 0) == 0) {
        if (!p_.implicit_tls && !tls_on_) {
          step_ = Step::ImapStartTls;
          send("a1 STARTTLS\r\n");
          return;
        }
        return imap_login();
      }
      return finish(false, "imap_connect", "unexpected IMAP greeting: " + line.substr(0, 200));
    }
    if (line.rfind("* ", 0) == 0) return;  // untagged data
    auto tagged_ok = [&](std::string_view tag) { return line.rfind(std::string(tag) + " OK", 0) == 0; };
    switch (step_) {
      case Step::ImapStartTls:
        if (!tagged_ok("a1")) return finish(false, "imap_tls", "STARTTLS refused: " + line.substr(0, 200));
        line_buf_.clear();
        return begin_tls();
      case Step::ImapLogin:
        if (!tagged_ok("a2")) return finish(false, "imap_login", "LOGIN failed: " + line.substr(0, 200));
        step_ = Step::ImapLogout;
        send("a3 LOGOUT\r\n");
        return;
      case Step::ImapLogout:
        return finish(true, "", "");
      default:
        return;
    }
  }

  void imap_login() {
    step_ = Step::ImapLogin;
    send("a2 LOGIN " + imap_quote(p_.username) + " " + imap_quote(p_.password) + "\r\n");
  }

  void finish(bool ok, std::string step, std::string message) {
    if (finished_) return;
    finished_ = true;
    timer_.reset();
    if (stream_) stream_->close();
    alive_.reset();
    MailboxTestResult r{ok, ok ? "" : std::move(step), ok ? "ok" : std::move(message)};
    auto done = std::move(done_);
    // No stream callback reaches us after close() (core/tcp_stream.h); inside one, Depth frees us.
    if (depth_ == 0) delete this;
    done(std::move(r));
  }

  uv_loop_t* loop_;
  std::shared_ptr<core::TlsContext> tls_;
  Params p_;
  std::function<void(MailboxTestResult)> done_;
  core::TimerHandle timer_;
  core::TcpStream* stream_ = nullptr;
  smtp::ReplyParser parser_;
  smtp::EhloCapabilities caps_;
  std::string line_buf_, ip_, mech_;
  int auth_step_ = 0;
  int depth_ = 0;
  Step step_ = Step::Resolve;
  bool tls_on_ = false;
  bool finished_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

MailboxProber::MailboxProber(uv_loop_t* loop, dns::Resolver* resolver, const dns::AddressPolicy* policy,
                             std::shared_ptr<core::TlsContext> tls_client, MailboxProberConfig config)
    : loop_(loop), resolver_(resolver), policy_(policy), tls_(std::move(tls_client)), config_(std::move(config)) {}

void MailboxProber::probe(const MailboxProbeRequest& req, std::function<void(MailboxTestResult)> done) {
  const store::Mailbox& m = req.mailbox;
  Check::Params smtp{Check::Proto::Smtp, m.smtp_host, m.smtp_port,   m.security == "tls", m.security == "starttls",
                     m.username,         m.password,  m.oauth_token, config_.helo_name,   config_.timeout_ms};
  // The address policy is the resolver's; policy_ is kept for the day the resolver has none.
  (void)policy_;
  auto after_smtp = [this, req, done](MailboxTestResult r) {
    if (!r.ok || req.imap.empty()) {
      core::log_info("mailbox_probe", {{"mailbox", req.mailbox.id}, {"ok", r.ok ? "true" : "false"}, {"step", r.step}});
      return done(std::move(r));
    }
    Check::Params imap{Check::Proto::Imap,   req.imap.host,     req.imap.port,     req.imap.port == 993,
                       req.imap.port == 143, req.imap.username, req.imap.password, "",
                       config_.helo_name,    config_.timeout_ms};
    Check::run(loop_, resolver_, tls_, imap, [done, id = req.mailbox.id](MailboxTestResult r2) {
      core::log_info("mailbox_probe", {{"mailbox", id}, {"ok", r2.ok ? "true" : "false"}, {"step", r2.step}});
      done(std::move(r2));
    });
  };
  Check::run(loop_, resolver_, tls_, smtp, std::move(after_smtp));
}

}  // namespace deliverd::admin
