#pragma once
// One SMTP connection, in the Postfix manner (STYLE.md §2): named phases, one table of timeouts,
// one advance() that moves between them, one fail() that turns every failure into a core::Outcome
// naming the phase. Covers implicit TLS (RFC 8314) and STARTTLS (RFC 3207), AUTH PLAIN / LOGIN /
// XOAUTH2, PIPELINING (RFC 2920) for MAIL/RCPT/DATA, SIZE, 8BITMIME and SMTPUTF8. With
// SessionHooks::idle set, a connection outlives its first message and can carry more (RSET first).
// Session::probe() runs the same exchange up to AUTH and says QUIT: the mailbox connection test.
// Credentials go only over TLS whose certificate was verified (SessionConfig::allow_plaintext_auth
// is the lab override).
#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/lifetime.h"
#include "core/outcome.h"
#include "core/security.h"
#include "core/tcp_stream.h"
#include "core/timer.h"
#include "core/tls_context.h"
#include "smtp/ehlo.h"
#include "smtp/reply_parser.h"

namespace deliverd::smtp {

// The session's states (STYLE.md §2). Each maps onto the outcome phase of the same name in
// core::Phase, which also has the phases before a connection exists (policy, resolve, pool …):
// the names live once, in core, and an outcome names where the session was.
enum class Phase { Connect, Tls, Banner, Ehlo, Helo, StartTls, Auth, Mail, Rcpt, Data, Body, Rset, Idle, Quit };
inline constexpr size_t kPhaseCount = 14;

struct PhaseInfo {
  Phase phase;
  core::Phase outcome;          // the outcome phase, and so the name in events, logs and metrics
  uint64_t default_timeout_ms;  // RFC 5321 4.5.3.2 where it names one
};

// The one table: outcome phases and default timeouts, indexed by Phase.
inline constexpr std::array<PhaseInfo, kPhaseCount> kPhases = {{
    {Phase::Connect, core::Phase::Connect, 30'000},
    {Phase::Tls, core::Phase::Tls, 30'000},  // the TLS handshake (implicit TLS, or after STARTTLS's 220)
    {Phase::Banner, core::Phase::Banner, 300'000},
    {Phase::Ehlo, core::Phase::Ehlo, 300'000},
    {Phase::Helo, core::Phase::Helo, 300'000},
    {Phase::StartTls, core::Phase::StartTls, 120'000},
    {Phase::Auth, core::Phase::Auth, 120'000},
    {Phase::Mail, core::Phase::Mail, 300'000},
    {Phase::Rcpt, core::Phase::Rcpt, 300'000},
    {Phase::Data, core::Phase::Data, 120'000},
    {Phase::Body, core::Phase::Body, 600'000},  // sending the payload and waiting for the reply to "."
    {Phase::Rset, core::Phase::Rset, 120'000},
    {Phase::Idle, core::Phase::Idle, 30'000},  // a kept-open connection with nothing to send: then QUIT
    {Phase::Quit, core::Phase::Quit, 10'000},
}};
static_assert([] {
  for (size_t i = 0; i < kPhaseCount; ++i)
    if (static_cast<size_t>(kPhases[i].phase) != i) return false;
  return true;
}());

constexpr core::Phase outcome_phase(Phase p) { return kPhases[static_cast<size_t>(p)].outcome; }
constexpr std::string_view to_string(Phase p) { return core::to_string(outcome_phase(p)); }

struct PhaseTimeouts {
  std::array<uint64_t, kPhaseCount> ms = [] {
    std::array<uint64_t, kPhaseCount> a{};
    for (size_t i = 0; i < kPhaseCount; ++i) a[i] = kPhases[i].default_timeout_ms;
    return a;
  }();
  uint64_t& operator[](Phase p) { return ms[static_cast<size_t>(p)]; }
  uint64_t operator[](Phase p) const { return ms[static_cast<size_t>(p)]; }
};

using Security = core::Security;
// For STARTTLS: opportunistic (MX mode without a policy) = use it when offered, any version,
// without verification, else continue in plaintext; every other policy (required, mta-sts, dane)
// = the server must offer it and present a valid certificate for the name over TLS 1.2+.
using TlsPolicy = core::TlsPolicy;

// The values of [smtp] mx_tls: "opportunistic" or "required" (the other policies come from DNS).
std::optional<TlsPolicy> tls_policy_from_name(std::string_view s);

struct Credentials {
  std::string username;
  std::string password;     // AUTH PLAIN / LOGIN
  std::string oauth_token;  // OAuth access token (XOAUTH2, else OAUTHBEARER); when set it is used instead of the password
  bool empty() const { return username.empty(); }
};

struct SessionConfig {
  std::string helo_name = "localhost";
  PhaseTimeouts timeouts;
  uint64_t total_ms = 30 * 60 * 1000;  // bound on the whole connection, whatever the phases allow
  size_t max_reply_line = 2048;
  size_t max_reply_bytes = 64 * 1024;
  Security security = Security::None;
  // Per connection, so one delivery's policy (mx_tls, MTA-STS, DANE) never rides another's
  // connection; outcomes report it as tls.policy (none when security is None).
  TlsPolicy tls_policy = TlsPolicy::Required;
  std::shared_ptr<core::TlsContext> tls;  // client context, verified, TLS 1.2+; needed unless security is None
  // Used instead of tls where nothing is verified (opportunistic): any TLS version and cipher
  // (core::TlsClientOptions::opportunistic). Unset: tls, unverified.
  std::shared_ptr<core::TlsContext> tls_opportunistic;
  // Opportunistic TLS whose certificate is checked against tls's trust store and tls_name but not
  // enforced (MTA-STS testing mode, RFC 8461 5): TLS 1.2+ through tls; outcomes carry the
  // verdict as tls_result, for TLS-RPT.
  bool tls_check = false;
  // Set (MX mode, opportunistic): this connection is the plaintext retry after TLS failed at this
  // address, so STARTTLS is not tried again; outcomes report the fallback.
  core::TlsFallback tls_fallback = core::TlsFallback::None;
  std::string tls_name;                   // certificate name and SNI; "" = the host name
  // tls_policy Dane: the MX host's usable TLSA records; the certificate is verified against them
  // instead of the CA store (core::TlsClientParams::dane).
  std::vector<core::DaneRecord> dane;
  Credentials auth;                       // empty: no AUTH
  bool pipelining = true;                 // pipeline MAIL/RCPT/DATA when the server offers it
  bool relay = true;                      // the server is the mailbox's own (fault attribution, classifier.h)
  // Lab rigs only: AUTH on a connection without verified TLS. Otherwise such a session ends
  // failed/auth_needs_tls before any credential is sent.
  bool allow_plaintext_auth = false;
};

// A session to a mailbox's own submission server (relay mode): TLS as the mailbox says with the
// certificate always verified for the host name, and the mailbox's credentials. base carries the
// daemon's settings (timeouts, HELO name, TLS context). Deliveries and the connection test both
// build their sessions here.
SessionConfig submission_config(SessionConfig base, Security security, Credentials auth);

struct Envelope {
  std::string mail_from, rcpt_to;
  std::string message;  // composed, not yet dot-stuffed
};

class Session;
struct SessionHooks {
  // Called after a transaction's outcome when the connection is clean and can carry another
  // message: call send_next() now or later, or quit(). Unset: the session QUITs after one message.
  std::function<void(Session*)> idle;
  // Called exactly once when the session is about to be freed (after any done).
  std::function<void(Session*)> closed;
};

class Session final : private core::StreamHandler, private core::DeletesItself<Session> {
 public:
  using Done = std::function<void(const core::Outcome&)>;

  // Connects to exactly vetted_addr (never resolves). `done` is called exactly once per message,
  // never from inside start(). Without hooks the session frees itself after QUIT: the pointer is
  // valid only until done. With hooks it is valid until hooks.closed.
  static Session* start(uv_loop_t* loop, const SessionConfig& cfg, const sockaddr* vetted_addr, std::string host_name,
                        Envelope env, Done done, SessionHooks hooks = {});

  // The connection test: connect, banner, EHLO, TLS as configured, AUTH when cfg.auth is set, then
  // QUIT; no message. `done` is called exactly once, never from inside probe(): status delivered
  // with reason "probe_passed" (phase auth, or ehlo without credentials) when the server would
  // take mail from us, else the failure exactly as a delivery would have met it. The session
  // frees itself after QUIT; the pointer is valid only until done.
  static Session* probe(uv_loop_t* loop, const SessionConfig& cfg, const sockaddr* vetted_addr, std::string host_name,
                        Done done);

  // Ends promptly: the current message (if any) ends deferred, reason "aborted"; then closes.
  void abort(std::string why);
  // Next message on an idle connection: RSET, then MAIL/RCPT/DATA.
  void send_next(Envelope env, Done done);
  // Ends an idle connection politely (QUIT); hooks.closed follows.
  void quit();

  Phase phase() const { return phase_; }
  bool idle() const { return phase_ == Phase::Idle && !closing_; }
  size_t messages() const { return messages_; }
  const std::string& host() const { return host_; }
  const EhloCapabilities& capabilities() const { return caps_; }

 private:
  Session(uv_loop_t* loop, const SessionConfig& cfg, const sockaddr* vetted_addr, std::string host, Envelope env,
          Done done, SessionHooks hooks);
  ~Session() override;
  void open(uv_loop_t* loop, const sockaddr* vetted_addr);  // arms the session timer and connects
  // Failures found before the loop runs are reported from it, so `done` never runs inside start().
  void fail_soon(core::Status status, core::Reason reason, std::string detail);

  // StreamHandler
  void on_connected(int status) override;
  void on_data(std::string_view bytes) override;
  void on_end(int status) override;
  void on_tls_handshake(bool ok, const std::string& error) override;

  void enter(Phase p);  // switches phase and re-arms the timer from the table
  void advance(const core::Reply& r);
  void after_ehlo();
  void start_auth();
  void auth_reply(const core::Reply& r);
  bool credentials_protected() const;  // TLS with a verified certificate, or the lab override
  void probe_passed(const core::Reply& r);
  void start_transaction();
  void start_tls();
  void send(std::string bytes);
  void succeed(const core::Reply& r);
  void fail(core::Status status, core::Reason reason, std::string detail, const core::Reply& reply = {},
            core::Fault fault = core::Fault::None);
  void fail_reply(const core::Reply& r, core::Reason reason = core::Reason::None);
  void report(core::Outcome outcome, bool reusable);  // ends the current message
  void close_session();                               // ends the connection
  void begin_quit();
  TlsPolicy applied_tls_policy() const;

  friend class core::DeletesItself<Session>;  // frees the session as the last entry into it returns

  SessionConfig cfg_;
  std::string host_;
  std::string ip_;
  std::string tls_key_;
  Envelope env_;
  Done done_;
  SessionHooks hooks_;
  core::TcpStream* stream_ = nullptr;
  core::TimerHandle phase_timer_;
  core::TimerHandle total_timer_;
  ReplyParser parser_;
  EhloCapabilities caps_;
  Phase phase_ = Phase::Connect;
  enum class AuthMech { None, Plain, Login, XOauth2, OAuthBearer } auth_mech_ = AuthMech::None;
  int port_ = 0;  // the server's, for OAUTHBEARER's port field
  int auth_step_ = 0;
  bool tls_on_ = false;
  core::TlsFallback tls_fallback_ = core::TlsFallback::None;  // why this connection is plaintext, if it is
  // What this connection's TLS negotiation came to, told once: on the outcome of the message
  // during which it happened (TLS-RPT counts sessions, not messages).
  core::TlsResult tls_result_ = core::TlsResult::None;
  bool tls_checked_ = false;  // the handshake checked the certificate (verify or check)
  std::string tls_result_detail_;
  std::string tls_local_ip_;  // where tls_result_ was seen from
  bool pipelined_ = false;  // the current MAIL/RCPT/DATA went out as one group
  bool in_transaction_ = false;
  bool probe_ = false;  // Session::probe(): stop after AUTH (or EHLO), no transaction
  size_t messages_ = 0;
  bool closing_ = false;   // QUIT sent or connection ending; no more messages
  bool finished_ = false;  // the connection has ended; freed as the outermost Entry returns
};

}  // namespace deliverd::smtp
