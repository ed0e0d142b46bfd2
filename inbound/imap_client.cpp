#include "inbound/imap_client.h"

#include <algorithm>
#include <utility>

#include "core/ascii.h"
#include "core/base64.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/sasl.h"
#include "dns/address_policy.h"

namespace deliverd::inbound {
namespace {

struct Metrics {
  core::Gauge& active;
  core::Family<core::Counter>& errors;
};

Metrics& metrics() {
  auto& reg = core::Registry::global();
  static Metrics m{
      reg.gauge("deliverd_imap_connections_active", "IMAP client connections currently open").get(),
      reg.counter("deliverd_imap_errors_total", "IMAP connections that ended with an error, by kind", {"kind"}),
  };
  return m;
}

constexpr std::array<std::string_view, 13> kErrorKindNames = {
    "connect",     "tls",   "protocol",     "too_large",        "timeout",        "closed",          "bye",
    "unavailable", "limit", "login_failed", "auth_unavailable", "command_failed", "invalid_argument"};

// Server text goes into logs and API answers: no control characters, bounded.
std::string clean_text(std::string_view s) {
  std::string out(s.substr(0, 300));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return out;
}

// A command line with its strings; a string that cannot be quoted goes as a literal, which
// without LITERAL+ ends a chunk: the rest follows the server's "+".
class Wire {
 public:
  Wire(bool literal_plus, bool literal_minus) : plus_(literal_plus), minus_(literal_minus) {}
  Wire& raw(std::string_view s) {
    cur_ += s;
    return *this;
  }
  // RFC 3501 astring: quoted when it can be, else a literal. NUL cannot be sent at all.
  bool string(std::string_view s) {
    if (s.find('\0') != std::string_view::npos) return false;
    bool quotable = std::all_of(s.begin(), s.end(), [](char c) {
      auto u = static_cast<unsigned char>(c);
      return u >= 0x20 && u < 0x7f;
    });
    if (!quotable) return literal(s);
    cur_ += '"';
    for (char c : s) {
      if (c == '"' || c == '\\') cur_ += '\\';
      cur_ += c;
    }
    cur_ += '"';
    return true;
  }
  bool literal(std::string_view s) {
    if (s.find('\0') != std::string_view::npos) return false;
    bool non_sync = plus_ || (minus_ && s.size() <= 4096);  // RFC 7888
    cur_ += "{" + std::to_string(s.size()) + (non_sync ? "+" : "") + "}\r\n";
    if (!non_sync) {
      chunks_.push_back(std::move(cur_));
      cur_.clear();
    }
    cur_ += s;
    return true;
  }
  std::vector<std::string> done() {
    cur_ += "\r\n";
    chunks_.push_back(std::move(cur_));
    return std::move(chunks_);
  }

 private:
  bool plus_, minus_;
  std::string cur_;
  std::vector<std::string> chunks_;
};

bool valid_uid_set(std::string_view s) {
  return !s.empty() && s.size() <= 4096 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == ':' || c == ',' || c == '*';
  });
}

// Text that goes verbatim into a command line: nothing that could end or extend it.
bool valid_inline(std::string_view s) {
  return !s.empty() && s.size() <= 4096 && std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

bool valid_section(std::string_view s) {
  return s.size() <= 1024 && std::none_of(s.begin(), s.end(), [](char c) {
           auto u = static_cast<unsigned char>(c);
           return u < 0x20 || u >= 0x7f || c == '[' || c == ']' || c == '{';
         });
}

bool valid_flag(std::string_view f) {
  if (f.empty() || f.size() > 256) return false;
  size_t start = f[0] == '\\' ? 1 : 0;
  if (start == f.size()) return false;
  return std::all_of(f.begin() + static_cast<long>(start), f.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && c != '(' && c != ')' && c != '{' && c != '"' && c != '\\' && c != ']' && c != '%' &&
           c != '*';
  });
}

std::string flag_list(const std::vector<std::string>& flags) {
  std::string out = "(";
  for (size_t i = 0; i < flags.size(); ++i) out += (i ? " " : "") + flags[i];
  return out + ")";
}

// Finishes a command whose callback wants only success or the error.
std::function<void(const ImapError*, const Response*)> plain_finish(ImapClient::Done done) {
  return [done = std::move(done)](const ImapError* e, const Response*) {
    if (!done) return;
    if (e) return done(core::Err{*e});
    done(core::Ok{});
  };
}

}  // namespace

std::string_view to_string(ImapErrorKind k) { return kErrorKindNames[static_cast<size_t>(k)]; }

bool ImapError::transient() const {
  switch (kind) {
    case ImapErrorKind::Connect:
    case ImapErrorKind::Timeout:
    case ImapErrorKind::Closed:
    case ImapErrorKind::Bye:
    case ImapErrorKind::Unavailable:
    case ImapErrorKind::Limit:
      return true;
    default:
      return false;
  }
}

