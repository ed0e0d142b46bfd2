#pragma once
// PostgreSQL on the event loop through libpq's asynchronous API. One query in flight at a time;
// the rest wait in a bounded FIFO. Nothing here blocks the loop: connecting is driven by
// PQconnectPoll, queries by PQsendQueryParams / PQconsumeInput / PQgetResult, all on uv_poll.
#include <libpq-fe.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/lifetime.h"
#include "core/timer.h"

namespace deliverd::store {

// A query's outcome, copied out of libpq so it outlives the PGresult. Values are text format.
struct PgResult {
  bool ok = false;
  std::string error;     // PostgreSQL's message, or ours ("query timeout", "not connected", …)
  std::string sqlstate;  // e.g. "23505" for unique_violation; "" for client-side errors
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;
  long affected = 0;  // rows touched by INSERT/UPDATE/DELETE

  // Index of a column by name, or -1.
  int column(std::string_view name) const;
};

// Resolves a server's host name without blocking the loop: numeric addresses in the order to
// try, or an error text. libpq would call getaddrinfo, which blocks, inside PQconnectPoll.
using PgHostResolver = std::function<void(const std::string& host,
                                          std::function<void(std::vector<std::string> ips, std::string error)>)>;

struct PgConnectionOptions {
  // Unset: libpq resolves names itself (fine for command-line tools, which hold no loop).
  PgHostResolver resolve_host;
  int connect_timeout_ms = 10000;
  int query_timeout_ms = 30000;
  size_t max_queued = 10000;  // queries waiting beyond this are refused with an error result
};

class PgConnection {  // heap object freed after close() (STYLE.md §1)
 public:
  static PgConnection* create(uv_loop_t* loop, std::string conninfo, PgConnectionOptions options = {});

  // Starts connecting (or reuses the open connection). cb runs once, later, on the loop.
  void connect(std::function<void(bool ok, const std::string& error)> cb);

  // Queues a query; $1…$n are bound from params (nullopt = NULL, text format). Connects first
  // if there is no connection (so a lost connection is re-opened by the next query). cb runs
  // exactly once, later, on the loop — unless close() was called first.
  void query(std::string sql, std::vector<std::optional<std::string>> params, std::function<void(const PgResult&)> cb);
  // Queues `COPY … FROM STDIN` (sql) with its rows already in COPY text format (data): one
  // statement and one commit for many rows, and none of a multi-row INSERT's parse and plan.
  // Same queue, timeouts and callback contract as query().
  void copy_in(std::string sql, std::string data, std::function<void(const PgResult&)> cb);

  bool connected() const { return state_ == State::Ready; }
  uv_loop_t* loop() const { return loop_; }
  size_t queued() const { return queue_.size(); }

  // LISTEN/NOTIFY: every notification libpq has parsed is handed over after each read from the
  // socket (the connection is watched for reading even when idle). Issue "LISTEN chan" with
  // query(); it does not survive a reconnect, so listeners re-issue it from the lost handler.
  using NotifyHandler = std::function<void(const std::string& channel, const std::string& payload)>;
  void set_notify_handler(NotifyHandler fn) { on_notify_ = std::move(fn); }
  // Called (later, on the loop) when an established connection is lost; the next query
  // reconnects. Notifications sent meanwhile are missed, so a listener reloads its state.
  void set_lost_handler(std::function<void(const std::string& error)> fn) { on_lost_ = std::move(fn); }

  // Idempotent. No callback runs after it; the object is freed once libuv has closed its handles.
  void close();

 private:
  enum class State { Idle, Connecting, Ready, Closed };
  struct Pending {
    std::string sql;
    std::vector<std::optional<std::string>> params;
    std::function<void(const PgResult&)> cb;
    std::optional<std::string> copy_data;  // set: a COPY FROM STDIN and its rows
  };
  struct PollBox;

  PgConnection(uv_loop_t* loop, std::string conninfo, PgConnectionOptions options);
  ~PgConnection();

  void start_connect();
  void open_connection(const std::vector<std::pair<std::string, std::string>>& params);
  void continue_connect();
  void on_connected();
  void connect_failed(const std::string& error);
  void on_socket(int status, int events);
  void read_results();
  bool send_copy_data();  // answers the server's CopyInResponse; false: the connection was lost
  void enqueue(Pending p);
  void send_next();
  void finish_query(PgResult result);
  void connection_lost(const std::string& error);
  void drop_connection();
  void watch(int events);
  void unwatch();
  void defer(std::function<void()> fn);
  void run_deferred();
  void release_handle();
  void deliver_notifications();
  std::string conn_error() const;

  static void on_poll_cb(uv_poll_t* h, int status, int events);
  static void on_poll_closed(uv_handle_t* h);
  static void on_defer_cb(uv_timer_t* t);
  static void on_defer_closed(uv_handle_t* h);

  uv_loop_t* loop_;
  std::string conninfo_;
  PgConnectionOptions options_;
  State state_ = State::Idle;
  PGconn* conn_ = nullptr;
  uint64_t connect_attempt_ = 0;  // a lookup answering for an attempt that has ended is ignored
  bool resolving_ = false;
  core::Lifetime alive_;
  PollBox* poll_ = nullptr;
  int poll_fd_ = -1;
  int poll_events_ = 0;
  core::TimerHandle connect_timer_;
  core::TimerHandle query_timer_;
  uv_timer_t defer_timer_{};
  std::vector<std::function<void()>> deferred_;
  std::vector<std::function<void(bool, const std::string&)>> connect_cbs_;
  std::deque<Pending> queue_;  // front is in flight when in_flight_
  bool in_flight_ = false;
  PgResult partial_;
  bool have_partial_ = false;
  int open_handles_ = 0;
  NotifyHandler on_notify_;
  std::function<void(const std::string&)> on_lost_;
};

// bytea in text format: "\x…" hex (what PostgreSQL sends and accepts). decode returns nullopt
// for malformed input.
std::string encode_bytea(std::string_view bytes);
std::optional<std::string> decode_bytea(std::string_view text);

}  // namespace deliverd::store
