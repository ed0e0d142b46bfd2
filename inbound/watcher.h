#pragma once
// One sending mailbox's inbox, watched: connect, log in, EXAMINE the folder, read every message
// newer than the cursor (UIDVALIDITY, last UID) once, classify it and hand the signal to the
// host, then wait for more with IDLE (or a poll timer where the server has no IDLE). What a
// watcher needs from the daemon (an address it may connect to, credentials, the stored cursor,
// what to do with a signal) comes through WatcherHost, so the watcher itself knows nothing of
// PostgreSQL, Redis or OAuth and is tested against a real Dovecot with a host of the test's own.
//
// Reading never changes the mailbox: EXAMINE (read-only) and BODY.PEEK only. Only when move_to
// names a folder is the folder SELECTed and a message that was a bounce, delay or complaint moved
// there after its signal was handled. Per message at most plan.max_sections sections of at most
// plan.max_section_bytes are fetched (headers and the report parts BODYSTRUCTURE names, never
// attachments). A message that cannot be read or classified is skipped with a log line: the
// cursor moves past it and the watcher goes on.
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/lifetime.h"
#include "core/result.h"
#include "core/timer.h"
#include "inbound/classifier.h"
#include "inbound/fetch_plan.h"
#include "inbound/imap_client.h"
#include "inbound/mime.h"

namespace deliverd::inbound {

enum class WatchState : uint8_t { Connecting, Reading, Idle, Polling, Backoff, Stopped };
std::string_view to_string(WatchState s);  // "connecting", "reading", "idle", "polling", "backoff", "stopped"
inline constexpr WatchState kAllWatchStates[] = {WatchState::Connecting, WatchState::Reading, WatchState::Idle,
                                                 WatchState::Polling,    WatchState::Backoff, WatchState::Stopped};

// Where reading stands. uid_validity 0: nothing stored yet.
struct Cursor {
  uint32_t uid_validity = 0;
  uint32_t last_uid = 0;
};

struct WatcherConfig {
  std::string host;  // the IMAP server's name (certificate name unless imap.tls_name says otherwise)
  uint16_t port = 993;
  ImapConfig imap;   // security (993: Tls, 143: StartTls), TLS context, timeouts, parser bounds
  std::string folder = "INBOX";
  std::string move_to;  // "" = never change the mailbox
  uint64_t poll_interval_ms = 60'000;  // without IDLE: how often to look (NOOP, then UID SEARCH)
  uint32_t fetch_batch = 50;           // UIDs per BODYSTRUCTURE fetch
  FetchPlanLimits plan;
  MimeLimits mime;
  uint64_t backoff_min_ms = 5'000, backoff_max_ms = 300'000;
  // Provider limits ([LIMIT], [UNAVAILABLE], refused logins) wait at least this long.
  uint64_t backoff_limit_ms = 60'000;
};

// What the daemon provides. Each asynchronous call answers exactly once, possibly at once; the
// watcher guards every answer with its lifetime, so a host may answer after the watcher is gone.
class WatcherHost {
 public:
  virtual ~WatcherHost() = default;
  // The address to connect to, vetted (SSRF policy, allowed port) and with the port set.
  virtual void resolve(std::function<void(core::Result<sockaddr_storage, std::string>)> done) = 0;
  virtual void credentials(std::function<void(core::Result<ImapCredentials, std::string>)> done) = 0;
  virtual void load_cursor(std::function<void(core::Result<Cursor, std::string>)> done) = 0;
  virtual void save_cursor(Cursor c, std::function<void(bool ok)> done) = 0;
  // One new message's signal (kind may be Ignored: nothing to do but answer). ok false: the
  // signal could not be handled now; the watcher stops reading and tries again after a backoff,
  // from the same message.
  virtual void signal(const Signal& s, uint32_t uid, std::function<void(bool ok)> done) = 0;
  // For status and metrics; error is "" unless the state is Backoff.
  virtual void state_changed(WatchState s, std::string_view error) = 0;
};

class Watcher {
 public:
  Watcher(uv_loop_t* loop, WatcherConfig cfg, WatcherHost& host);
  ~Watcher();  // closes the connection; no host call follows
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  void start();
  // Final: closes the connection, cancels timers; state Stopped.
  void stop();

  WatchState state() const { return state_; }
  const std::string& last_error() const { return last_error_; }
  const Cursor& cursor() const { return cursor_; }
  uint64_t messages_read() const { return messages_read_; }

 private:
  // What was running when something failed: the first word of last_error(), one table.
  enum class Step : uint8_t {
    Resolve,
    Credentials,
    Connect,
    Login,
    Open,
    LoadCursor,
    SaveCursor,
    Search,
    Structure,
    Fetch,
    Signal,
    Move,
    Idle,
    Poll,
    Connection,
  };
  static std::string_view step_name(Step s);

  // A callback's guard: the watcher is alive and still in the session that made the call. A host
  // may answer after the connection it belonged to has failed; that answer is dropped.
  struct Guard {
    core::Lifetime::Token alive;
    uint64_t session;
  };
  Guard guard() const { return {alive_.token(), session_}; }
  bool current(const Guard& g) const { return g.alive && g.session == session_ && state_ != WatchState::Stopped; }

  void set_state(WatchState s, std::string_view error = {});
  void connect();
  void login(ImapCredentials credentials);
  void open_folder();
  void load_cursor(const MailboxInfo& box);
  void begin_at(const MailboxInfo& box, uint32_t last_uid);
  void read_new();
  void next_batch();
  void next_message();
  void fetch_message(uint32_t uid, const BodyPart& structure);
  void handled(uint32_t uid, bool counted);  // the cursor moves past uid, then the next message
  void skip(uint32_t uid, std::string_view why);
  void reading_done();
  void wait_for_mail();
  void on_exists();
  void fail(Step step, const ImapError& e);
  void fail(Step step, std::string_view text, bool provider_limit = false);
  void close_client();

  uv_loop_t* loop_;
  WatcherConfig cfg_;
  WatcherHost& host_;
  WatchState state_ = WatchState::Connecting;
  bool started_ = false;
  bool reported_ = false;  // state_changed has been called at least once
  std::string last_error_;
  Cursor cursor_;
  uint64_t messages_read_ = 0;

  uint64_t session_ = 0;  // one per connection attempt
  ImapClient* client_ = nullptr;
  sockaddr_storage addr_{};
  core::TimerHandle timer_;  // backoff and polling
  uint64_t backoff_ms_ = 0;  // 0: the last read succeeded (or none failed yet)

  // Reading: the UIDs still to read (ascending), the batch whose structures are at hand.
  std::vector<uint32_t> todo_;
  std::vector<uint32_t> batch_;
  std::vector<std::pair<uint32_t, BodyPart>> structures_;
  size_t at_ = 0;             // index into batch_
  bool one_by_one_ = false;   // a batch's structure fetch was refused: find the message that breaks it
  bool more_mail_ = false;    // EXISTS while reading: search again when done
  bool idle_ending_ = false;  // stop_idle() sent, IDLE's end is due

  core::Lifetime alive_;  // last: ends first, before the members a late callback would touch
};

}  // namespace deliverd::inbound