ImapClient::ImapClient(uv_loop_t* loop, const ImapConfig& cfg, const sockaddr* vetted_addr, std::string host,
                       Hooks hooks)
    : cfg_(cfg), host_(std::move(host)), hooks_(std::move(hooks)), timer_(loop), parser_(cfg.limits) {
  metrics().active.inc();
  ip_ = dns::address_to_string(vetted_addr);
  port_ = dns::port_of(vetted_addr);
  if (cfg_.tls_name.empty()) cfg_.tls_name = host_;
  cfg_.idle_reissue_ms = std::min(std::max<uint64_t>(cfg_.idle_reissue_ms, 1), kMaxIdleReissueMs);
}

ImapClient::~ImapClient() { metrics().active.dec(); }

ImapClient* ImapClient::connect(uv_loop_t* loop, const ImapConfig& cfg, const sockaddr* vetted_addr, std::string host,
                                Hooks hooks, Done connected) {
  auto* c = new ImapClient(loop, cfg, vetted_addr, std::move(host), std::move(hooks));
  c->connected_ = std::move(connected);
  // Failures found here are reported from the loop, so no callback runs inside connect().
  auto fail_soon = [c](ImapError e) {
    c->timer_->start(0, [c, e] {
      Entry g(c);
      c->fail(e);
    });
  };
  if (!c->cfg_.tls) {
    fail_soon(c->error(ImapErrorKind::Tls, "no TLS context: IMAP is spoken only over TLS"));
    return c;
  }
  if (c->cfg_.security == core::Security::None) {
    fail_soon(c->error(ImapErrorKind::Tls, "security none: IMAP is spoken only over TLS or STARTTLS"));
    return c;
  }
  c->stream_ = core::TcpStream::create(loop, c);
  c->wait_for(ImapCommand::Connect);
  if (int rc = c->stream_->connect(vetted_addr); rc != 0)
    fail_soon(c->error(ImapErrorKind::Connect, std::string("cannot connect: ") + uv_strerror(rc)));
  return c;
}

ImapError ImapClient::error(ImapErrorKind kind, std::string text, Code code) const {
  ImapError e;
  e.kind = kind;
  e.command = current_ ? current_->command : waiting_;
  e.code = code;
  e.text = std::move(text);
  return e;
}

void ImapClient::wait_for(ImapCommand c) {
  if (ended_) return;
  waiting_ = c;
  uint64_t ms = cfg_.timeouts[c];
  timer_->start(ms, [this, c, ms] {
    Entry g(this);
    ImapError e = error(ImapErrorKind::Timeout, "no answer within " + std::to_string(ms) + " ms");
    e.command = c;
    fail(e);
  });
}

void ImapClient::send(std::string bytes) {
  if (ended_ || !stream_) return;
  if (int rc = stream_->write(std::move(bytes)); rc != 0) {
    std::string why = stream_->tls_error().empty() ? std::string(uv_strerror(rc)) : stream_->tls_error();
    fail(error(ImapErrorKind::Closed, "write failed: " + why));
  }
}

std::string ImapClient::next_tag() { return "a" + std::to_string(next_tag_++); }

bool ImapClient::has_capability(std::string_view cap) const {
  return std::any_of(caps_.begin(), caps_.end(), [&](const std::string& c) { return core::iequals(c, cap); });
}

core::TlsInfo ImapClient::tls_info() const { return stream_ ? stream_->tls_info() : core::TlsInfo{}; }

// ---- connection set-up ----

void ImapClient::on_connected(int status) {
  Entry g(this);
  if (ended_) return;
  if (status != 0) return fail(error(ImapErrorKind::Connect, std::string("cannot connect: ") + uv_strerror(status)));
  if (cfg_.security == core::Security::Tls) return begin_tls();
  wait_for(ImapCommand::Greeting);
}

void ImapClient::begin_tls() {
  core::TlsClientParams p;
  p.ctx = cfg_.tls;
  p.server_name = cfg_.tls_name;
  p.verify = true;
  // The resumption key names the peer exactly: the certificate name and the address connected to.
  p.session_key = "imap:" + cfg_.tls_name + "@" + ip_ + ":" + std::to_string(port_);
  wait_for(ImapCommand::Tls);
  if (int rc = stream_->start_tls_client(p); rc != 0)
    fail(error(ImapErrorKind::Tls, std::string("cannot start TLS: ") + uv_strerror(rc)));
}

void ImapClient::on_tls_handshake(bool ok, const std::string& err) {
  Entry g(this);
  if (ended_) return;
  if (!ok) return fail(error(ImapErrorKind::Tls, "TLS handshake failed: " + err));
  tls_on_ = true;
  parser_.reset();
  if (cfg_.security == core::Security::Tls) return wait_for(ImapCommand::Greeting);
  // RFC 9051 §6.2.1: what the server said before TLS is forgotten, its capabilities included.
  caps_.clear();
  caps_known_ = false;
  internal(ImapCommand::Capability, "CAPABILITY", [this](const ImapError* e, const Response*) {
    if (e) return fail(*e);
    ready();
  });
}

