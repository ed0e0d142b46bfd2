#include "queue/redis_client.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

#include "core/log.h"
#include "core/metrics.h"
#include "core/percent.h"

namespace deliverd::queue {
namespace {

// A password file is one secret, not a data set; anything bigger is a wrong path.
constexpr size_t kMaxPasswordFileBytes = 64 * 1024;

core::Family<core::Gauge>& connected_gauge() {
  static auto& f = core::Registry::global().gauge(
      "deliverd_redis_connected", "1 while the named Redis connection is up (handshake done), 0 while it is down",
      {"conn"});
  return f;
}

core::Family<core::Counter>& reconnects_counter() {
  static auto& f = core::Registry::global().counter(
      "deliverd_redis_reconnects_total", "Redis connections the client re-established by itself after a failure",
      {"conn"});
  return f;
}

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::String;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::Status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::Error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::Integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::Array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::Nil;
      break;
  }
  return out;
}

RedisReply connection_error(const std::string& reason) {
  RedisReply r;
  r.type = RedisReply::Type::Error;
  r.str = "ERR connection: " + reason;
  r.connection_error = true;
  return r;
}

bool parse_uint(std::string_view s, long max, long& out) {
  if (s.empty() || s.size() > 9) return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  return out <= max;
}

}  // namespace

std::string_view write_refusal(const RedisReply& reply) {
  if (!reply.is_error() || reply.connection_error) return {};
  const std::string_view code = reply.error_code();
  if (code == "OOM") return "oom";
  if (code == "READONLY") return "readonly";
  if (code == "MISCONF") return "misconf";
  if (code == "NOREPLICAS") return "noreplicas";
  return {};
}

std::string_view RedisReply::error_code() const {
  if (type != Type::Error) return {};
  std::string_view s = str;
  return s.substr(0, s.find(' '));
}

core::Result<RedisConfig, std::string> parse_redis_url(std::string_view url) {
  RedisConfig cfg;
  std::string_view rest;
  if (url.rfind("redis://", 0) == 0) {
    rest = url.substr(8);
  } else if (url.rfind("rediss://", 0) == 0) {
    rest = url.substr(9);
    cfg.tls = true;
  } else {
    return core::Err{std::string("redis URL must start with redis:// or rediss://")};
  }
  if (rest.find_first_of("?#") != std::string_view::npos)
    return core::Err{std::string("redis URL: query and fragment are not supported")};
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);

  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const size_t colon = userinfo.find(':');
    // Passwords are bytes to Redis; only the URL's own syntax is decoded away.
    constexpr core::PercentDecoding kBytes{.allow_nul = true};
    auto user = core::percent_decode(userinfo.substr(0, colon), kBytes);
    if (!user) return core::Err{std::string("redis URL: bad percent-encoding in user")};
    cfg.username = std::move(*user);
    if (colon != std::string_view::npos) {
      auto password = core::percent_decode(userinfo.substr(colon + 1), kBytes);
      if (!password) return core::Err{std::string("redis URL: bad percent-encoding in password")};
      cfg.password = std::move(*password);
    }
  }

  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return core::Err{std::string("redis URL: unterminated [IPv6] host")};
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return core::Err{std::string("redis URL: junk after [IPv6] host")};
      port = after.substr(1);
      if (port.empty()) return core::Err{std::string("redis URL: empty port")};
    }
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (port.empty()) return core::Err{std::string("redis URL: empty port")};
    }
  }
  if (!host.empty()) cfg.host.assign(host);
  if (!port.empty()) {
    long p = 0;
    if (!parse_uint(port, 65535, p) || p == 0) return core::Err{"redis URL: bad port '" + std::string(port) + "'"};
    cfg.port = static_cast<int>(p);
  }
  if (!path.empty()) {
    long db = 0;
    if (!parse_uint(path, 1 << 20, db)) return core::Err{"redis URL: bad database '" + std::string(path) + "'"};
    cfg.db = static_cast<int>(db);
  }
  return cfg;
}

