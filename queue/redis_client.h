#pragma once
// A Redis connection on the loop. hiredis is used only as the RESP codec (redisFormatCommandArgv,
// redisReader); the bytes travel over core::TcpStream so that TLS (rediss://) can slot in under
// the stream later without touching this class's users.
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "core/tcp_stream.h"

struct redisReader;

namespace deliverd::queue {

struct RedisConfig {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string username, password;
  int db = 0;
  bool tls = false;  // parsed from rediss://; the connection refuses it until TLS lands
  int connect_timeout_ms = 5000;
  int command_timeout_ms = 10000;
  // Bounds (STYLE §4): bytes of one reply still being received, and commands awaiting a reply.
  size_t max_reply_bytes = 512 * 1024 * 1024;
  size_t max_pending_commands = 100000;
};

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

class RedisClient : private core::StreamHandler {
 public:
  using ReplyCallback = std::function<void(const RedisReply&)>;
  using ConnectCallback = std::function<void(bool ok, const std::string& error)>;

  // Heap object (STYLE §1): freed some time after close(), never deleted by the owner.
  static RedisClient* create(uv_loop_t* loop, const RedisConfig& cfg);

  // Connects to cfg.host (an IP literal or "localhost"; names are not resolved here), then
  // sends AUTH and SELECT as configured. cb runs once: ok after the handshake, or with the
  // reason. Commands issued before that wait and are sent once the handshake succeeded.
  // Only one connect per client; a later issue adds reconnect, for now make a new client.
  void connect(ConnectCallback cb);

  // Queues a command; replies arrive in FIFO order. Never throws and never calls back from
  // inside this call: when the client is not usable the Error reply (connection_error set)
  // arrives on a later loop iteration. timeout_ms = 0 uses cfg.command_timeout_ms; blocking
  // commands (XREADGROUP BLOCK) pass their block time plus a margin. The timeout runs from
  // when the command was written; when it passes the whole connection is failed, since a
  // reply that never came leaves the RESP stream out of step.
  void command(std::vector<std::string> argv, ReplyCallback cb, int timeout_ms = 0);

  bool connected() const { return state_ == State::Ready; }
  size_t pending() const { return waiting_.size() + inflight_.size(); }
  // Whether n more commands fit under max_pending_commands (for groups that must not be split,
  // such as MULTI … EXEC).
  bool has_room_for(size_t n) const { return pending() + n <= cfg_.max_pending_commands; }

  // Called once when an established or connecting client fails (not on close()).
  void set_disconnect_handler(std::function<void(const std::string& reason)> cb) { on_disconnect_ = std::move(cb); }

  // Idempotent. Pending callbacks are DROPPED (destroyed without being called): close() is
  // what an owner calls while tearing itself down, so calling back into it would be unsafe.
  // Connection failures, by contrast, call every pending callback with an Error reply.
  void close();

 private:
  enum class State { Idle, Connecting, Handshake, Ready, Failed, Closed };
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

  void send_handshake();
  void write_pending(Pending p);
  void flush_waiting();
  void dispatch(const RedisReply& reply);
  void fail(const std::string& reason);
  void arm_timer();
  void defer(ReplyCallback cb, RedisReply reply);
  static void on_timer(uv_timer_t* t);
  static void on_deferred(uv_timer_t* t);
  static void on_handle_closed(uv_handle_t* h);

  uv_loop_t* loop_;
  RedisConfig cfg_;
  State state_ = State::Idle;
  core::TcpStream* stream_ = nullptr;
  redisReader* reader_ = nullptr;
  size_t partial_reply_bytes_ = 0;
  ConnectCallback connect_cb_;
  std::function<void(const std::string&)> on_disconnect_;
  size_t handshake_replies_ = 0;  // AUTH/SELECT replies still expected before Ready
  std::deque<Pending> waiting_;   // queued before Ready, not yet written
  std::deque<Pending> inflight_;  // written, awaiting a reply (FIFO)
  std::deque<std::pair<ReplyCallback, RedisReply>> deferred_;
  uv_timer_t timeout_timer_{};
  uv_timer_t defer_timer_{};
  int open_handles_ = 2;
};

}  // namespace deliverd::queue