void ImapClient::greeting(const Response& r) {
  greeted_ = true;
  if (r.kind != ResponseKind::Untagged || r.data != DataKind::Status)
    return fail(error(ImapErrorKind::Protocol, "unexpected greeting: " + clean_text(r.text)));
  if (r.code.code == Code::Capability) {
    caps_ = r.code.args;
    caps_known_ = true;
  }
  switch (r.condition) {
    case Condition::Ok:
      break;
    case Condition::Preauth:
      // Already authenticated on a connection without TLS: STARTTLS is no longer allowed, so this
      // session could never be protected.
      if (!tls_on_) return fail(error(ImapErrorKind::Tls, "PREAUTH before TLS: the session cannot be protected"));
      authenticated_ = true;
      break;
    case Condition::Bye:
      return fail(error(r.code.code == Code::Unavailable ? ImapErrorKind::Unavailable : ImapErrorKind::Bye,
                        clean_text(r.text), r.code.code));
    default:
      return fail(error(ImapErrorKind::Protocol, "unexpected greeting: " + clean_text(r.text)));
  }
  after_greeting();
}

void ImapClient::after_greeting() {
  if (cfg_.security == core::Security::StartTls && !tls_on_) {
    if (!caps_known_)
      return internal(ImapCommand::Capability, "CAPABILITY", [this](const ImapError* e, const Response*) {
        if (e) return fail(*e);
        after_greeting();
      });
    if (!has_capability("STARTTLS")) return fail(error(ImapErrorKind::Tls, "the server does not offer STARTTLS"));
    return internal(ImapCommand::StartTls, "STARTTLS", [this](const ImapError* e, const Response* r) {
      if (e) {
        if (e->fatal) return;  // the connection is over already
        ImapError t = *e;
        t.kind = ImapErrorKind::Tls;
        t.text = "STARTTLS refused: " + (r ? clean_text(r->text) : t.text);
        return fail(t);
      }
      // Bytes behind the OK were sent before TLS and must not be read as if protected (the
      // STARTTLS command injection attack).
      if (parser_.buffered() > 0) return fail(error(ImapErrorKind::Tls, "data after the STARTTLS reply"));
      begin_tls();
    });
  }
  if (!caps_known_)
    return internal(ImapCommand::Capability, "CAPABILITY", [this](const ImapError* e, const Response*) {
      if (e) return fail(*e);
      ready();
    });
  ready();
}

void ImapClient::ready() {
  ready_ = true;
  timer_->stop();
  if (auto done = std::move(connected_)) {
    connected_ = nullptr;
    done(core::Ok{});
  }
  if (!ended_) pump();
}

// ---- commands ----

void ImapClient::internal(ImapCommand c, std::string line,
                          std::function<void(const ImapError*, const Response*)> then) {
  current_ = std::make_unique<Pending>();
  current_->command = c;
  current_->chunks = {line + "\r\n"};
  current_->finish = std::move(then);
  send_current();
}

void ImapClient::enqueue(Pending p) {
  if (ended_) {
    ImapError e;
    e.kind = ImapErrorKind::Closed;
    e.command = p.command;
    e.text = "the connection is closed";
    if (p.finish && !abandoned_) p.finish(&e, nullptr);
    return;
  }
  queue_.push_back(std::move(p));
  // A command waiting behind IDLE ends it.
  if (current_ && current_->command == ImapCommand::Idle && idling_ && !done_sent_) {
    send("DONE\r\n");
    done_sent_ = true;
    wait_for(ImapCommand::Done);
  }
  pump();
}

void ImapClient::pump() {
  if (ended_ || !ready_ || current_) return;
  if (queue_.empty()) {
    timer_->stop();  // nothing asked: no answer is due
    return;
  }
  current_ = std::make_unique<Pending>(std::move(queue_.front()));
  queue_.pop_front();
  send_current();
}

void ImapClient::send_current() {
  Pending& p = *current_;
  if (p.prepare) {
    auto refusal = p.prepare(p);
    p.prepare = nullptr;
    if (refusal) return finish_current(&*refusal, nullptr);
  }
  p.tag = next_tag();
  p.sent = 1;
  command_bytes_ = 0;
  wait_for(p.command);
  send(p.tag + " " + p.chunks[0]);
}

void ImapClient::on_data(std::string_view bytes) {
  Entry g(this);
  if (ended_) return;
  parser_.feed(bytes);
  while (!ended_) {
    auto r = parser_.next();
    if (!r) {
      const ParseError& pe = r.error();
      return fail(error(pe.kind == ParseErrorKind::Syntax ? ImapErrorKind::Protocol : ImapErrorKind::TooLarge,
                        "response refused: " + std::string(to_string(pe.kind)) + ": " + pe.detail));
    }
    if (!r.value()) return;
    handle(std::move(*r.value()));
  }
}

void ImapClient::handle(Response&& r) {
  if (!greeted_) return greeting(r);
  switch (r.kind) {
    case ResponseKind::Untagged:
      return untagged(r);
    case ResponseKind::Tagged:
      return tagged(r);
    case ResponseKind::Continuation:
      return continuation(r);
  }
}