core::Result<SentinelAddress, std::string> parse_sentinel_address(std::string_view text) {
  SentinelAddress a;
  std::string_view host = text, port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return core::Err{"sentinel '" + std::string(text) + "': expected [IPv6]:port"};
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return core::Err{"sentinel '" + std::string(text) + "': expected host:port"};
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  long p = 0;
  if (!parse_uint(port, 65535, p) || p == 0) return core::Err{"sentinel '" + std::string(text) + "': bad port"};
  a.host.assign(host);
  a.port = static_cast<int>(p);
  sockaddr_storage ss{};
  const std::string ip = a.host == "localhost" ? "127.0.0.1" : a.host;
  if (uv_ip4_addr(ip.c_str(), a.port, reinterpret_cast<sockaddr_in*>(&ss)) != 0 &&
      uv_ip6_addr(ip.c_str(), a.port, reinterpret_cast<sockaddr_in6*>(&ss)) != 0)
    return core::Err{"sentinel '" + std::string(text) + "': the host must be an IP address or localhost"};
  return a;
}

core::Result<core::Ok, std::string> apply_password_file(RedisConfig& cfg, const std::string& path) {
  auto pw = read_secret_file(path, "redis password_file");
  if (!pw) return core::Err{pw.error()};
  cfg.password = std::move(pw).value();
  return core::Ok{};
}

core::Result<std::string, std::string> read_secret_file(const std::string& path, const std::string& label) {
  const std::string what = label + " " + path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return core::Err{what + ": cannot open: " + std::strerror(errno)};
  std::string data;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return core::Err{what + ": cannot read: " + std::strerror(e)};
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxPasswordFileBytes) {
      ::close(fd);
      explicit_bzero(data.data(), data.size());
      return core::Err{what + ": larger than " + std::to_string(kMaxPasswordFileBytes) + " bytes"};
    }
  }
  ::close(fd);
  explicit_bzero(buf, sizeof buf);
  while (!data.empty() && (data.back() == '\n' || data.back() == '\r')) data.pop_back();
  if (data.empty()) return core::Err{what + " is empty"};
  return data;
}

int reconnect_delay_ms(const RedisConfig& cfg, int attempt, double jitter01) {
  const double lo = std::max(1, cfg.reconnect_min_ms);
  const double hi = std::max(lo, static_cast<double>(cfg.reconnect_max_ms));
  double base = lo;
  for (int i = 1; i < attempt && base < hi; ++i) base *= 2;
  base = std::min(base, hi);
  // Jitter spreads the reconnects of a fleet that lost the same Redis at the same moment.
  const double j = std::clamp(jitter01, 0.0, 1.0);
  return std::max(1, static_cast<int>(std::lround(base * (0.8 + 0.4 * j))));
}

RedisClient* RedisClient::create(uv_loop_t* loop, const RedisConfig& cfg) { return new RedisClient(loop, cfg); }

RedisClient::RedisClient(uv_loop_t* loop, const RedisConfig& cfg)
    : loop_(loop), cfg_(cfg), rng_(static_cast<unsigned>(uv_hrtime() ^ reinterpret_cast<uintptr_t>(this))) {
  reader_ = redisReaderCreate();
  uv_timer_init(loop, &timeout_timer_);
  uv_timer_init(loop, &defer_timer_);
  uv_timer_init(loop, &reconnect_timer_);
  timeout_timer_.data = this;
  defer_timer_.data = this;
  reconnect_timer_.data = this;
  uv_check_init(loop, &flush_check_);
  uv_prepare_init(loop, &flush_prepare_);
  flush_check_.data = flush_prepare_.data = this;
  uv_check_start(&flush_check_, on_flush);
  uv_prepare_start(&flush_prepare_, on_flush_before_poll);
  // They only flush: they must not keep a loop with nothing else to do running.
  uv_unref(reinterpret_cast<uv_handle_t*>(&flush_check_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&flush_prepare_));
  // Both series exist (at 0) from the start, so a scrape shows a connection that never came up.
  connected_gauge().with({cfg_.name});
  reconnects_counter().with({cfg_.name});
}

RedisClient::~RedisClient() {
  if (reader_) redisReaderFree(reader_);
}

