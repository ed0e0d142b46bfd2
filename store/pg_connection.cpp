#include "store/pg_connection.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <utility>

#include "core/hex.h"

namespace deliverd::store {

struct PgConnection::PollBox {
  uv_poll_t poll{};
  PgConnection* owner = nullptr;
};

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

PgResult copy_result(const PGresult* r) {
  PgResult out;
  ExecStatusType st = PQresultStatus(r);
  out.ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
  if (!out.ok) {
    out.error = trim(PQresultErrorMessage(r));
    if (out.error.empty()) out.error = PQresStatus(st);
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state) out.sqlstate = state;
    return out;
  }
  int ncols = PQnfields(r);
  int nrows = PQntuples(r);
  out.columns.reserve(static_cast<size_t>(ncols));
  for (int c = 0; c < ncols; ++c) out.columns.emplace_back(PQfname(r, c));
  out.rows.reserve(static_cast<size_t>(nrows));
  for (int i = 0; i < nrows; ++i) {
    auto& row = out.rows.emplace_back();
    row.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      if (PQgetisnull(r, i, c))
        row.emplace_back(std::nullopt);
      else
        row.emplace_back(std::string(PQgetvalue(r, i, c), static_cast<size_t>(PQgetlength(r, i, c))));
    }
  }
  const char* affected = PQcmdTuples(const_cast<PGresult*>(r));
  if (affected && *affected) out.affected = std::strtol(affected, nullptr, 10);
  return out;
}

PgResult error_result(std::string message) {
  PgResult r;
  r.error = std::move(message);
  return r;
}

}  // namespace

int PgResult::column(std::string_view name) const {
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return static_cast<int>(i);
  return -1;
}

PgConnection* PgConnection::create(uv_loop_t* loop, std::string conninfo, PgConnectionOptions options) {
  return new PgConnection(loop, std::move(conninfo), options);
}

PgConnection::PgConnection(uv_loop_t* loop, std::string conninfo, PgConnectionOptions options)
    : loop_(loop),
      conninfo_(std::move(conninfo)),
      options_(options),
      connect_timer_(loop),
      query_timer_(loop) {
  uv_timer_init(loop, &defer_timer_);
  defer_timer_.data = this;
  ++open_handles_;
}

PgConnection::~PgConnection() {
  if (conn_) PQfinish(conn_);
}

std::string PgConnection::conn_error() const {
  std::string e = conn_ ? trim(PQerrorMessage(conn_)) : std::string();
  return e.empty() ? "connection failed" : e;
}

void PgConnection::connect(std::function<void(bool, const std::string&)> cb) {
  if (state_ == State::Closed) return;
  if (state_ == State::Ready) {
    defer([cb = std::move(cb)] { cb(true, {}); });
    return;
  }
  connect_cbs_.push_back(std::move(cb));
  if (state_ == State::Idle) {
    state_ = State::Connecting;
    // Deferred so that even an immediate failure reaches the caller on a later loop turn.
    defer([this] { start_connect(); });
  }
}

void PgConnection::query(std::string sql, std::vector<std::optional<std::string>> params,
                         std::function<void(const PgResult&)> cb) {
  enqueue(Pending{std::move(sql), std::move(params), std::move(cb), std::nullopt});
}

void PgConnection::copy_in(std::string sql, std::string data, std::function<void(const PgResult&)> cb) {
  enqueue(Pending{std::move(sql), {}, std::move(cb), std::move(data)});
}

void PgConnection::enqueue(Pending p) {
  if (state_ == State::Closed) return;
  if (queue_.size() >= options_.max_queued) {
    defer([cb = std::move(p.cb)] { cb(error_result("query queue full")); });
    return;
  }
  queue_.push_back(std::move(p));
  if (state_ == State::Idle) {
    state_ = State::Connecting;
    defer([this] { start_connect(); });
  } else if (state_ == State::Ready && !in_flight_) {
    defer([this] { send_next(); });
  }
}

namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

std::string join_commas(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out.append(i ? "," : "").append(v[i]);
  return out;
}

// A host entry libpq would look up: not empty, not a socket directory, not already numeric.
bool needs_lookup(const std::string& host) {
  if (host.empty() || host[0] == '/' || host[0] == '@') return false;
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) != 1 && inet_pton(AF_INET6, host.c_str(), buf) != 1;
}

// The connection string's settings (either form libpq takes), or an error naming what is wrong.
std::optional<std::vector<std::pair<std::string, std::string>>> parse_conninfo(const std::string& conninfo,
                                                                               std::string& error) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (!opts) {
    error = err ? trim(err) : "cannot parse the connection string";
    PQfreemem(err);
    return std::nullopt;
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (PQconninfoOption* o = opts; o->keyword; ++o)
    if (o->val) out.emplace_back(o->keyword, o->val);
  PQconninfoFree(opts);
  return out;
}