void ImapClient::untagged(Response& r) {
  if (current_) {
    command_bytes_ += r.wire_bytes;
    if (command_bytes_ > cfg_.max_command_bytes)
      return fail(error(ImapErrorKind::TooLarge, "the answer to " + std::string(to_string(current_->command)) +
                                                     " exceeds " + std::to_string(cfg_.max_command_bytes) +
                                                     " bytes (max_command_bytes)"));
  }
  if (r.data == DataKind::Capability) {
    caps_ = r.atoms;
    caps_known_ = true;
  } else if (r.data == DataKind::Status) {
    if (r.code.code == Code::Capability) {
      caps_ = r.code.args;
      caps_known_ = true;
    }
    if (r.condition == Condition::Bye) bye_ = r;
  }
  if (current_ && current_->on_untagged) current_->on_untagged(r);
  if (ended_) return;
  if (r.data == DataKind::Exists && hooks_.exists) hooks_.exists(static_cast<uint32_t>(r.number));
  if (r.data == DataKind::Expunge && hooks_.expunge) hooks_.expunge(static_cast<uint32_t>(r.number));
}

void ImapClient::continuation(const Response& r) {
  if (!current_) return fail(error(ImapErrorKind::Protocol, "a continuation while no command is running"));
  Pending& p = *current_;
  if (p.sent < p.chunks.size()) {
    send(p.chunks[p.sent++]);
    return wait_for(p.command);
  }
  if (p.on_continuation) return p.on_continuation(r);
  fail(error(ImapErrorKind::Protocol, "an unexpected continuation: " + clean_text(r.text)));
}

ImapError ImapClient::refused(const Response& tagged) const {
  ImapError e = error(ImapErrorKind::CommandFailed, clean_text(tagged.text), tagged.code.code);
  if (tagged.code.code == Code::Unavailable)
    e.kind = ImapErrorKind::Unavailable;
  else if (tagged.code.code == Code::Limit)
    e.kind = ImapErrorKind::Limit;
  else if (current_ && (current_->command == ImapCommand::Login || current_->command == ImapCommand::Authenticate))
    e.kind = ImapErrorKind::LoginFailed;
  return e;
}

void ImapClient::tagged(const Response& r) {
  if (!current_ || r.tag != current_->tag)
    return fail(error(ImapErrorKind::Protocol, "a tagged response for no command of ours: " + clean_text(r.tag)));
  if (current_->command == ImapCommand::Idle) {
    idling_ = false;
    done_sent_ = false;
    if (reissue_ && r.condition == Condition::Ok && queue_.empty() && !idle_stop_) {
      reissue_ = false;
      return send_current();  // the same IDLE again, a new tag
    }
    idle_stop_ = false;
    reissue_ = false;
  }
  if (r.condition == Condition::Ok) return finish_current(nullptr, &r);
  ImapError e = refused(r);
  finish_current(&e, &r);
}

void ImapClient::finish_current(const ImapError* err, const Response* tagged) {
  std::unique_ptr<Pending> p = std::move(current_);
  if (p->finish && !abandoned_) p->finish(err, tagged);
  if (!ended_) pump();
}

void ImapClient::start_idle_timer() {
  timer_->start(cfg_.idle_reissue_ms, [this] {
    Entry g(this);
    if (ended_ || !idling_ || done_sent_) return;
    reissue_ = true;
    send("DONE\r\n");
    done_sent_ = true;
    wait_for(ImapCommand::Done);
  });
}

void ImapClient::on_end(int status) {
  Entry g(this);
  if (ended_) return;
  // Some servers close right after LOGOUT's BYE, without the tagged OK: that is a clean end.
  if (bye_ && current_ && current_->command == ImapCommand::Logout) return finish_current(nullptr, nullptr);
  if (bye_) {
    Code code = bye_->code.code;
    return fail(error(code == Code::Unavailable ? ImapErrorKind::Unavailable
                      : code == Code::Limit     ? ImapErrorKind::Limit
                                                : ImapErrorKind::Bye,
                      clean_text(bye_->text), code));
  }
  if (stream_ && !stream_->tls_error().empty())
    return fail(error(ImapErrorKind::Tls, "TLS failed: " + stream_->tls_error()));
  std::string why = status == UV_EOF ? "the server closed the connection" : std::string(uv_strerror(status));
  if (!greeted_) return fail(error(ImapErrorKind::Connect, why + " before its greeting"));
  fail(error(ImapErrorKind::Closed, why + (current_ ? " during " + std::string(to_string(current_->command)) : "")));
}