void RedisClient::connect(ConnectCallback cb) {
  auto defer_failure = [this](ConnectCallback cb, const std::string& reason) {
    defer([cb = std::move(cb), reason](const RedisReply&) { cb(false, reason); }, connection_error(reason));
  };
  if (state_ != State::Idle) return defer_failure(std::move(cb), "connect() called twice");
  // Configuration errors: retrying cannot help, so the client is dead even with reconnect.
  auto config_failure = [&](const std::string& reason) {
    state_ = State::Failed;
    core::log_warn("redis_disconnected", {{"conn", cfg_.name}, {"reason", reason}});
    defer_failure(std::move(cb), reason);
    for (auto& p : waiting_) defer(std::move(p.cb), connection_error(reason));
    waiting_.clear();
  };
  if (cfg_.sentinels.empty()) {
    const std::string host = cfg_.host == "localhost" ? "127.0.0.1" : cfg_.host;
    if (uv_ip4_addr(host.c_str(), cfg_.port, reinterpret_cast<sockaddr_in*>(&addr_)) != 0 &&
        uv_ip6_addr(host.c_str(), cfg_.port, reinterpret_cast<sockaddr_in6*>(&addr_)) != 0)
      return config_failure("redis host must be an IP address or localhost, got '" + cfg_.host + "'");
    target_host_ = cfg_.host;
    target_port_ = cfg_.port;
  } else if (cfg_.sentinel_master.empty()) {
    return config_failure("redis sentinels are set but sentinel_master (the primary's name) is not");
  }
  if (cfg_.tls) {
    tls_ctx_ = cfg_.tls_context;
    if (!tls_ctx_) {
      core::TlsClientOptions opts;
      opts.ca_file = cfg_.ca_file;
      auto ctx = core::TlsContext::client(opts);
      if (!ctx) return config_failure("redis TLS: " + ctx.error());
      tls_ctx_ = std::move(*ctx);
    }
  }
  connect_cb_ = std::move(cb);
  start_attempt();
}

void RedisClient::start_attempt() {
  if (!cfg_.sentinels.empty()) return discover(0, {});
  connect_to_target();
}

// Asks one sentinel after the other for the primary's address; the first answer wins.
void RedisClient::discover(size_t tried, std::string errors) {
  state_ = State::Discovering;
  const size_t n = cfg_.sentinels.size();
  if (tried >= n) return fail("no sentinel gave the primary of '" + cfg_.sentinel_master + "': " + errors);
  const size_t index = (sentinel_first_ + tried) % n;
  const SentinelAddress& s = cfg_.sentinels[index];
  RedisConfig sc;
  sc.host = s.host;
  sc.port = s.port;
  sc.tls = cfg_.tls;
  sc.ca_file = cfg_.ca_file;
  sc.tls_context = tls_ctx_;
  sc.username = cfg_.sentinel_username;
  sc.password = cfg_.sentinel_password;
  sc.name = "sentinel";
  sc.connect_timeout_ms = cfg_.connect_timeout_ms;
  sc.command_timeout_ms = cfg_.connect_timeout_ms;
  RedisClient* q = RedisClient::create(loop_, sc);
  sentinel_query_ = q;
  const std::string where = s.host + ":" + std::to_string(s.port);
  auto next = [this, q, tried, errors, where](const std::string& why) {
    if (sentinel_query_ != q) return;  // answered already, or given up
    sentinel_query_ = nullptr;
    q->close();
    discover(tried + 1, errors + (errors.empty() ? "" : "; ") + where + ": " + why);
  };
  q->connect([next](bool ok, const std::string& error) {
    if (!ok) next(error);
  });
  q->command({"SENTINEL", "get-master-addr-by-name", cfg_.sentinel_master},
             [this, q, index, where, next](const RedisReply& r) {
               if (sentinel_query_ != q) return;
               if (r.type != RedisReply::Type::Array || r.elements.size() != 2)
                 return next(r.is_error() ? r.str : std::string("does not know the primary"));
               const std::string ip = r.elements[0].str;
               long port = 0;
               if (!parse_uint(r.elements[1].str, 65535, port) ||
                   (uv_ip4_addr(ip.c_str(), static_cast<int>(port), reinterpret_cast<sockaddr_in*>(&addr_)) != 0 &&
                    uv_ip6_addr(ip.c_str(), static_cast<int>(port), reinterpret_cast<sockaddr_in6*>(&addr_)) != 0))
                 return next("answered '" + ip + ":" + r.elements[1].str + "', not an IP address and port");
               sentinel_query_ = nullptr;
               q->close();
               sentinel_first_ = index;
               const std::string primary = ip + ":" + std::to_string(port);
               if (primary != target_host_ + ":" + std::to_string(target_port_))
                 core::log_info("redis_primary", {{"conn", cfg_.name}, {"primary", primary}, {"sentinel", where},
                                                  {"master", cfg_.sentinel_master}});
               target_host_ = ip;
               target_port_ = static_cast<int>(port);
               connect_to_target();
             });
}

