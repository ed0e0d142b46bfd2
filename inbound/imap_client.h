#pragma once
// One IMAP connection on the event loop, in the Postfix manner: named commands with one table of
// timeouts, every failure through one fail() that produces a typed ImapError, one object per
// connection. TLS always: 993 with TLS from the first byte (RFC 8314) or 143 with STARTTLS
// (RFC 9051 §6.2.1; capabilities are read again after TLS and bytes the server sent behind the
// STARTTLS OK are refused). No credential is sent before TLS with a verified certificate.
//
// Commands may be queued at any time (also before the connection is ready); they go out one at
// a time in order. Each ends with exactly one call of its callback. A command the server refuses
// (NO/BAD) fails on its own and the connection stays usable; anything that breaks the connection
// (I/O, TLS, a malformed or oversized response, a timeout, BYE) fails the running command and
// every queued one with the same error, then calls Hooks::closed. Provider back-off signals
// (BYE, [UNAVAILABLE], [LIMIT], timeouts) come out as their own ImapErrorKind, transient() true.
//
// Reading never changes the mailbox: FETCH uses BODY.PEEK only, so \Seen is never set; only
// uid_move() and uid_store() change anything, and only when called.
#include <uv.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/lifetime.h"
#include "core/result.h"
#include "core/security.h"
#include "core/tcp_stream.h"
#include "core/timer.h"
#include "core/tls_context.h"
#include "inbound/imap_parser.h"