void ImapClient::fail(ImapError e) {
  if (ended_) return;
  ended_ = true;
  e.fatal = true;
  metrics().errors.with({std::string(to_string(e.kind))}).inc();
  core::log_info("imap_connection_failed", {{"host", host_},
                                            {"ip", ip_},
                                            {"kind", std::string(to_string(e.kind))},
                                            {"command", std::string(to_string(e.command))},
                                            {"code", std::string(to_string(e.code))},
                                            {"text", e.text}});
  timer_.reset();
  if (stream_) stream_->close();
  stream_ = nullptr;
  // Callbacks may close() us: work on what is pending now, and stop once abandoned.
  auto connected = std::move(connected_);
  connected_ = nullptr;
  std::unique_ptr<Pending> current = std::move(current_);
  std::deque<Pending> queued = std::move(queue_);
  queue_.clear();
  if (connected && !abandoned_) connected(core::Err{e});
  if (current && current->finish && !abandoned_) current->finish(&e, nullptr);
  for (auto& p : queued) {
    if (abandoned_) break;
    ImapError q = e;
    q.command = p.command;
    if (p.finish) p.finish(&q, nullptr);
  }
  auto closed = std::move(hooks_.closed);
  hooks_ = Hooks{};
  if (closed && !abandoned_) closed(e);
  finish_self();
}

void ImapClient::close() {
  Entry g(this);
  if (abandoned_) return;
  abandoned_ = true;
  hooks_ = Hooks{};
  connected_ = nullptr;
  queue_.clear();
  current_.reset();
  if (!ended_) {
    ended_ = true;
    timer_.reset();
    if (stream_) stream_->close();
    stream_ = nullptr;
  }
  finish_self();
}

// ---- the public commands ----

void ImapClient::login(ImapCredentials creds, Done done) {
  Entry g(this);
  auto c = std::make_shared<ImapCredentials>(std::move(creds));
  Pending p;
  p.command = c->access_token.empty() ? ImapCommand::Login : ImapCommand::Authenticate;
  p.prepare = [this, c](Pending& self) -> std::optional<ImapError> {
    ImapError e = error(ImapErrorKind::InvalidArgument, "");
    e.command = self.command;
    if (!tls_on_ || !stream_ || !stream_->tls_info().verified) {
      e.kind = ImapErrorKind::Tls;
      e.text = "credentials are sent only over TLS with a verified certificate";
      return e;
    }
    if (c->username.empty() || (c->password.empty() && c->access_token.empty())) {
      e.text = "a user name and a password or access token are needed";
      return e;
    }
    ImapAuthMethod m = c->method;
    if (m == ImapAuthMethod::Auto) {
      if (!c->access_token.empty())
        m = has_capability("AUTH=XOAUTH2") ? ImapAuthMethod::XOAuth2 : ImapAuthMethod::OAuthBearer;
      else
        m = has_capability("LOGINDISABLED") ? ImapAuthMethod::Plain : ImapAuthMethod::Login;
    }
    if (m == ImapAuthMethod::Login) {
      if (has_capability("LOGINDISABLED")) {
        e.kind = ImapErrorKind::AuthUnavailable;
        e.text = "the server refuses LOGIN (LOGINDISABLED)";
        return e;
      }
      Wire w(has_capability("LITERAL+"), has_capability("LITERAL-"));
      w.raw("LOGIN ");
      bool ok = w.string(c->username);
      w.raw(" ");
      ok = ok && w.string(c->password);
      if (!ok) {
        e.text = "user name or password holds a NUL byte";
        return e;
      }
      self.command = ImapCommand::Login;
      self.chunks = w.done();
      return std::nullopt;
    }
    std::string mech, message, error_answer;
    switch (m) {
      case ImapAuthMethod::Plain:
        mech = "PLAIN";
        message = core::sasl_plain(c->username, c->password);
        error_answer = "*";  // PLAIN has no error challenge: cancel
        break;
      case ImapAuthMethod::XOAuth2:
        mech = "XOAUTH2";
        message = core::sasl_xoauth2(c->username, c->access_token);
        error_answer = core::base64_encode(core::kXoauth2ErrorAnswer);
        break;
      default:
        mech = "OAUTHBEARER";
        message = core::sasl_oauthbearer(c->username, cfg_.tls_name, port_, c->access_token);
        error_answer = core::base64_encode(core::kOauthbearerErrorAnswer);
        break;
    }
    if (!has_capability("AUTH=" + mech)) {
      e.kind = ImapErrorKind::AuthUnavailable;
      e.text = "the server does not offer AUTH=" + mech;
      return e;
    }
    self.command = ImapCommand::Authenticate;
    std::string initial = core::base64_encode(message);
    if (initial.empty()) initial = "=";  // RFC 4959: an empty initial response
    if (has_capability("SASL-IR"))
      self.chunks = {"AUTHENTICATE " + mech + " " + initial + "\r\n"};
    else
      self.chunks = {"AUTHENTICATE " + mech + "\r\n", initial + "\r\n"};
    // A challenge after the initial response is the server's error report (XOAUTH2's JSON);
    // answered once as the mechanism says, then cancelled.
    auto answered = std::make_shared<bool>(false);
    self.on_continuation = [this, error_answer, answered](const Response&) {
      send((*answered ? std::string("*") : error_answer) + "\r\n");
      *answered = true;
      wait_for(ImapCommand::Authenticate);
    };
    return std::nullopt;
  };
  p.finish = [this, done](const ImapError* e, const Response* r) {
    if (e) {
      if (done) done(core::Err{*e});
      return;
    }
    authenticated_ = true;
    if (r && r->code.code == Code::Capability) {
      caps_ = r->code.args;
      caps_known_ = true;
      if (done) done(core::Ok{});
      return;
    }
    // Capabilities change with login (RFC 9051 §7.1.2): read them before the caller goes on.
    caps_known_ = false;
    Pending cap;
    cap.command = ImapCommand::Capability;
    cap.chunks = {"CAPABILITY\r\n"};
    cap.finish = [done](const ImapError* ce, const Response*) {
      if (!done) return;
      if (ce) return done(core::Err{*ce});
      done(core::Ok{});
    };
    queue_.push_front(std::move(cap));
  };
  enqueue(std::move(p));
}