void RedisClient::connect_to_target() {
  state_ = State::Connecting;
  // A reply half-received on the previous connection must not prefix the new one's.
  if (reader_) redisReaderFree(reader_);
  reader_ = redisReaderCreate();
  partial_reply_bytes_ = 0;
  handshake_replies_ = 0;
  stream_ = core::TcpStream::create(loop_, this);
  uv_timer_start(&timeout_timer_, on_timer, static_cast<uint64_t>(cfg_.connect_timeout_ms), 0);
  const int rc = stream_->connect(reinterpret_cast<const sockaddr*>(&addr_));
  if (rc != 0) {
    // Reported on a later iteration, like every other failure, never from inside connect().
    stream_->close();
    stream_ = nullptr;
    uv_timer_stop(&timeout_timer_);
    const std::string reason = std::string("connect failed: ") + uv_strerror(rc);
    defer([this, reason](const RedisReply&) { fail(reason); }, RedisReply{});
  }
}

void RedisClient::on_connected(int status) {
  if (state_ != State::Connecting) return;
  if (status != 0) return fail(std::string("connect failed: ") + uv_strerror(status));
  if (!cfg_.tls) return send_handshake();
  state_ = State::TlsHandshake;
  core::TlsClientParams p;
  p.ctx = tls_ctx_;
  p.server_name = cfg_.tls_server_name.empty() ? target_host_ : cfg_.tls_server_name;
  p.verify = true;  // never off: the password and every job cross this connection
  p.session_key = "redis|" + p.server_name + ":" + std::to_string(target_port_);
  // The outcome arrives through on_tls_handshake(), possibly before this returns.
  if (int rc = stream_->start_tls_client(p); rc != 0 && state_ == State::TlsHandshake)
    fail(std::string("redis TLS: cannot start: ") + uv_strerror(rc));
}

void RedisClient::on_tls_handshake(bool ok, const std::string& error) {
  if (state_ != State::TlsHandshake) return;
  if (!ok) return fail("redis TLS: " + error);
  send_handshake();
}

void RedisClient::send_handshake() {
  state_ = State::Handshake;
  std::vector<std::pair<std::string, std::vector<std::string>>> steps;
  if (!cfg_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!cfg_.username.empty()) auth.push_back(cfg_.username);
    auth.push_back(cfg_.password);
    steps.emplace_back("AUTH", std::move(auth));
  }
  if (cfg_.db != 0) steps.emplace_back("SELECT", std::vector<std::string>{"SELECT", std::to_string(cfg_.db)});
  // What a sentinel named may have been demoted since: only a primary will do.
  if (!cfg_.sentinels.empty()) steps.emplace_back("ROLE", std::vector<std::string>{"ROLE"});
  handshake_replies_ = steps.size();
  if (steps.empty()) return become_ready();
  for (auto& [what, argv] : steps) {
    std::vector<const char*> ptrs;
    std::vector<size_t> lens;
    for (const auto& a : argv) {
      ptrs.push_back(a.data());
      lens.push_back(a.size());
    }
    char* wire = nullptr;
    int n = redisFormatCommandArgv(&wire, static_cast<int>(argv.size()), ptrs.data(), lens.data());
    if (n < 0) return fail("out of memory");
    Pending p;
    p.wire.assign(wire, static_cast<size_t>(n));
    redisFreeCommand(wire);
    p.timeout_ms = cfg_.connect_timeout_ms;
    // The password never reaches the log: only the server's error text is reported.
    p.cb = [this, what = what](const RedisReply& r) {
      if (r.connection_error) return;
      if (r.is_error()) return fail(what + " failed: " + r.str);
      if (what == "ROLE" && (r.type != RedisReply::Type::Array || r.elements.empty() || r.elements[0].str != "master"))
        return fail(target_host_ + ":" + std::to_string(target_port_) + " is not the primary (ROLE " +
                    (r.elements.empty() ? std::string("?") : r.elements[0].str) + "); asking the sentinels again");
      if (--handshake_replies_ == 0) become_ready();
    };
    write_pending(std::move(p));
    if (state_ != State::Handshake) return;
  }
}