std::string* setting(std::vector<std::pair<std::string, std::string>>& params, std::string_view key) {
  for (auto& [k, v] : params)
    if (k == key) return &v;
  return nullptr;
}

}  // namespace

void PgConnection::start_connect() {
  if (state_ != State::Connecting || conn_ || resolving_) return;
  const uint64_t attempt = ++connect_attempt_;
  int ms = options_.connect_timeout_ms;
  // One deadline for the lookups and the connection together.
  connect_timer_->start(static_cast<uint64_t>(ms),
                        [this, ms] { connect_failed("connect timeout after " + std::to_string(ms) + " ms"); });
  std::string error;
  auto params = parse_conninfo(conninfo_, error);
  if (!params) return connect_failed(error);
  const std::string* host = setting(*params, "host");
  const std::string* hostaddr = setting(*params, "hostaddr");
  std::vector<std::string> hosts = host ? split_commas(*host) : std::vector<std::string>{};
  const bool any_name = std::any_of(hosts.begin(), hosts.end(), needs_lookup);
  if (!options_.resolve_host || !any_name || (hostaddr && !hostaddr->empty())) return open_connection(*params);

  // Each name becomes one host entry per address, with hostaddr set, so libpq connects without
  // a lookup of its own and still checks the server's certificate against the name.
  struct Lookup {
    std::vector<std::pair<std::string, std::string>> params;
    std::vector<std::string> hosts;
    std::vector<std::vector<std::string>> addrs;
    std::vector<std::string> errors;
    size_t waiting = 0;
  };
  auto lk = std::make_shared<Lookup>();
  lk->params = std::move(*params);
  lk->hosts = hosts;
  lk->addrs.resize(hosts.size());
  lk->waiting = hosts.size();
  resolving_ = true;
  auto finish = [this, lk] {
    resolving_ = false;
    std::vector<std::string> host_list, addr_list, port_list;
    const std::string* port = setting(lk->params, "port");
    std::vector<std::string> ports = port ? split_commas(*port) : std::vector<std::string>{};
    const bool port_per_host = ports.size() == lk->hosts.size() && ports.size() > 1;
    for (size_t i = 0; i < lk->hosts.size(); ++i) {
      // A socket directory or a literal keeps its entry; a name that resolved to nothing has none.
      std::vector<std::string> addrs = needs_lookup(lk->hosts[i]) ? lk->addrs[i] : std::vector<std::string>{""};
      for (const auto& a : addrs) {
        host_list.push_back(lk->hosts[i]);
        addr_list.push_back(a);
        if (port_per_host) port_list.push_back(ports[i]);
      }
    }
    if (host_list.empty()) {
      std::string why;
      for (const auto& e : lk->errors) why.append(why.empty() ? "" : "; ").append(e);
      return connect_failed(why);
    }
    std::vector<std::pair<std::string, std::string>> params = lk->params;
    *setting(params, "host") = join_commas(host_list);
    if (std::string* a = setting(params, "hostaddr")) *a = join_commas(addr_list);
    else params.emplace_back("hostaddr", join_commas(addr_list));
    if (port_per_host) *setting(params, "port") = join_commas(port_list);
    open_connection(params);
  };
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (!needs_lookup(hosts[i])) {
      if (--lk->waiting == 0) defer(finish);
      continue;
    }
    options_.resolve_host(hosts[i], [this, alive = alive_.token(), attempt, lk, i, finish](
                                        std::vector<std::string> ips, std::string err) {
      if (!alive || attempt != connect_attempt_ || !resolving_) return;
      if (ips.empty())
        lk->errors.push_back("cannot resolve PostgreSQL host \"" + lk->hosts[i] + "\": " + (err.empty() ? "no address" : err));
      lk->addrs[i] = std::move(ips);
      if (--lk->waiting == 0) finish();
    });
  }
}

void PgConnection::open_connection(const std::vector<std::pair<std::string, std::string>>& params) {
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : params) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), 0);
  if (!conn_) return connect_failed("out of memory");
  if (PQstatus(conn_) == CONNECTION_BAD) return connect_failed(conn_error());
  // libpq: before the first PQconnectPoll, behave as if it had answered PGRES_POLLING_WRITING.
  watch(UV_WRITABLE);
}