void ImapClient::refuse_now(ImapCommand c, std::string why, const std::function<void(const ImapError&)>& done) {
  ImapError e;
  e.kind = ImapErrorKind::InvalidArgument;
  e.command = c;
  e.text = std::move(why);
  if (!abandoned_ && done) done(e);
}

void ImapClient::capability(Done done) {
  Entry g(this);
  Pending p;
  p.command = ImapCommand::Capability;
  p.chunks = {"CAPABILITY\r\n"};
  p.finish = plain_finish(std::move(done));
  enqueue(std::move(p));
}

void ImapClient::open_mailbox(ImapCommand c, std::string mailbox,
                              std::function<void(const ImapResult<MailboxInfo>&)> done) {
  Entry g(this);
  auto info = std::make_shared<MailboxInfo>();
  info->name = mailbox;
  info->read_only = c == ImapCommand::Examine;
  Pending p;
  p.command = c;
  auto name = std::make_shared<std::string>(std::move(mailbox));
  p.prepare = [this, c, name](Pending& self) -> std::optional<ImapError> {
    Wire w(has_capability("LITERAL+"), has_capability("LITERAL-"));
    w.raw(c == ImapCommand::Select ? "SELECT " : "EXAMINE ");
    if (name->empty() || !w.string(*name)) {
      ImapError e = error(ImapErrorKind::InvalidArgument, "a mailbox name must be non-empty, without NUL");
      e.command = c;
      return e;
    }
    self.chunks = w.done();
    return std::nullopt;
  };
  p.on_untagged = [info](Response& r) {
    switch (r.data) {
      case DataKind::Exists:
        info->exists = static_cast<uint32_t>(r.number);
        break;
      case DataKind::Flags:
        info->flags = r.atoms;
        break;
      case DataKind::Status:
        switch (r.code.code) {
          case Code::UidValidity:
            info->uid_validity = static_cast<uint32_t>(std::min<uint64_t>(r.code.number, UINT32_MAX));
            break;
          case Code::UidNext:
            info->uid_next = static_cast<uint32_t>(std::min<uint64_t>(r.code.number, UINT32_MAX));
            break;
          case Code::Unseen:
            info->unseen = static_cast<uint32_t>(std::min<uint64_t>(r.code.number, UINT32_MAX));
            break;
          case Code::PermanentFlags:
            info->permanent_flags = r.code.args;
            break;
          case Code::HighestModSeq:
            info->highest_modseq = r.code.number;
            break;
          default:
            break;
        }
        break;
      default:
        break;
    }
  };
  p.finish = [info, done = std::move(done)](const ImapError* e, const Response* r) {
    if (!done) return;
    if (e) return done(core::Err{*e});
    if (r && r->code.code == Code::ReadOnly) info->read_only = true;
    if (r && r->code.code == Code::ReadWrite) info->read_only = false;
    done(*info);
  };
  enqueue(std::move(p));
}

void ImapClient::select(std::string mailbox, std::function<void(const ImapResult<MailboxInfo>&)> done) {
  open_mailbox(ImapCommand::Select, std::move(mailbox), std::move(done));
}

void ImapClient::examine(std::string mailbox, std::function<void(const ImapResult<MailboxInfo>&)> done) {
  open_mailbox(ImapCommand::Examine, std::move(mailbox), std::move(done));
}

void ImapClient::uid_search(std::string criteria, std::function<void(const ImapResult<std::vector<uint32_t>>&)> done) {
  Entry g(this);
  if (!valid_inline(criteria))
    return refuse_now(ImapCommand::Search, "search criteria must be one line of printable text",
                      [&](const ImapError& e) {
                        if (done) done(core::Err{e});
                      });
  auto found = std::make_shared<std::vector<uint32_t>>();
  Pending p;
  p.command = ImapCommand::Search;
  p.chunks = {"UID SEARCH " + criteria + "\r\n"};
  p.on_untagged = [found](Response& r) {
    if (r.data == DataKind::Search) found->insert(found->end(), r.numbers.begin(), r.numbers.end());
  };
  p.finish = [found, done = std::move(done)](const ImapError* e, const Response*) {
    if (!done) return;
    if (e) return done(core::Err{*e});
    done(std::move(*found));
  };
  enqueue(std::move(p));
}