void RedisClient::become_ready() {
  state_ = State::Ready;
  failed_on_large_reply_ = false;
  scripts_loaded_.clear();  // a new connection, perhaps to a restarted server
  uv_timer_stop(&timeout_timer_);
  set_connected(true);
  if (in_outage_) {
    in_outage_ = false;
    reconnects_counter().with({cfg_.name}).inc();
    core::log_info("redis_reconnected", {{"conn", cfg_.name},
                                         {"reason", outage_reason_},
                                         {"attempts", std::to_string(attempt_)},
                                         {"tls", cfg_.tls ? "yes" : "no"}});
  } else {
    core::log_info("redis_connected", {{"conn", cfg_.name}, {"tls", cfg_.tls ? "yes" : "no"}});
  }
  attempt_ = 0;
  outage_reason_.clear();
  flush_waiting();
  if (state_ != State::Ready) return;
  arm_timer();
  if (auto cb = std::move(connect_cb_)) {
    connect_cb_ = nullptr;
    cb(true, {});
    if (state_ != State::Ready) return;
  }
  // A copy: the handler may close() this client, which resets on_connect_.
  if (auto handler = on_connect_) handler();
}

void RedisClient::set_connected(bool up) {
  if (up == counted_connected_) return;
  counted_connected_ = up;
  // inc/dec rather than set: two clients sharing a name must not overwrite each other.
  connected_gauge().with({cfg_.name}).inc(up ? 1 : -1);
}

void RedisClient::command(std::vector<std::string> argv, ReplyCallback cb, int timeout_ms) {
  send(argv, std::move(cb), timeout_ms);
}

void RedisClient::eval(const LuaScript& script, std::vector<std::string> args, ReplyCallback cb, int timeout_ms) {
  // SCRIPT LOAD in the same pipeline before this connection's first EVALSHA of a script: the
  // hash is known by the time the EVALSHA runs, so script calls run in the order they were made.
  // NOSCRIPT is then left for a server that forgets scripts mid-connection (SCRIPT FLUSH, a
  // failover behind a proxy), where the re-sent call may run after calls made later.
  if (scripts_loaded_.insert(script.sha1()).second) send({"SCRIPT", "LOAD", script.body()}, nullptr, timeout_ms);
  // Kept until the reply: a NOSCRIPT answer re-sends the same arguments behind the body.
  auto argv = std::make_shared<std::vector<std::string>>();
  argv->reserve(args.size() + 2);
  argv->push_back("EVALSHA");
  argv->push_back(script.sha1());
  for (auto& a : args) argv->push_back(std::move(a));
  send(*argv, [this, argv, &script, cb = std::move(cb), timeout_ms](const RedisReply& r) mutable {
    // The client is alive here: it is the one calling back (close() drops callbacks instead).
    if (r.is_error() && !r.connection_error && r.error_code() == "NOSCRIPT") {
      (*argv)[0] = "EVAL";
      (*argv)[1] = script.body();
      return send(*argv, std::move(cb), timeout_ms);
    }
    if (cb) cb(r);
  }, timeout_ms);
}

void RedisClient::send(const std::vector<std::string>& argv, ReplyCallback cb, int timeout_ms) {
  if (state_ == State::Closed) return;
  if (state_ == State::Failed) return defer(std::move(cb), connection_error("not connected"));
  // Between a failure and the next handshake a reconnecting client answers at once rather than
  // queueing: callers see the outage instead of piling up work behind it.
  if (in_outage_) return defer(std::move(cb), connection_error("not connected (reconnecting)"));
  if (argv.empty()) return defer(std::move(cb), connection_error("empty command"));
  if (pending() >= cfg_.max_pending_commands)
    return defer(std::move(cb), connection_error("too many pending commands"));
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  ptrs.reserve(argv.size());
  lens.reserve(argv.size());
  for (const auto& a : argv) {
    ptrs.push_back(a.data());
    lens.push_back(a.size());
  }
  char* wire = nullptr;
  int n = redisFormatCommandArgv(&wire, static_cast<int>(argv.size()), ptrs.data(), lens.data());
  if (n < 0) return defer(std::move(cb), connection_error("cannot encode command"));
  Pending p;
  p.cb = std::move(cb);
  p.timeout_ms = timeout_ms > 0 ? timeout_ms : cfg_.command_timeout_ms;
  p.wire.assign(wire, static_cast<size_t>(n));
  redisFreeCommand(wire);
  if (state_ == State::Ready)
    write_pending(std::move(p));
  else
    waiting_.push_back(std::move(p));
}