void PgConnection::continue_connect() {
  switch (PQconnectPoll(conn_)) {
    case PGRES_POLLING_READING: return watch(UV_READABLE);
    case PGRES_POLLING_WRITING: return watch(UV_WRITABLE);
    case PGRES_POLLING_OK: return on_connected();
    default: return connect_failed(conn_error());
  }
}

void PgConnection::on_connected() {
  connect_timer_->stop();
  if (PQsetnonblocking(conn_, 1) != 0) return connect_failed(conn_error());
  state_ = State::Ready;
  watch(UV_READABLE);
  if (state_ != State::Ready) return;
  auto cbs = std::move(connect_cbs_);
  connect_cbs_.clear();
  for (auto& cb : cbs) {
    cb(true, {});
    if (state_ != State::Ready) return;
  }
  send_next();
}

void PgConnection::connect_failed(const std::string& error) {
  drop_connection();
  auto cbs = std::move(connect_cbs_);
  connect_cbs_.clear();
  auto queued = std::move(queue_);
  queue_.clear();
  for (auto& cb : cbs) {
    cb(false, error);
    if (state_ == State::Closed) return;
  }
  for (auto& p : queued) {
    p.cb(error_result("connect failed: " + error));
    if (state_ == State::Closed) return;
  }
}

void PgConnection::watch(int events) {
  int fd = PQsocket(conn_);
  if (fd < 0) {
    if (state_ == State::Connecting) return connect_failed("no socket");
    return connection_lost("no socket");
  }
  // libpq may open a new socket mid-connect (next address or host), so follow it.
  if (poll_ && poll_fd_ != fd) unwatch();
  if (!poll_) {
    auto* box = new PollBox;
    box->owner = this;
    box->poll.data = box;
    int rc = uv_poll_init(loop_, &box->poll, fd);
    if (rc != 0) {
      delete box;
      std::string e = std::string("uv_poll_init: ") + uv_strerror(rc);
      if (state_ == State::Connecting) return connect_failed(e);
      return connection_lost(e);
    }
    ++open_handles_;
    poll_ = box;
    poll_fd_ = fd;
    poll_events_ = 0;
  }
  if (poll_events_ != events) {
    uv_poll_start(&poll_->poll, events, on_poll_cb);
    poll_events_ = events;
  }
}

void PgConnection::unwatch() {
  if (!poll_) return;
  // uv_close stops polling at once (epoll DEL), so PQfinish may close the fd right after.
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_->poll), on_poll_closed);
  poll_ = nullptr;
  poll_fd_ = -1;
  poll_events_ = 0;
}

void PgConnection::on_poll_cb(uv_poll_t* h, int status, int events) {
  auto* box = static_cast<PollBox*>(h->data);
  PgConnection* self = box->owner;
  if (self->poll_ != box) return;
  self->on_socket(status, events);
}

void PgConnection::on_poll_closed(uv_handle_t* h) {
  auto* box = static_cast<PollBox*>(h->data);
  PgConnection* self = box->owner;
  delete box;
  self->release_handle();
}

void PgConnection::release_handle() {
  if (--open_handles_ == 0 && state_ == State::Closed) delete this;
}

void PgConnection::on_socket(int status, int events) {
  if (state_ == State::Connecting) return continue_connect();
  if (state_ != State::Ready) return;
  if (status < 0) return connection_lost(std::string("socket error: ") + uv_strerror(status));
  if (events & UV_WRITABLE) {
    int f = PQflush(conn_);
    if (f < 0) return connection_lost(conn_error());
    if (f == 0) watch(UV_READABLE);
    if (state_ != State::Ready) return;
  }
  if (events & UV_READABLE) read_results();
}

void PgConnection::read_results() {
  if (!PQconsumeInput(conn_)) return connection_lost(conn_error());
  deliver_notifications();
  if (state_ != State::Ready) return;
  if (!in_flight_) {
    if (PQstatus(conn_) == CONNECTION_BAD) connection_lost(conn_error());
    return;
  }
  while (state_ == State::Ready && in_flight_ && !PQisBusy(conn_)) {
    PGresult* r = PQgetResult(conn_);
    if (!r) {
      PgResult done = have_partial_ ? std::move(partial_) : error_result("no result");
      have_partial_ = false;
      finish_query(std::move(done));
      continue;
    }
    if (PQresultStatus(r) == PGRES_COPY_IN) {
      PQclear(r);
      if (!send_copy_data()) return;
      continue;
    }
    PgResult copy = copy_result(r);
    PQclear(r);
    // A statement yields one result; keep the first error if several arrive.
    if (!have_partial_ || partial_.ok) {
      partial_ = std::move(copy);
      have_partial_ = true;
    }
  }
  // PQgetResult may have parsed notifications that arrived behind the query's result.
  if (state_ == State::Ready) deliver_notifications();
}