namespace deliverd::inbound {


// What the client is waiting for; each has its own timeout (ImapTimeouts).
enum class ImapCommand : uint8_t {
  Connect,   // TCP connect
  Tls,       // the TLS handshake
  Greeting,  // the server's first response
  StartTls,
  Capability,
  Login,         // LOGIN
  Authenticate,  // AUTHENTICATE PLAIN / XOAUTH2 / OAUTHBEARER
  Select,
  Examine,
  Search,   // UID SEARCH
  Fetch,    // UID FETCH
  Store,    // UID STORE
  Copy,     // UID COPY
  Move,     // UID MOVE
  Expunge,  // UID EXPUNGE / EXPUNGE
  Append,
  Noop,
  Idle,  // IDLE until the server's "+"
  Done,  // DONE until IDLE's tagged OK
  Logout,
};
inline constexpr size_t kImapCommandCount = 20;

struct ImapCommandInfo {
  ImapCommand command;
  std::string_view name;
  uint64_t default_timeout_ms;
};

inline constexpr std::array<ImapCommandInfo, kImapCommandCount> kImapCommands = {{
    {ImapCommand::Connect, "connect", 30'000},
    {ImapCommand::Tls, "tls", 30'000},
    {ImapCommand::Greeting, "greeting", 30'000},
    {ImapCommand::StartTls, "starttls", 30'000},
    {ImapCommand::Capability, "capability", 30'000},
    {ImapCommand::Login, "login", 60'000},
    {ImapCommand::Authenticate, "authenticate", 60'000},
    {ImapCommand::Select, "select", 60'000},
    {ImapCommand::Examine, "examine", 60'000},
    {ImapCommand::Search, "search", 120'000},
    {ImapCommand::Fetch, "fetch", 120'000},
    {ImapCommand::Store, "store", 60'000},
    {ImapCommand::Copy, "copy", 120'000},
    {ImapCommand::Move, "move", 120'000},
    {ImapCommand::Expunge, "expunge", 120'000},
    {ImapCommand::Append, "append", 120'000},
    {ImapCommand::Noop, "noop", 30'000},
    {ImapCommand::Idle, "idle", 30'000},
    {ImapCommand::Done, "done", 30'000},
    {ImapCommand::Logout, "logout", 10'000},
}};

constexpr std::string_view to_string(ImapCommand c) { return kImapCommands[static_cast<size_t>(c)].name; }

struct ImapTimeouts {
  std::array<uint64_t, kImapCommandCount> ms = [] {
    std::array<uint64_t, kImapCommandCount> a{};
    for (size_t i = 0; i < kImapCommandCount; ++i) a[i] = kImapCommands[i].default_timeout_ms;
    return a;
  }();
  uint64_t& operator[](ImapCommand c) { return ms[static_cast<size_t>(c)]; }
  uint64_t operator[](ImapCommand c) const { return ms[static_cast<size_t>(c)]; }
};

// RFC 2177: a server may end an IDLE after 30 minutes; re-issuing before 29 keeps it open.
inline constexpr uint64_t kMaxIdleReissueMs = 28 * 60 * 1000;

struct ImapConfig {
  // Tls: TLS from the first byte (port 993). StartTls: plaintext greeting, then STARTTLS (port 143).
  // None is refused before anything is sent: IMAP is never spoken in plaintext.
  core::Security security = core::Security::Tls;
  std::shared_ptr<core::TlsContext> tls;  // required; certificates are always verified
  std::string tls_name;                   // certificate name and SNI; "" = the host name
  ImapTimeouts timeouts;
  // How long one IDLE lasts before it is ended and issued again (capped at kMaxIdleReissueMs).
  uint64_t idle_reissue_ms = 25 * 60 * 1000;
  ParserLimits limits;                   // literal, response, line, nesting and value bounds
  size_t max_command_bytes = 32u << 20;  // untagged data one command may collect (a large UID FETCH)
};

// auto: with an access token XOAUTH2, else OAUTHBEARER (whichever the server offers); with a
// password LOGIN, or AUTHENTICATE PLAIN where the server says LOGINDISABLED. The others force one.
enum class ImapAuthMethod : uint8_t { Auto, Login, Plain, XOAuth2, OAuthBearer };

struct ImapCredentials {
  std::string username;
  std::string password;      // LOGIN or AUTHENTICATE PLAIN
  std::string access_token;  // OAuth 2.0 bearer token (XOAUTH2, OAUTHBEARER); used instead of the password when set
  ImapAuthMethod method = ImapAuthMethod::Auto;

  static ImapCredentials with_password(std::string user, std::string password,
                                       ImapAuthMethod m = ImapAuthMethod::Auto) {
    return {std::move(user), std::move(password), "", m};
  }
  static ImapCredentials with_token(std::string user, std::string token, ImapAuthMethod m = ImapAuthMethod::Auto) {
    return {std::move(user), "", std::move(token), m};
  }
};

enum class ImapErrorKind : uint8_t {
  Connect,          // TCP connect failed, or the server closed before greeting
  Tls,              // handshake or certificate, STARTTLS missing or refused, bytes behind STARTTLS's OK
  Protocol,         // a response that is not IMAP, or not the one expected
  TooLarge,         // a parser bound (literal, response, line, nesting) or max_command_bytes exceeded
  Timeout,          // no answer within the command's timeout
  Closed,           // the server closed the connection while a command was running
  Bye,              // the server said BYE (without [UNAVAILABLE])
  Unavailable,      // [UNAVAILABLE] (RFC 5530), in a BYE or a NO: the server wants us to back off
  Limit,            // [LIMIT] (RFC 5530): too many connections or too much traffic
  LoginFailed,      // LOGIN / AUTHENTICATE refused (wrong password, expired token, …)
  AuthUnavailable,  // no mechanism to use: LOGINDISABLED without AUTH=PLAIN, a token without XOAUTH2/OAUTHBEARER
  CommandFailed,    // NO or BAD to another command (a missing mailbox, …); the connection stays usable
  InvalidArgument,  // the caller's input cannot be sent (CR/LF in a name, a bad UID set, …); nothing sent
};
std::string_view to_string(ImapErrorKind k);  // "connect", "tls", …, "invalid_argument"

struct ImapError {
  ImapErrorKind kind = ImapErrorKind::Protocol;
  ImapCommand command = ImapCommand::Connect;  // what was running
  Code code = Code::None;                      // the server's response code, when it gave one
  std::string text;                            // the server's text (control characters removed, cut at 300) or ours
  bool fatal = false;                          // the connection ended with this error (else only the command failed)
  // A caller should back off and try again later, rather than treat it as a configuration fault.
  bool transient() const;
};

template <class T>
using ImapResult = core::Result<T, ImapError>;

struct MailboxInfo {  // SELECT / EXAMINE
  std::string name;
  uint32_t uid_validity = 0;  // 0: the server did not say (then UIDs cannot be trusted across sessions)
  uint32_t uid_next = 0;      // 0: the server did not say
  uint32_t exists = 0;
  std::optional<uint32_t> unseen;
  uint64_t highest_modseq = 0;
  bool read_only = false;
  std::vector<std::string> flags, permanent_flags;
};

// What one UID FETCH asks for. Sections are fetched with BODY.PEEK, never BODY: \Seen stays unset.
struct FetchItems {
  bool flags = true;
  bool size = false;            // RFC822.SIZE
  bool internal_date = false;   // INTERNALDATE
  bool body_structure = false;  // BODYSTRUCTURE
  // "HEADER", "HEADER.FIELDS (From To Message-ID)", "1.2", "2.MIME", "TEXT", "" (whole message) …
  std::vector<std::string> sections;
  uint32_t max_section_bytes = 0;  // > 0: each section fetched as <0.max_section_bytes> (partial)
};

class ImapClient final : private core::StreamHandler, private core::DeletesItself<ImapClient> {
 public:
  using Done = std::function<void(const ImapResult<core::Ok>&)>;

  struct Hooks {
    std::function<void(uint32_t exists)> exists;  // "* n EXISTS" at any time (IDLE, NOOP, other commands)
    std::function<void(uint32_t seq)> expunge;    // "* n EXPUNGE"
    // Once, when the client is about to be freed, unless the owner called close(): nullopt after
    // a LOGOUT the server answered, else the error that ended the connection.
    std::function<void(const std::optional<ImapError>&)> closed;
  };

  // Connects to exactly vetted_addr (never resolves). `connected` is called once, never from
  // inside connect(): ok when the connection is encrypted, verified and its capabilities known.
  // The pointer is valid until Hooks::closed, or until the owner calls close().
  static ImapClient* connect(uv_loop_t* loop, const ImapConfig& cfg, const sockaddr* vetted_addr, std::string host,
                             Hooks hooks, Done connected);

  // LOGIN or AUTHENTICATE as ImapAuthMethod says (SASL-IR when offered). Only over TLS with a
  // verified certificate. The capabilities are current afterwards (from the OK's code, else a
  // CAPABILITY command).
  void login(ImapCredentials credentials, Done done);
  void capability(Done done);
  void select(std::string mailbox, std::function<void(const ImapResult<MailboxInfo>&)> done);
  void examine(std::string mailbox, std::function<void(const ImapResult<MailboxInfo>&)> done);  // read-only
  // UID SEARCH <criteria>, e.g. "UID 4:*" or "SINCE 1-Dec-2026"; the UIDs found, as sent.
  void uid_search(std::string criteria, std::function<void(const ImapResult<std::vector<uint32_t>>&)> done);
  // UID FETCH <uid_set> (…): "4", "4:9", "4,7:*". Every FETCH response that names a UID.
  void uid_fetch(std::string uid_set, FetchItems items,
                 std::function<void(const ImapResult<std::vector<FetchData>>&)> done);
  // IDLE (RFC 2177) until stop_idle() or the next queued command (which sends DONE first); new
  // mail arrives through Hooks::exists. Re-issued every idle_reissue_ms without calling `done`.
  // Without the IDLE capability it fails with CommandFailed: poll with noop() instead.
  void idle(Done done);
  void stop_idle();
  void noop(Done done);
  // UID STORE <uid_set> +FLAGS.SILENT (flags).
  void uid_store(std::string uid_set, std::vector<std::string> flags, Done done);
  // UID MOVE when offered (RFC 6851); else UID COPY, then +FLAGS (\Deleted), then UID EXPUNGE when
  // UIDPLUS is offered. Without UIDPLUS the copies stay marked \Deleted: a plain EXPUNGE would
  // also remove what the user had deleted.
  void uid_move(std::string uid_set, std::string mailbox, Done done);
  // APPEND; the new message's UID when the server says it (UIDPLUS), else 0.
  void append(std::string mailbox, std::string message, std::vector<std::string> flags,
              std::function<void(const ImapResult<uint32_t>&)> done);
  // LOGOUT; the connection then ends and Hooks::closed gets nullopt.
  void logout(Done done);
  // Ends the connection now. No callback of any kind follows; the pointer is invalid at once.
  void close();

  const std::vector<std::string>& capabilities() const { return caps_; }  // upper-case
  bool has_capability(std::string_view cap) const;                        // case-insensitive
  bool idling() const { return idling_; }
  bool authenticated() const { return authenticated_; }
  const std::string& host() const { return host_; }
  const std::string& ip() const { return ip_; }
  core::TlsInfo tls_info() const;

 private:
  struct Pending {
    ImapCommand command = ImapCommand::Noop;
    std::vector<std::string> chunks;  // chunks[0] follows the tag; each later one goes after a "+"
    size_t sent = 0;
    std::string tag;
    // Right before the command goes out (the capabilities are current then): fills in chunks, or
    // says why nothing can be sent; the command then fails with that and nothing is sent.
    std::function<std::optional<ImapError>(Pending&)> prepare;
    std::function<void(Response&)> on_untagged;  // may move what it keeps out of the response
    // A "+" that the chunks do not explain (SASL challenges, IDLE's "+ idling").
    std::function<void(const Response&)> on_continuation;
    std::function<void(const ImapError*, const Response*)> finish;
  };
  ImapClient(uv_loop_t* loop, const ImapConfig& cfg, const sockaddr* vetted_addr, std::string host, Hooks hooks);
  ~ImapClient() override;

  // StreamHandler
  void on_connected(int status) override;
  void on_data(std::string_view bytes) override;
  void on_end(int status) override;
  void on_tls_handshake(bool ok, const std::string& error) override;

  void wait_for(ImapCommand c);  // re-arms the timer from the table
  void enqueue(Pending p);
  void pump();  // sends the next queued command when none is running
  void send_current();
  void handle(Response&& r);
  void untagged(Response& r);
  void tagged(const Response& r);
  void continuation(const Response& r);
  void greeting(const Response& r);
  void after_greeting();
  void begin_tls();
  void tls_ready();
  void ready();
  void finish_current(const ImapError* error, const Response* tagged);
  void fail(ImapError e);  // ends the connection: every pending command, then Hooks::closed
  ImapError error(ImapErrorKind kind, std::string text, Code code = Code::None) const;
  ImapError refused(const Response& tagged) const;  // NO / BAD to the running command
  void send(std::string bytes);
  std::string next_tag();
  void internal(ImapCommand c, std::string line, std::function<void(const ImapError*, const Response*)> then);
  void start_idle_timer();
  void end_cleanly();  // after LOGOUT's OK
  void open_mailbox(ImapCommand c, std::string mailbox, std::function<void(const ImapResult<MailboxInfo>&)> done);
  // Input that cannot be sent: the callback hears why before the method returns; nothing is sent.
  void refuse_now(ImapCommand c, std::string why, const std::function<void(const ImapError&)>& done);

  friend class core::DeletesItself<ImapClient>;  // frees the client as the last entry into it returns

  ImapConfig cfg_;
  std::string host_, ip_;
  int port_ = 0;
  Hooks hooks_;
  Done connected_;
  core::TcpStream* stream_ = nullptr;
  core::TimerHandle timer_;
  ResponseParser parser_;
  std::unique_ptr<Pending> current_;
  std::deque<Pending> queue_;
  std::vector<std::string> caps_;
  bool caps_known_ = false;
  bool greeted_ = false;
  bool tls_on_ = false;
  bool ready_ = false;  // greeting, TLS and capabilities done: queued commands may go
  bool authenticated_ = false;
  bool idling_ = false;     // the server said "+" to IDLE
  bool done_sent_ = false;  // DONE is out, IDLE's tagged OK is due
  bool reissue_ = false;    // that DONE was the re-issue timer's: IDLE goes out again
  bool idle_stop_ = false;  // stop_idle() before the server's "+": DONE as soon as it comes
  bool logged_out_ = false;
  std::optional<Response> bye_;  // an untagged BYE: the reason for the close that follows
  size_t command_bytes_ = 0;
  uint32_t next_tag_ = 1;
  ImapCommand waiting_ = ImapCommand::Connect;  // what the timer runs for
  bool ended_ = false;      // the connection is over (fail, LOGOUT or close); freed as the outermost Entry returns
  bool abandoned_ = false;  // close() by the owner: no more callbacks
};

}  // namespace deliverd::inbound
