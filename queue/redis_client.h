#pragma once
// A Redis connection on the loop. hiredis is used only as the RESP codec (redisFormatCommandArgv,
// redisReader); the bytes travel over core::TcpStream, which is what lets rediss:// (TLS, verified)
// work with hiredis 0.14, whose own I/O knows no TLS.
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/result.h"
#include "core/tcp_stream.h"
#include "core/tls_context.h"
#include "queue/lua_script.h"

struct redisReader;

namespace deliverd::queue {

// One Redis Sentinel: an IP literal (or localhost) and a port.
struct SentinelAddress {
  std::string host;
  int port = 26379;
};

struct RedisConfig {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string username, password;  // AUTH user pass (ACL) when username is set, AUTH pass otherwise
  int db = 0;
  bool tls = false;     // rediss://: TLS 1.2+, certificate and host (or IP SAN) always verified
  std::string ca_file;  // extra CA bundle trusted besides the system's; "" = system CAs only
  // The name the certificate must carry when it differs from host (host is an IP literal because
  // names are not resolved here, while the certificate may name the server by DNS name).
  std::string tls_server_name;
  // Optional shared context: owners that make many clients (the Consumer recreates its own) pass
  // one so the CA store is loaded once and TLS sessions resume. Null: made from ca_file at connect().
  std::shared_ptr<core::TlsContext> tls_context;
  std::string name = "main";  // the conn label of metrics and logs
  int connect_timeout_ms = 5000;
  int command_timeout_ms = 10000;
  // Bounds (STYLE §4): bytes of one reply still being received, and commands awaiting a reply.
  size_t max_reply_bytes = 512 * 1024 * 1024;
  size_t max_pending_commands = 100000;
  // The client reconnects by itself after a failure (false: the owner makes a new client, as the
  // Consumer does). Delay before attempt n (1-based): min(max, min·2^(n-1)), ±20 % jitter.
  bool reconnect = false;
  int reconnect_min_ms = 100;
  int reconnect_max_ms = 5000;
  // Redis Sentinel (docs/redis.md "Failover"). When sentinels is not empty, host and port are not
  // used: before every connection attempt the sentinels are asked in turn (the one that answered
  // last first) for the primary of sentinel_master (SENTINEL get-master-addr-by-name), and after
  // AUTH and SELECT the node must answer ROLE with "master". A READONLY reply (the primary was
  // demoted) ends the connection, so the next attempt asks again. Sentinels are reached with the
  // same TLS setting and CA as the data nodes (their certificates must name their IP) and
  // authenticate with sentinel_username / sentinel_password (none: no AUTH).
  std::vector<SentinelAddress> sentinels;
  std::string sentinel_master;
  std::string sentinel_username, sentinel_password;
};

// "10.0.0.5:26379", "[::1]:26379", "localhost:26379"; the port is required. Errors name the entry.
core::Result<SentinelAddress, std::string> parse_sentinel_address(std::string_view text);

// Reads a secret from a file (a systemd credential, a Kubernetes secret …): trailing line endings
// are stripped; an unreadable, oversized (64 KiB) or empty file is an error naming the path and
// `what`, never the content.
core::Result<std::string, std::string> read_secret_file(const std::string& path, const std::string& what);

// Reads the password from a file (a systemd credential, a Kubernetes secret …) into cfg.password.
// One trailing line ending (\n, \r\n, or several) is stripped. An unreadable, oversized or empty
// file is an error naming the path; the password itself never appears in errors or logs.
core::Result<core::Ok, std::string> apply_password_file(RedisConfig& cfg, const std::string& path);

// The backoff before reconnect attempt `attempt` (1-based). jitter01 is a uniform random number in
// [0, 1): 0 gives -20 %, 0.5 the nominal delay, just under 1 gives +20 %. Never below 1 ms.
int reconnect_delay_ms(const RedisConfig& cfg, int attempt, double jitter01);

// redis://[user[:pass]@]host[:port][/db]; rediss:// sets tls. User and password may be
// percent-encoded; "[::1]" spells an IPv6 host. Errors are messages for the config loader.
core::Result<RedisConfig, std::string> parse_redis_url(std::string_view url);

struct RedisReply {
  enum class Type { Nil, Status, Error, Integer, String, Array } type = Type::Nil;
  std::string str;  // Status, Error, String
  long long integer = 0;
  std::vector<RedisReply> elements;
  // Set on the Error replies the client makes up itself when the connection failed (timeout,
  // EOF, protocol error, closed), as opposed to errors the server sent.
  bool connection_error = false;