void ImapClient::uid_fetch(std::string uid_set, FetchItems items,
                           std::function<void(const ImapResult<std::vector<FetchData>>&)> done) {
  Entry g(this);
  auto refuse = [&](std::string why) {
    refuse_now(ImapCommand::Fetch, std::move(why), [&](const ImapError& e) {
      if (done) done(core::Err{e});
    });
  };
  if (!valid_uid_set(uid_set)) return refuse("a UID set is digits, \":\", \",\" and \"*\"");
  std::string what = "(UID";
  if (items.flags) what += " FLAGS";
  if (items.size) what += " RFC822.SIZE";
  if (items.internal_date) what += " INTERNALDATE";
  if (items.body_structure) what += " BODYSTRUCTURE";
  for (const auto& s : items.sections) {
    if (!valid_section(s)) return refuse("a section may not hold brackets, braces or control characters");
    // PEEK: reading a message must not mark it \Seen in the user's mailbox.
    what += " BODY.PEEK[" + s + "]";
    if (items.max_section_bytes > 0) what += "<0." + std::to_string(items.max_section_bytes) + ">";
  }
  what += ")";
  auto found = std::make_shared<std::vector<FetchData>>();
  Pending p;
  p.command = ImapCommand::Fetch;
  p.chunks = {"UID FETCH " + uid_set + " " + what + "\r\n"};
  p.on_untagged = [found](Response& r) {
    if (r.data == DataKind::Fetch && r.fetch.uid) found->push_back(std::move(r.fetch));
  };
  p.finish = [found, done = std::move(done)](const ImapError* e, const Response*) {
    if (!done) return;
    if (e) return done(core::Err{*e});
    done(std::move(*found));
  };
  enqueue(std::move(p));
}

void ImapClient::idle(Done done) {
  Entry g(this);
  Pending p;
  p.command = ImapCommand::Idle;
  p.prepare = [this](Pending& self) -> std::optional<ImapError> {
    if (has_capability("IDLE")) {
      self.chunks = {"IDLE\r\n"};
      return std::nullopt;
    }
    ImapError e = error(ImapErrorKind::CommandFailed, "the server does not offer IDLE: poll with NOOP");
    e.command = ImapCommand::Idle;
    return e;
  };
  p.on_continuation = [this](const Response&) {
    if (idling_) return;  // a second "+" changes nothing
    idling_ = true;
    if (!queue_.empty() || idle_stop_) {
      send("DONE\r\n");
      done_sent_ = true;
      return wait_for(ImapCommand::Done);
    }
    start_idle_timer();
  };
  p.finish = plain_finish(std::move(done));
  enqueue(std::move(p));
}

void ImapClient::stop_idle() {
  Entry g(this);
  if (ended_) return;
  if (current_ && current_->command == ImapCommand::Idle) {
    idle_stop_ = true;
    if (idling_ && !done_sent_) {
      send("DONE\r\n");
      done_sent_ = true;
      wait_for(ImapCommand::Done);
    }
    return;
  }
  // Not started yet: it ends before it began.
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->command != ImapCommand::Idle) continue;
    Pending p = std::move(*it);
    queue_.erase(it);
    if (p.finish && !abandoned_) p.finish(nullptr, nullptr);
    return;
  }
}

void ImapClient::noop(Done done) {
  Entry g(this);
  Pending p;
  p.command = ImapCommand::Noop;
  p.chunks = {"NOOP\r\n"};
  p.finish = plain_finish(std::move(done));
  enqueue(std::move(p));
}

void ImapClient::uid_store(std::string uid_set, std::vector<std::string> flags, Done done) {
  Entry g(this);
  auto refuse = [&](std::string why) {
    refuse_now(ImapCommand::Store, std::move(why), [&](const ImapError& e) {
      if (done) done(core::Err{e});
    });
  };
  if (!valid_uid_set(uid_set)) return refuse("a UID set is digits, \":\", \",\" and \"*\"");
  if (flags.empty() || !std::all_of(flags.begin(), flags.end(), [](const std::string& f) { return valid_flag(f); }))
    return refuse("flags must be atoms such as \\Deleted or $Label");
  Pending p;
  p.command = ImapCommand::Store;
  p.chunks = {"UID STORE " + uid_set + " +FLAGS.SILENT " + flag_list(flags) + "\r\n"};
  p.finish = plain_finish(std::move(done));
  enqueue(std::move(p));
}

