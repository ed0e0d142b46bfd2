#pragma once
// SessionPool: keeps SMTP connections open between messages of the same mailbox (relay mode) or
// the same destination domain (MX mode), with RSET between messages, a cap on messages per
// connection, an idle timeout that sends QUIT, and a global cap on open connections. Messages
// that find no free slot wait in per-key queues served round-robin, so one busy mailbox cannot
// starve the others.
#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "smtp/session.h"

namespace deliverd::smtp {

struct PoolConfig {
  size_t max_sessions = 1000;                // open connections, all keys together
  size_t max_sessions_per_key = 10;          // open connections to one mailbox / MX domain
  size_t max_messages_per_connection = 100;  // then QUIT and reconnect
  uint64_t idle_timeout_ms = 30'000;         // an unused connection QUITs after this
  size_t max_queued = 100'000;               // waiting messages, all keys together
};

// Where one message goes. Connections are reused only between messages with the same key.
struct Route {
  std::string key;        // "mbx:<account and mailbox id>#<settings generation>" or "mx:<domain>"
  SessionConfig cfg;      // the connection's settings (TLS, AUTH, timeouts)
  sockaddr_storage addr;  // vetted address with port, used when a new connection is needed
  std::string host;       // name for logs, outcomes and (unless cfg.tls_name) certificate checks
};

class SessionPool {
 public:
  SessionPool(uv_loop_t* loop, PoolConfig cfg);
  ~SessionPool();  // calls shutdown()
  SessionPool(const SessionPool&) = delete;
  SessionPool& operator=(const SessionPool&) = delete;

  // done runs exactly once, never inside submit() except when the pool refuses the message
  // outright (queue full: deferred "pool_full"; after shutdown: deferred "shutting_down"; a route
  // whose addr is AF_UNSPEC asks for an idle connection only: deferred "no_idle_connection").
  void submit(Route route, Envelope env, Session::Done done);
  bool has_idle(const std::string& key) const;

  // Ends everything now: queued messages end deferred ("shutting_down"), open sessions are
  // aborted (their messages end deferred "aborted"). All done callbacks have run on return.
  void shutdown();
  // Politely QUITs idle connections (for draining on TERM).
  void close_idle();
  // The same for the idle connections whose key starts with key_prefix: a mailbox whose settings
  // changed, or that was paused, disabled or removed, keeps none open.
  void close_idle(std::string_view key_prefix);
  // While held no new message transaction starts: submitted messages wait in the queue and idle
  // connections stay idle (their idle timeout still runs); transactions already under way
  // finish. The owner holds the pool while an outcome could not be recorded (Redis refusing
  // writes). Released, the waiting messages go at once.
  void hold(bool on);
  bool held() const { return held_; }
  // A reload's new limits. A raised limit is used at once by queued messages; sessions beyond a
  // lowered one are not cut, they end with their current message or their idle time.
  void reconfigure(PoolConfig cfg);

  size_t open_sessions() const { return sessions_.size(); }
  size_t idle_sessions() const;
  size_t queued() const { return queued_; }
  const PoolConfig& config() const { return cfg_; }

 private:
  struct Pending {
    Route route;
    Envelope env;
    Session::Done done;
    bool retried = false;
  };
  void open(Pending p);
  void send_on(Session* s, Pending p);
  void on_idle(Session* s);
  void on_closed(Session* s);
  void pump();
  void set_config(PoolConfig cfg);
  Session::Done wrap(Pending& p, bool reused);
  bool others_waiting(const std::string& key) const;
  size_t key_open(const std::string& key) const;

  uv_loop_t* loop_;
  PoolConfig cfg_;
  std::unordered_map<Session*, std::string> sessions_;            // open, with their key
  std::unordered_map<std::string, size_t> per_key_;               // open connections by key
  std::unordered_map<std::string, std::vector<Session*>> idle_;   // by key, most recent last
  std::unordered_map<std::string, std::deque<Pending>> waiting_;  // by key
  std::deque<std::string> turn_;                                  // keys with waiting messages, round-robin
  size_t queued_ = 0;
  bool shut_ = false;
  bool held_ = false;
};

}  // namespace deliverd::smtp