  bool is_error() const { return type == Type::Error; }
  bool is_nil() const { return type == Type::Nil; }
  // "ERR" / "BUSYGROUP" / "NOGROUP" …: the first word of an error reply.
  std::string_view error_code() const;
};

// Why Redis refused a write, from its reply: "oom" (maxmemory), "readonly" (a replica, e.g.
// after a failover), "misconf" (its last save failed and it stops writes), "noreplicas"
// (min-replicas-to-write not met); "" when the reply is not such a refusal.
std::string_view write_refusal(const RedisReply& reply);

class RedisClient : private core::StreamHandler {
 public:
  using ReplyCallback = std::function<void(const RedisReply&)>;
  using ConnectCallback = std::function<void(bool ok, const std::string& error)>;

  // Heap object (STYLE §1): freed some time after close(), never deleted by the owner.
  static RedisClient* create(uv_loop_t* loop, const RedisConfig& cfg);

  // Connects to cfg.host (an IP literal or "localhost"; names are not resolved here), runs the
  // TLS handshake for rediss://, then sends AUTH and SELECT as configured. cb runs once: ok after
  // the first handshake, or with the reason of the first failure ("redis TLS: certificate verify
  // failed: …", "AUTH failed: WRONGPASS …"). Commands issued before that wait and are sent once
  // the handshake succeeded. Called once per client. With cfg.reconnect the client keeps trying
  // after a failed first attempt too (except for configuration errors: bad host, bad CA file);
  // the connect handler tells when it got through.
  void connect(ConnectCallback cb);

  // Queues a command; replies arrive in FIFO order. Never throws and never calls back from
  // inside this call: when the client is not usable the Error reply (connection_error set)
  // arrives on a later loop iteration. timeout_ms = 0 uses cfg.command_timeout_ms; blocking
  // commands (XREADGROUP BLOCK) pass their block time plus a margin. The timeout runs from
  // when the command was written; when it passes the whole connection is failed, since a
  // reply that never came leaves the RESP stream out of step.
  void command(std::vector<std::string> argv, ReplyCallback cb, int timeout_ms = 0);

  // Runs a script by its hash (EVALSHA), after a SCRIPT LOAD the first time the connection uses
  // it; on NOSCRIPT the call is sent once more as EVAL. args start with numkeys, as after the
  // script in EVAL. The script must outlive the call (scripts are static).
  void eval(const LuaScript& script, std::vector<std::string> args, ReplyCallback cb, int timeout_ms = 0);

  bool connected() const { return state_ == State::Ready; }
  size_t pending() const { return waiting_.size() + inflight_.size(); }
  // Whether n more commands fit under max_pending_commands (for groups that must not be split,
  // such as MULTI … EXEC).
  bool has_room_for(size_t n) const { return pending() + n <= cfg_.max_pending_commands; }

  // Called when an established or connecting client fails (not on close()), after every pending
  // callback got its connection_error reply. Without reconnect that happens once; with reconnect
  // once per outage (the failed attempts of one outage do not call it again).
  void set_disconnect_handler(std::function<void(const std::string& reason)> cb) { on_disconnect_ = std::move(cb); }
  // Called after every successful handshake: the first connect (after connect()'s callback) and
  // every reconnect, so the owner can redo per-connection set-up (XGROUP CREATE, SUBSCRIBE …).
  void set_connect_handler(std::function<void()> cb) { on_connect_ = std::move(cb); }
  // Called (after the command's own callback) for every reply in which Redis refused a write,
  // with write_refusal()'s reason and the server's text.
  void set_write_refused_handler(std::function<void(std::string_view reason, const std::string& error)> cb) {
    on_write_refused_ = std::move(cb);
  }
  // The last failure was a reply larger than max_reply_bytes (a read asked for too much at once).
  bool failed_on_large_reply() const { return failed_on_large_reply_; }
  const std::string& name() const { return cfg_.name; }

