#include "queue/redis_client.h"

#include <hiredis/hiredis.h>

#include <cstring>
#include <utility>

namespace deliverd::queue {
namespace {

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

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
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
    if (!percent_decode(userinfo.substr(0, colon), cfg.username))
      return core::Err{std::string("redis URL: bad percent-encoding in user")};
    if (colon != std::string_view::npos && !percent_decode(userinfo.substr(colon + 1), cfg.password))
      return core::Err{std::string("redis URL: bad percent-encoding in password")};
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

RedisClient* RedisClient::create(uv_loop_t* loop, const RedisConfig& cfg) { return new RedisClient(loop, cfg); }

RedisClient::RedisClient(uv_loop_t* loop, const RedisConfig& cfg) : loop_(loop), cfg_(cfg) {
  reader_ = redisReaderCreate();
  uv_timer_init(loop, &timeout_timer_);
  uv_timer_init(loop, &defer_timer_);
  timeout_timer_.data = this;
  defer_timer_.data = this;
}

RedisClient::~RedisClient() {
  if (reader_) redisReaderFree(reader_);
}

void RedisClient::connect(ConnectCallback cb) {
  auto defer_failure = [this, &cb](const std::string& reason) {
    defer([cb = std::move(cb), reason](const RedisReply&) { cb(false, reason); }, connection_error(reason));
  };
  if (state_ != State::Idle) return defer_failure("connect() called twice");
  if (cfg_.tls) return defer_failure("rediss:// (TLS) is not supported yet");
  sockaddr_storage addr{};
  const std::string host = cfg_.host == "localhost" ? "127.0.0.1" : cfg_.host;
  if (uv_ip4_addr(host.c_str(), cfg_.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(host.c_str(), cfg_.port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0)
    return defer_failure("redis host must be an IP address or localhost, got '" + cfg_.host + "'");
  connect_cb_ = std::move(cb);
  state_ = State::Connecting;
  stream_ = core::TcpStream::create(loop_, this);
  uv_timer_start(&timeout_timer_, on_timer, static_cast<uint64_t>(cfg_.connect_timeout_ms), 0);
  int rc = stream_->connect(reinterpret_cast<const sockaddr*>(&addr));
  if (rc != 0) {
    // Reported on a later iteration, like every other failure, never from inside connect().
    stream_->close();
    stream_ = nullptr;
    state_ = State::Failed;
    uv_timer_stop(&timeout_timer_);
    cb = std::move(connect_cb_);
    connect_cb_ = nullptr;
    const std::string reason = std::string("connect failed: ") + uv_strerror(rc);
    defer_failure(reason);
    for (auto& p : waiting_) defer(std::move(p.cb), connection_error(reason));
    waiting_.clear();
  }
}

void RedisClient::on_connected(int status) {
  if (state_ != State::Connecting) return;
  if (status != 0) return fail(std::string("connect failed: ") + uv_strerror(status));
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
  handshake_replies_ = steps.size();
  auto become_ready = [this] {
    state_ = State::Ready;
    uv_timer_stop(&timeout_timer_);
    flush_waiting();
    if (state_ != State::Ready) return;
    arm_timer();
    if (auto cb = std::move(connect_cb_)) {
      connect_cb_ = nullptr;
      cb(true, {});
    }
  };
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
    p.cb = [this, what = what, become_ready](const RedisReply& r) {
      if (r.connection_error) return;
      if (r.is_error()) return fail(what + " failed: " + r.str);
      if (--handshake_replies_ == 0) become_ready();
    };
    write_pending(std::move(p));
    if (state_ != State::Handshake) return;
  }
}

void RedisClient::command(std::vector<std::string> argv, ReplyCallback cb, int timeout_ms) {
  if (state_ == State::Closed) return;
  if (state_ == State::Failed) return defer(std::move(cb), connection_error("not connected"));
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
  int rc = stream_->write(std::move(p.wire));
  p.wire.clear();
  p.deadline = uv_now(loop_) + static_cast<uint64_t>(p.timeout_ms);
  inflight_.push_back(std::move(p));
  if (rc != 0) return fail(std::string("write failed: ") + uv_strerror(rc));
  if (inflight_.size() == 1 && state_ == State::Ready) arm_timer();
}

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
  if (partial_reply_bytes_ > cfg_.max_reply_bytes)
    fail("reply larger than " + std::to_string(cfg_.max_reply_bytes) + " bytes");
}

void RedisClient::dispatch(const RedisReply& reply) {
  if (inflight_.empty()) return fail("reply without a command");
  ReplyCallback cb = std::move(inflight_.front().cb);
  inflight_.pop_front();
  if (state_ == State::Ready) arm_timer();
  if (cb) cb(reply);
}

void RedisClient::on_end(int status) {
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
  if (self->state_ == State::Connecting || self->state_ == State::Handshake)
    return self->fail("connect timeout after " + std::to_string(self->cfg_.connect_timeout_ms) + " ms");
  if (self->state_ != State::Ready || self->inflight_.empty()) return;
  if (uv_now(self->loop_) >= self->inflight_.front().deadline)
    return self->fail("command timeout after " + std::to_string(self->inflight_.front().timeout_ms) + " ms");
  self->arm_timer();
}

void RedisClient::fail(const std::string& reason) {
  if (state_ == State::Failed || state_ == State::Closed) return;
  state_ = State::Failed;
  uv_timer_stop(&timeout_timer_);
  if (stream_) stream_->close();
  stream_ = nullptr;
  // Taken out first: callbacks may issue commands (answered later) or close() this client.
  std::deque<Pending> pending = std::move(inflight_);
  for (auto& p : waiting_) pending.push_back(std::move(p));
  inflight_.clear();
  waiting_.clear();
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
  if (auto cb = std::move(on_disconnect_)) {
    on_disconnect_ = nullptr;
    cb(reason);
  }
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
  connect_cb_ = nullptr;
  on_disconnect_ = nullptr;
  if (stream_) stream_->close();
  stream_ = nullptr;
  uv_timer_stop(&timeout_timer_);
  uv_timer_stop(&defer_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timeout_timer_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&defer_timer_), on_handle_closed);
}

void RedisClient::on_handle_closed(uv_handle_t* h) {
  auto* self = static_cast<RedisClient*>(h->data);
  if (--self->open_handles_ == 0) delete self;
}

}  // namespace deliverd::queue