void RedisClient::write_pending(Pending p) {
  if (out_.empty())
    out_ = std::move(p.wire);
  else
    out_ += p.wire;
  p.wire.clear();
  p.deadline = uv_now(loop_) + static_cast<uint64_t>(p.timeout_ms);
  inflight_.push_back(std::move(p));
  if (inflight_.size() == 1 && state_ == State::Ready) arm_timer();
}

void RedisClient::flush_out() {
  if (out_.empty() || !stream_) return;
  int rc = stream_->write(std::exchange(out_, {}));
  if (rc != 0) fail(std::string("write failed: ") + uv_strerror(rc));
}

void RedisClient::on_flush(uv_check_t* h) { static_cast<RedisClient*>(h->data)->flush_out(); }
void RedisClient::on_flush_before_poll(uv_prepare_t* h) { static_cast<RedisClient*>(h->data)->flush_out(); }

void RedisClient::flush_waiting() {
  while (!waiting_.empty() && state_ == State::Ready) {
    Pending p = std::move(waiting_.front());
    waiting_.pop_front();
    write_pending(std::move(p));
  }
}

void RedisClient::on_data(std::string_view bytes) {
  if (state_ != State::Handshake && state_ != State::Ready) return;
  partial_reply_bytes_ += bytes.size();
  if (redisReaderFeed(reader_, bytes.data(), bytes.size()) != REDIS_OK) return fail("reader out of memory");
  for (;;) {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_, &raw) != REDIS_OK)
      return fail(std::string("protocol error: ") + reader_->errstr);
    if (!raw) break;
    RedisReply reply = convert(static_cast<redisReply*>(raw));
    freeReplyObject(raw);
    // What is left in the reader's buffer belongs to replies not yet complete.
    partial_reply_bytes_ = reader_->len - reader_->pos;
    dispatch(reply);
    if (state_ != State::Handshake && state_ != State::Ready) return;
  }
  if (partial_reply_bytes_ > cfg_.max_reply_bytes) {
    failed_on_large_reply_ = true;
    fail("reply larger than " + std::to_string(cfg_.max_reply_bytes) + " bytes");
  }
}

void RedisClient::dispatch(const RedisReply& reply) {
  if (inflight_.empty()) return fail("reply without a command");
  ReplyCallback cb = std::move(inflight_.front().cb);
  inflight_.pop_front();
  if (state_ == State::Ready) arm_timer();
  if (cb) cb(reply);
  // A primary demoted under us (a failover): its writes fail from now on, so the connection goes
  // and the next attempt asks the sentinels where the primary is.
  if (!cfg_.sentinels.empty() && state_ == State::Ready && reply.is_error() && !reply.connection_error &&
      reply.error_code() == "READONLY") {
    fail("the primary was demoted (READONLY); asking the sentinels again");
    return;
  }
  if (on_write_refused_ && state_ != State::Closed) {
    if (const std::string_view why = write_refusal(reply); !why.empty()) {
      auto handler = on_write_refused_;  // a copy: the handler may close() this client
      handler(why, reply.str);
    }
  }
}

void RedisClient::on_end(int status) {
  if (state_ == State::TlsHandshake)
    return fail("redis TLS: connection closed during the handshake (" + std::string(uv_strerror(status)) + ")");
  fail(status == UV_EOF ? std::string("connection closed by server") : std::string(uv_strerror(status)));
}

void RedisClient::arm_timer() {
  if (state_ != State::Ready) return;  // Connecting/Handshake run on the connect timeout
  if (inflight_.empty()) {
    uv_timer_stop(&timeout_timer_);
    return;
  }
  const uint64_t now = uv_now(loop_);
  const uint64_t deadline = inflight_.front().deadline;
  uv_timer_start(&timeout_timer_, on_timer, deadline > now ? deadline - now : 0, 0);
}