  // While a reconnecting client is down (between a failure and the next successful handshake),
  // command() fails fast: the Error reply (connection_error set) comes on a later loop turn.

  // Idempotent; also stops reconnecting. Pending callbacks are DROPPED (destroyed without being called): close() is
  // what an owner calls while tearing itself down, so calling back into it would be unsafe.
  // Connection failures, by contrast, call every pending callback with an Error reply.
  void close();

 private:
  // Discovering: asking the sentinels for the primary. Backoff: waiting for the reconnect timer
  // (reconnect only). Failed: dead for good.
  enum class State { Idle, Discovering, Connecting, TlsHandshake, Handshake, Ready, Backoff, Failed, Closed };
  struct Pending {
    ReplyCallback cb;
    uint64_t deadline = 0;  // loop time in ms; 0 while not yet written
    int timeout_ms = 0;
    std::string wire;  // encoded command, kept only until written
  };

  RedisClient(uv_loop_t* loop, const RedisConfig& cfg);
  ~RedisClient();

  void on_connected(int status) override;
  void on_data(std::string_view bytes) override;
  void on_end(int status) override;
  void on_tls_handshake(bool ok, const std::string& error) override;

  void start_attempt();
  void discover(size_t tried, std::string errors);
  void connect_to_target();
  void send_handshake();
  void become_ready();
  void set_connected(bool up);
  void schedule_reconnect();
  void send(const std::vector<std::string>& argv, ReplyCallback cb, int timeout_ms);
  void write_pending(Pending p);
  void flush_out();
  void flush_waiting();
  void dispatch(const RedisReply& reply);
  void fail(const std::string& reason);
  void arm_timer();
  void defer(ReplyCallback cb, RedisReply reply);
  static void on_timer(uv_timer_t* t);
  static void on_deferred(uv_timer_t* t);
  static void on_reconnect_timer(uv_timer_t* t);
  static void on_handle_closed(uv_handle_t* h);
  static void on_flush(uv_check_t* h);
  static void on_flush_before_poll(uv_prepare_t* h);

  uv_loop_t* loop_;
  RedisConfig cfg_;
  State state_ = State::Idle;
  core::TcpStream* stream_ = nullptr;
  redisReader* reader_ = nullptr;
  size_t partial_reply_bytes_ = 0;
  ConnectCallback connect_cb_;
  std::function<void(const std::string&)> on_disconnect_;
  std::function<void()> on_connect_;
  std::function<void(std::string_view, const std::string&)> on_write_refused_;
  bool failed_on_large_reply_ = false;
  sockaddr_storage addr_{};  // resolved once by connect() (or per attempt from the sentinels)
  std::string target_host_;  // what addr_ is, for TLS name checks and logs
  int target_port_ = 0;
  RedisClient* sentinel_query_ = nullptr;  // the sentinel being asked, while Discovering
  size_t sentinel_first_ = 0;              // the sentinel that answered last is asked first
  std::shared_ptr<core::TlsContext> tls_ctx_;
  bool counted_connected_ = false;  // this client holds +1 in the connected gauge
  bool in_outage_ = false;          // lost the connection and not yet back (reconnect)
  std::string outage_reason_;
  int attempt_ = 0;  // reconnect attempts in the current outage
  std::minstd_rand rng_;
  std::unordered_set<std::string> scripts_loaded_;  // SHA-1s sent with SCRIPT LOAD on this connection
  size_t handshake_replies_ = 0;  // AUTH/SELECT replies still expected before Ready
  std::deque<Pending> waiting_;   // queued before Ready, not yet written
  std::deque<Pending> inflight_;  // written, awaiting a reply (FIFO)
  std::deque<std::pair<ReplyCallback, RedisReply>> deferred_;
  uv_timer_t timeout_timer_{};
  uv_timer_t defer_timer_{};
  uv_timer_t reconnect_timer_{};
  // Commands written in one loop turn go out in one write (one syscall here, one read for
  // Redis): buffered in out_ and flushed after the turn's I/O callbacks (check) and before the
  // loop next waits (prepare, for commands from timers).
  std::string out_;
  uv_check_t flush_check_{};
  uv_prepare_t flush_prepare_{};
  int open_handles_ = 5;
};

}  // namespace deliverd::queue