void ImapClient::uid_move(std::string uid_set, std::string mailbox, Done done) {
  Entry g(this);
  if (!valid_uid_set(uid_set))
    return refuse_now(ImapCommand::Move, "a UID set is digits, \":\", \",\" and \"*\"", [&](const ImapError& e) {
      if (done) done(core::Err{e});
    });
  auto set = std::make_shared<std::string>(std::move(uid_set));
  auto name = std::make_shared<std::string>(std::move(mailbox));
  Pending p;
  p.command = ImapCommand::Move;
  auto done_ptr = std::make_shared<Done>(std::move(done));
  // Decided when it goes out: MOVE, or COPY + STORE (+ UID EXPUNGE) queued right behind.
  p.prepare = [this, set, name, done_ptr](Pending& self) -> std::optional<ImapError> {
    Wire w(has_capability("LITERAL+"), has_capability("LITERAL-"));
    bool move = has_capability("MOVE");
    self.command = move ? ImapCommand::Move : ImapCommand::Copy;
    w.raw((move ? "UID MOVE " : "UID COPY ") + *set + " ");
    if (name->empty() || !w.string(*name)) {
      ImapError e = error(ImapErrorKind::InvalidArgument, "a mailbox name must be non-empty, without NUL");
      e.command = self.command;
      return e;
    }
    self.chunks = w.done();
    if (move) return std::nullopt;
    self.finish = [this, set, done_ptr](const ImapError* e, const Response*) {
      if (e) return *done_ptr ? (*done_ptr)(core::Err{*e}) : void();
      Pending store;
      store.command = ImapCommand::Store;
      store.chunks = {"UID STORE " + *set + " +FLAGS.SILENT (\\Deleted)\r\n"};
      store.finish = [this, set, done_ptr](const ImapError* se, const Response*) {
        if (se || !has_capability("UIDPLUS")) return plain_finish(*done_ptr)(se, nullptr);
        Pending expunge;
        expunge.command = ImapCommand::Expunge;
        expunge.chunks = {"UID EXPUNGE " + *set + "\r\n"};
        expunge.finish = plain_finish(*done_ptr);
        queue_.push_front(std::move(expunge));
      };
      queue_.push_front(std::move(store));
    };
    return std::nullopt;
  };
  p.finish = [done_ptr](const ImapError* e, const Response* r) { plain_finish (*done_ptr)(e, r); };
  enqueue(std::move(p));
}

void ImapClient::append(std::string mailbox, std::string message, std::vector<std::string> flags,
                        std::function<void(const ImapResult<uint32_t>&)> done) {
  Entry g(this);
  auto refuse = [&](std::string why) {
    refuse_now(ImapCommand::Append, std::move(why), [&](const ImapError& e) {
      if (done) done(core::Err{e});
    });
  };
  if (!std::all_of(flags.begin(), flags.end(), [](const std::string& f) { return valid_flag(f); }))
    return refuse("flags must be atoms such as \\Seen or $Label");
  if (message.find('\0') != std::string::npos) return refuse("a message with a NUL byte cannot be appended");
  auto name = std::make_shared<std::string>(std::move(mailbox));
  auto body = std::make_shared<std::string>(std::move(message));
  Pending p;
  p.command = ImapCommand::Append;
  p.prepare = [this, name, body, flags](Pending& self) -> std::optional<ImapError> {
    Wire w(has_capability("LITERAL+"), has_capability("LITERAL-"));
    w.raw("APPEND ");
    if (name->empty() || !w.string(*name)) {
      ImapError e = error(ImapErrorKind::InvalidArgument, "a mailbox name must be non-empty, without NUL");
      e.command = ImapCommand::Append;
      return e;
    }
    if (!flags.empty()) w.raw(" " + flag_list(flags));
    w.raw(" ");
    w.literal(*body);
    self.chunks = w.done();
    return std::nullopt;
  };
  p.finish = [done = std::move(done)](const ImapError* e, const Response* r) {
    if (!done) return;
    if (e) return done(core::Err{*e});
    uint32_t uid = 0;
    if (r && r->code.code == Code::AppendUid && !r->code.args.empty()) {
      const std::string& a = r->code.args[0];
      if (!a.empty() && a.size() <= 10 &&
          std::all_of(a.begin(), a.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
        uid = static_cast<uint32_t>(std::min<uint64_t>(std::stoull(a), UINT32_MAX));
    }
    done(uid);
  };
  enqueue(std::move(p));
}

void ImapClient::logout(Done done) {
  Entry g(this);
  Pending p;
  p.command = ImapCommand::Logout;
  p.chunks = {"LOGOUT\r\n"};
  p.finish = [this, done = std::move(done)](const ImapError* e, const Response*) {
    if (e) {
      if (done) done(core::Err{*e});
      return;
    }
    logged_out_ = true;
    if (done) done(core::Ok{});
    end_cleanly();
  };
  enqueue(std::move(p));
}

// After LOGOUT: what is still queued cannot run; the owner hears nullopt.
void ImapClient::end_cleanly() {
  if (ended_) return;
  ended_ = true;
  timer_.reset();
  if (stream_) stream_->close();
  stream_ = nullptr;
  std::deque<Pending> queued = std::move(queue_);
  queue_.clear();
  for (auto& p : queued) {
    if (abandoned_) break;
    ImapError e;
    e.kind = ImapErrorKind::Closed;
    e.command = p.command;
    e.text = "logged out";
    if (p.finish) p.finish(&e, nullptr);
  }
  auto closed = std::move(hooks_.closed);
  hooks_ = Hooks{};
  if (closed && !abandoned_) closed(std::nullopt);
  finish_self();
}

}  // namespace deliverd::inbound
