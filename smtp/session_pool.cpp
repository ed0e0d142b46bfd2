#include "smtp/session_pool.h"

#include <algorithm>

#include "core/metrics.h"

namespace deliverd::smtp {
namespace {

struct PoolMetrics {
  core::Gauge& open;
  core::Gauge& idle;
  core::Gauge& queued;
  core::Counter& refused;
};

PoolMetrics& metrics() {
  auto& reg = core::Registry::global();
  static PoolMetrics m{
      reg.gauge("deliverd_smtp_pool_sessions", "SMTP connections held by the session pool").get(),
      reg.gauge("deliverd_smtp_pool_idle_sessions", "Idle SMTP connections waiting for a next message").get(),
      reg.gauge("deliverd_smtp_pool_queued", "Messages waiting for a free SMTP connection slot").get(),
      reg.counter("deliverd_smtp_pool_refused_total", "Messages refused because the pool queue was full").get(),
  };
  return m;
}

core::Outcome deferred(core::Reason reason, std::string detail) {
  core::Outcome o;
  o.status = core::Status::Deferred;
  o.phase = core::Phase::Pool;
  o.reason = reason;
  o.detail = std::move(detail);
  return o;
}

// A reused connection that turns out dead at RSET never saw the message: try a fresh one.
bool stale_connection(const core::Outcome& o) {
  using core::Reason;
  return o.phase == core::Phase::Rset && o.reply.code == 0 &&
         (o.reason == Reason::ConnectionClosed || o.reason == Reason::ConnectionReset || o.reason == Reason::IoError);
}

}  // namespace

SessionPool::SessionPool(uv_loop_t* loop, PoolConfig cfg) : loop_(loop) { set_config(cfg); }

void SessionPool::set_config(PoolConfig cfg) {
  cfg_ = cfg;
  if (cfg_.max_sessions == 0) cfg_.max_sessions = 1;
  if (cfg_.max_sessions_per_key == 0) cfg_.max_sessions_per_key = 1;
  if (cfg_.max_messages_per_connection == 0) cfg_.max_messages_per_connection = 1;
}

void SessionPool::reconfigure(PoolConfig cfg) {
  set_config(cfg);
  pump();
}

SessionPool::~SessionPool() { shutdown(); }

size_t SessionPool::idle_sessions() const {
  size_t n = 0;
  for (const auto& [k, v] : idle_) n += v.size();
  return n;
}

bool SessionPool::has_idle(const std::string& key) const {
  auto it = idle_.find(key);
  return it != idle_.end() && !it->second.empty();
}

void SessionPool::submit(Route route, Envelope env, Session::Done done) {
  if (shut_) {
    if (done) done(deferred(core::Reason::ShuttingDown, "the session pool is shutting down"));
    return;
  }
  Pending p{std::move(route), std::move(env), std::move(done)};
  auto it = held_ ? idle_.end() : idle_.find(p.route.key);
  while (it != idle_.end() && !it->second.empty()) {
    Session* s = it->second.back();
    it->second.pop_back();
    metrics().idle.dec();
    if (s->idle()) return send_on(s, std::move(p));  // else it is already QUITting (idle timeout)
  }
  if (p.route.addr.ss_family == AF_UNSPEC) {  // the caller only wanted an open connection
    if (p.done) p.done(deferred(core::Reason::NoIdleConnection, "no idle connection for " + p.route.key));
    return;
  }
  bool key_full = key_open(p.route.key) >= cfg_.max_sessions_per_key;
  if (!held_ && !key_full && sessions_.size() < cfg_.max_sessions) return open(std::move(p));
  if (queued_ >= cfg_.max_queued) {
    metrics().refused.inc();
    if (p.done) p.done(deferred(core::Reason::PoolFull, "too many messages waiting for an SMTP connection"));
    return;
  }
  std::string key = p.route.key;
  auto& q = waiting_[key];
  if (q.empty()) turn_.push_back(key);
  q.push_back(std::move(p));
  ++queued_;
  metrics().queued.inc();
  if (key_full || held_) return;  // this key waits for one of its own connections (or the hold)
  // Every slot is taken; an idle connection of another key gives its slot up.
  for (auto& [k, list] : idle_) {
    if (!list.empty()) {
      Session* s = list.back();
      list.pop_back();
      metrics().idle.dec();
      s->quit();
      break;
    }
  }
}

Session::Done SessionPool::wrap(Pending& p, bool reused) {
  // The route and envelope are kept only where a retry on a fresh connection may need them.
  if (reused && !p.retried) {
    auto keep = std::make_shared<Pending>(Pending{p.route, p.env, nullptr, true});
    auto done = std::make_shared<Session::Done>(p.done);
    return [this, keep, done](const core::Outcome& o) {
      if (stale_connection(o) && !shut_) {
        keep->done = std::move(*done);
        Pending again = std::move(*keep);
        // Leave the dying session's call stack before opening a new connection.
        return submit(std::move(again.route), std::move(again.env), std::move(again.done));
      }
      if (*done) (*done)(o);
    };
  }
  return std::move(p.done);
}

void SessionPool::open(Pending p) {
  SessionConfig cfg = p.route.cfg;
  cfg.timeouts[Phase::Idle] = cfg_.idle_timeout_ms;
  SessionHooks hooks;
  hooks.idle = [this](Session* s) { on_idle(s); };
  hooks.closed = [this](Session* s) { on_closed(s); };
  std::string key = p.route.key;
  Session::Done done = wrap(p, false);
  Session* s = Session::start(loop_, cfg, reinterpret_cast<const sockaddr*>(&p.route.addr), p.route.host,
                              std::move(p.env), std::move(done), std::move(hooks));
  ++per_key_[key];
  sessions_.emplace(s, std::move(key));
  metrics().open.inc();
}

void SessionPool::send_on(Session* s, Pending p) {
  Session::Done done = wrap(p, true);
  s->send_next(std::move(p.env), std::move(done));
}

size_t SessionPool::key_open(const std::string& key) const {
  auto it = per_key_.find(key);
  return it == per_key_.end() ? 0 : it->second;
}

// Keys other than `key` with messages waiting that a freed slot could serve.
bool SessionPool::others_waiting(const std::string& key) const {
  for (const auto& k : turn_)
    if (k != key && key_open(k) < cfg_.max_sessions_per_key) return true;
  return false;
}

void SessionPool::on_idle(Session* s) {
  auto it = sessions_.find(s);
  if (it == sessions_.end()) return;
  const std::string key = it->second;
  if (shut_ || s->messages() >= cfg_.max_messages_per_connection) return s->quit();
  auto w = held_ ? waiting_.end() : waiting_.find(key);
  if (w != waiting_.end() && !w->second.empty()) {
    // Fairness: a key that has its own connection still takes its turn when others are waiting.
    if (!others_waiting(key) || turn_.front() == key) {
      Pending p = std::move(w->second.front());
      w->second.pop_front();
      --queued_;
      metrics().queued.dec();
      if (auto t = std::find(turn_.begin(), turn_.end(), key); t != turn_.end()) turn_.erase(t);
      if (!w->second.empty())
        turn_.push_back(key);
      else
        waiting_.erase(w);
      return send_on(s, std::move(p));
    }
  }
  if (others_waiting(key) && sessions_.size() >= cfg_.max_sessions) return s->quit();  // give the slot up
  idle_[key].push_back(s);
  metrics().idle.inc();
}

void SessionPool::on_closed(Session* s) {
  auto it = sessions_.find(s);
  if (it == sessions_.end()) return;
  auto idle = idle_.find(it->second);
  if (idle != idle_.end()) {
    auto pos = std::find(idle->second.begin(), idle->second.end(), s);
    if (pos != idle->second.end()) {
      idle->second.erase(pos);
      metrics().idle.dec();
    }
    if (idle->second.empty()) idle_.erase(idle);
  }
  if (auto k = per_key_.find(it->second); k != per_key_.end() && --k->second == 0) per_key_.erase(k);
  sessions_.erase(it);
  metrics().open.dec();
  pump();
}

void SessionPool::pump() {
  // Each key gets one turn per round; keys at their own cap wait for their connections to free up.
  size_t skipped = 0;
  while (!shut_ && !held_ && sessions_.size() < cfg_.max_sessions && !turn_.empty() && skipped < turn_.size()) {
    std::string key = turn_.front();
    turn_.pop_front();
    auto w = waiting_.find(key);
    if (w == waiting_.end() || w->second.empty()) continue;
    if (key_open(key) >= cfg_.max_sessions_per_key) {
      turn_.push_back(key);
      ++skipped;
      continue;
    }
    skipped = 0;
    Pending p = std::move(w->second.front());
    w->second.pop_front();
    --queued_;
    metrics().queued.dec();
    if (!w->second.empty())
      turn_.push_back(key);
    else
      waiting_.erase(w);
    open(std::move(p));
  }
}

void SessionPool::hold(bool on) {
  if (held_ == on) return;
  held_ = on;
  if (on || shut_) return;
  // Idle connections first take what waits for their key, then free slots open new ones.
  std::vector<Session*> idle;
  for (auto& [k, list] : idle_) idle.insert(idle.end(), list.begin(), list.end());
  idle_.clear();
  metrics().idle.dec(static_cast<double>(idle.size()));
  for (Session* s : idle)
    if (sessions_.count(s) && s->idle()) on_idle(s);
  pump();
}

void SessionPool::close_idle() {
  std::vector<Session*> all;
  for (auto& [k, list] : idle_) all.insert(all.end(), list.begin(), list.end());
  metrics().idle.dec(static_cast<double>(all.size()));
  idle_.clear();
  for (Session* s : all) s->quit();
}

void SessionPool::close_idle(std::string_view key_prefix) {
  std::vector<Session*> closing;
  for (auto it = idle_.begin(); it != idle_.end();) {
    if (it->first.compare(0, key_prefix.size(), key_prefix) != 0) {
      ++it;
      continue;
    }
    closing.insert(closing.end(), it->second.begin(), it->second.end());
    it = idle_.erase(it);
  }
  metrics().idle.dec(static_cast<double>(closing.size()));
  for (Session* s : closing) s->quit();
}

void SessionPool::shutdown() {
  if (shut_) return;
  shut_ = true;
  auto waiting = std::move(waiting_);
  waiting_.clear();
  turn_.clear();
  metrics().queued.dec(static_cast<double>(queued_));
  queued_ = 0;
  for (auto& [k, q] : waiting)
    for (auto& p : q)
      if (p.done) p.done(deferred(core::Reason::ShuttingDown, "the session pool is shutting down"));
  std::vector<Session*> all;
  for (auto& [s, k] : sessions_) all.push_back(s);
  for (Session* s : all)
    if (sessions_.count(s)) s->abort("shutting down");
}

}  // namespace deliverd::smtp