void RedisClient::on_timer(uv_timer_t* t) {
  auto* self = static_cast<RedisClient*>(t->data);
  if (self->state_ == State::Connecting || self->state_ == State::TlsHandshake || self->state_ == State::Handshake)
    return self->fail("connect timeout after " + std::to_string(self->cfg_.connect_timeout_ms) + " ms");
  if (self->state_ != State::Ready || self->inflight_.empty()) return;
  if (uv_now(self->loop_) >= self->inflight_.front().deadline)
    return self->fail("command timeout after " + std::to_string(self->inflight_.front().timeout_ms) + " ms");
  self->arm_timer();
}

void RedisClient::fail(const std::string& reason) {
  if (state_ == State::Failed || state_ == State::Closed || state_ == State::Backoff) return;
  if (sentinel_query_) {
    sentinel_query_->close();
    sentinel_query_ = nullptr;
  }
  state_ = cfg_.reconnect ? State::Backoff : State::Failed;
  uv_timer_stop(&timeout_timer_);
  if (stream_) stream_->close();
  stream_ = nullptr;
  set_connected(false);
  const bool new_outage = !in_outage_;
  if (new_outage) {
    in_outage_ = true;
    outage_reason_ = reason;
    core::log_warn("redis_disconnected", {{"conn", cfg_.name}, {"reason", reason}});
  } else {
    core::log_debug("redis_reconnect_failed",
                    {{"conn", cfg_.name}, {"reason", reason}, {"attempt", std::to_string(attempt_)}});
  }
  // Taken out first: callbacks may issue commands (answered later) or close() this client.
  std::deque<Pending> pending = std::move(inflight_);
  for (auto& p : waiting_) pending.push_back(std::move(p));
  inflight_.clear();
  waiting_.clear();
  out_.clear();
  const RedisReply err = connection_error(reason);
  if (auto cb = std::move(connect_cb_)) {
    connect_cb_ = nullptr;
    cb(false, reason);
  }
  for (auto& p : pending) {
    if (state_ == State::Closed) return;
    if (p.cb) p.cb(err);
  }
  if (state_ == State::Closed) return;
  if (new_outage && on_disconnect_) {
    auto handler = on_disconnect_;  // a copy: the handler may close() this client
    handler(reason);
  }
  if (state_ == State::Backoff) schedule_reconnect();
}

void RedisClient::schedule_reconnect() {
  ++attempt_;
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const int delay = reconnect_delay_ms(cfg_, attempt_, unit(rng_));
  uv_timer_start(&reconnect_timer_, on_reconnect_timer, static_cast<uint64_t>(delay), 0);
}

void RedisClient::on_reconnect_timer(uv_timer_t* t) {
  auto* self = static_cast<RedisClient*>(t->data);
  if (self->state_ != State::Backoff) return;
  self->start_attempt();
}

void RedisClient::defer(ReplyCallback cb, RedisReply reply) {
  deferred_.emplace_back(std::move(cb), std::move(reply));
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&defer_timer_))) uv_timer_start(&defer_timer_, on_deferred, 0, 0);
}

void RedisClient::on_deferred(uv_timer_t* t) {
  auto* self = static_cast<RedisClient*>(t->data);
  auto items = std::move(self->deferred_);
  self->deferred_.clear();
  for (auto& [cb, reply] : items) {
    if (self->state_ == State::Closed) return;
    if (cb) cb(reply);
  }
}

void RedisClient::close() {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  waiting_.clear();
  inflight_.clear();
  deferred_.clear();
  out_.clear();
  connect_cb_ = nullptr;
  on_disconnect_ = nullptr;
  on_connect_ = nullptr;
  on_write_refused_ = nullptr;
  if (sentinel_query_) sentinel_query_->close();
  sentinel_query_ = nullptr;
  if (stream_) stream_->close();
  stream_ = nullptr;
  set_connected(false);
  uv_timer_stop(&timeout_timer_);
  uv_timer_stop(&defer_timer_);
  uv_timer_stop(&reconnect_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timeout_timer_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&defer_timer_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&reconnect_timer_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&flush_check_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&flush_prepare_), on_handle_closed);
}

void RedisClient::on_handle_closed(uv_handle_t* h) {
  auto* self = static_cast<RedisClient*>(h->data);
  if (--self->open_handles_ == 0) delete self;
}

}  // namespace deliverd::queue