bool PgConnection::send_copy_data() {
  Pending& p = queue_.front();
  // A plain query() that turned out to be a COPY FROM STDIN has no rows to give: end it with an
  // error rather than leave the connection waiting in the copy state.
  const char* refusal = p.copy_data ? nullptr : "COPY FROM STDIN needs PgConnection::copy_in";
  if (p.copy_data && !p.copy_data->empty() &&
      PQputCopyData(conn_, p.copy_data->data(), static_cast<int>(p.copy_data->size())) != 1) {
    connection_lost(conn_error());
    return false;
  }
  if (PQputCopyEnd(conn_, refusal) != 1) {
    connection_lost(conn_error());
    return false;
  }
  p.copy_data.reset();  // sent: the memory is libpq's now
  int f = PQflush(conn_);
  if (f < 0) {
    connection_lost(conn_error());
    return false;
  }
  watch(f == 1 ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
  return state_ == State::Ready;
}

void PgConnection::deliver_notifications() {
  while (state_ == State::Ready && conn_) {
    PGnotify* n = PQnotifies(conn_);
    if (!n) break;
    std::string channel = n->relname ? n->relname : "";
    std::string payload = n->extra ? n->extra : "";
    PQfreemem(n);
    if (on_notify_) on_notify_(channel, payload);
  }
}

void PgConnection::send_next() {
  if (state_ != State::Ready || in_flight_ || queue_.empty()) return;
  Pending& p = queue_.front();
  std::vector<const char*> values;
  values.reserve(p.params.size());
  for (const auto& v : p.params) values.push_back(v ? v->c_str() : nullptr);
  in_flight_ = true;
  have_partial_ = false;
  if (!PQsendQueryParams(conn_, p.sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                         nullptr, 0)) {
    if (PQstatus(conn_) == CONNECTION_BAD) return connection_lost(conn_error());
    return finish_query(error_result(conn_error()));
  }
  int ms = options_.query_timeout_ms;
  query_timer_->start(static_cast<uint64_t>(ms),
                      [this, ms] { connection_lost("query timeout after " + std::to_string(ms) + " ms"); });
  int f = PQflush(conn_);
  if (f < 0) return connection_lost(conn_error());
  watch(f == 1 ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
}

void PgConnection::finish_query(PgResult result) {
  query_timer_->stop();
  in_flight_ = false;
  if (queue_.empty()) return;
  Pending p = std::move(queue_.front());
  queue_.pop_front();
  p.cb(result);
  if (state_ == State::Ready) {
    send_next();
  } else if (state_ == State::Idle && !queue_.empty()) {
    state_ = State::Connecting;
    defer([this] { start_connect(); });
  }
}

void PgConnection::connection_lost(const std::string& error) {
  // A timed-out query is abandoned with its connection: PQcancel would block the loop.
  bool had_query = in_flight_;
  drop_connection();
  if (on_lost_) defer([this, error] { if (on_lost_) on_lost_(error); });
  if (had_query) finish_query(error_result(error));
}

void PgConnection::drop_connection() {
  unwatch();
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
  resolving_ = false;
  if (connect_timer_) connect_timer_->stop();
  if (query_timer_) query_timer_->stop();
  in_flight_ = false;
  have_partial_ = false;
  if (state_ != State::Closed) state_ = State::Idle;
}

void PgConnection::defer(std::function<void()> fn) {
  deferred_.push_back(std::move(fn));
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&defer_timer_))) uv_timer_start(&defer_timer_, on_defer_cb, 0, 0);
}

void PgConnection::on_defer_cb(uv_timer_t* t) { static_cast<PgConnection*>(t->data)->run_deferred(); }

void PgConnection::run_deferred() {
  auto fns = std::move(deferred_);
  deferred_.clear();
  for (auto& fn : fns) {
    if (state_ == State::Closed) return;
    fn();
  }
}

void PgConnection::close() {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  alive_.end();
  unwatch();
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
  connect_timer_.reset();
  query_timer_.reset();
  queue_.clear();
  connect_cbs_.clear();
  deferred_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&defer_timer_), on_defer_closed);
}

void PgConnection::on_defer_closed(uv_handle_t* h) { static_cast<PgConnection*>(h->data)->release_handle(); }

std::string encode_bytea(std::string_view bytes) { return "\\x" + core::to_hex(bytes); }

std::optional<std::string> decode_bytea(std::string_view text) {
  if (text.size() < 2 || text[0] != '\\' || text[1] != 'x') return std::nullopt;
  return core::from_hex(text.substr(2));
}

}  // namespace deliverd::store
