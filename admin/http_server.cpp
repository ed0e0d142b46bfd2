#include "admin/http_server.h"

#include <vector>

#include "core/lifetime.h"
#include "admin/client_address.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/tcp_stream.h"
#include "core/timer.h"

namespace deliverd::admin {
namespace {

// Beyond the cap, this many extra connections are told 503; further ones are just closed.
constexpr size_t kRejectSlack = 64;
// After a final response, input is read and dropped until the response is flushed and the
// client has been quiet for kLingerQuietMs (at most kLingerMs in all), so the client reads the
// answer instead of a reset: closing with unread input makes the kernel send RST.
constexpr int kLingerMs = 2000;
constexpr uint64_t kLingerQuietMs = 100;
constexpr int kLingerPollMs = 25;
// A client that does not read its responses stops being served until they drain.
constexpr size_t kMaxPendingWriteBytes = 1 << 20;
constexpr int kDrainPollMs = 10;

core::Family<core::Counter>& requests_total() {
  static auto& f = core::Registry::global().counter("deliverd_http_requests_total",
                                                    "HTTP requests answered, by status code", {"code"});
  return f;
}
core::Family<core::Gauge>& connections_open() {
  static auto& f = core::Registry::global().gauge("deliverd_http_connections", "Open HTTP connections");
  return f;
}
core::Family<core::Counter>& connections_rejected() {
  static auto& f = core::Registry::global().counter("deliverd_http_connections_rejected_total",
                                                    "HTTP connections refused because the connection cap was reached");
  return f;
}

core::Family<core::Counter>& tls_failures() {
  static auto& f = core::Registry::global().counter("deliverd_http_tls_handshake_failures_total",
                                                    "HTTPS connections closed because the TLS handshake failed");
  return f;
}

class NullHandler : public core::StreamHandler {
 public:
  void on_data(std::string_view) override {}
  void on_end(int) override {}
};

bool parse_listen(const std::string& listen, sockaddr_storage& out) {
  std::string host, port;
  if (!listen.empty() && listen.front() == '[') {
    size_t close = listen.find("]:");
    if (close == std::string::npos) return false;
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    size_t colon = listen.rfind(':');
    if (colon == std::string::npos) return false;
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) return false;
  int p = std::stoi(port);
  if (p > 65535) return false;
  if (uv_ip4_addr(host.c_str(), p, reinterpret_cast<sockaddr_in*>(&out)) == 0) return true;
  return uv_ip6_addr(host.c_str(), p, reinterpret_cast<sockaddr_in6*>(&out)) == 0;
}

}  // namespace

// Freed by the DeletesItself rule (STYLE.md §1): close_now() may run inside any of its callbacks.
class HttpConnection : public core::StreamHandler, private core::DeletesItself<HttpConnection> {
 public:
  HttpConnection(HttpServer* server, uv_loop_t* loop)
      : server_(server),
        loop_(loop),
        parser_(RequestLimits{server->config_.max_header_bytes, 100, server->config_.max_body_bytes}),
        timer_(loop) {}

  void start(core::TcpStream* stream) {
    stream_ = stream;
    peer_ip_ = stream->peer_ip();
    connections_open().get().inc();
    arm(server_->config_.idle_timeout_ms, Phase::Idle);
  }

  void reject() {
    connections_rejected().get().inc();
    send_error(json_error(503, "too_many_connections", "connection limit reached, retry later"));
  }

  void on_data(std::string_view bytes) override {
    Entry e(this);
    if (closed_) return;
    if (phase_ == Phase::Lingering) {  // discarded
      last_input_ms_ = uv_now(loop_);
      return;
    }
    buffer_.append(bytes);
    process();
  }

  void on_end(int) override {
    Entry e(this);
    close_now();
  }

  void on_tls_handshake(bool ok, const std::string& error) override {
    if (ok) return;
    Entry e(this);
    tls_failures().get().inc();
    core::log_info("http_tls_handshake_failed", {{"peer", peer_ip_}, {"error", error}});
    close_now();
  }

  void close_now() {
    if (closed_) return;
    closed_ = true;
    timer_.reset();
    connections_open().get().dec();
    stream_->close();
    server_->forget(this);
    alive_.end();
    finish_self();  // freed now, or as the callback that closed it returns
  }

 private:
  friend class core::DeletesItself<HttpConnection>;

  enum class Phase { Idle, Reading, Handling, Lingering };

  void arm(int ms, Phase phase) {
    phase_ = phase;
    // The timer is closed with the connection: its callback never finds it gone.
    timer_->start(static_cast<uint64_t>(ms), [this, phase] {
      Entry e(this);
      if (!closed_) on_timeout(phase);
    });
  }

  void on_timeout(Phase phase) {
    switch (phase) {
      case Phase::Idle:
        return close_now();
      case Phase::Reading:
        return send_error(json_error(408, "request_timeout", "request not received in time"));
      case Phase::Handling:
        return send_error(json_error(503, "handler_timeout", "the request took too long to answer"));
      case Phase::Lingering:
        return linger_tick();
    }
  }

  void process() {
    if (in_process_) return;
    in_process_ = true;
    while (!closed_ && phase_ != Phase::Handling && phase_ != Phase::Lingering) {
      if (stream_->pending_write_bytes() > kMaxPendingWriteBytes) {
        // TcpStream has no drain callback; poll until the peer has read enough.
        stream_->pause_reading();
        drain_wait_ = true;
        timer_->start(kDrainPollMs, [this] {
          Entry e(this);
          if (closed_) return;
          drain_wait_ = false;
          stream_->resume_reading();
          process();
        });
        break;
      }
      if (buffer_.empty()) break;
      size_t n = parser_.feed(buffer_);
      buffer_.erase(0, n);
      if (parser_.error()) {
        const ParseError& e = *parser_.error();
        send_error(json_error(e.status, e.code, e.message));
        break;
      }
      if (parser_.complete()) {
        dispatch();
        continue;  // a synchronous answer lets the loop go on with pipelined bytes
      }
      if (n == 0) {  // nothing more may follow (a request that closed the connection)
        buffer_.clear();
        break;
      }
    }
    in_process_ = false;
    if (closed_ || drain_wait_ || phase_ == Phase::Handling || phase_ == Phase::Lingering) return;
    if (parser_.in_progress()) {
      // The read deadline runs from the first byte of a request, not from the last one, so a
      // client trickling bytes cannot hold the connection.
      if (phase_ != Phase::Reading) arm(server_->config_.read_timeout_ms, Phase::Reading);
    } else if (phase_ != Phase::Idle) {
      arm(server_->config_.idle_timeout_ms, Phase::Idle);
    }
  }

  void dispatch() {
    Request req = parser_.take();
    req.socket_peer_ip = peer_ip_;
    req.peer_ip = client_address(peer_ip_, req.headers, server_->config_.trusted_proxies);
    keep_alive_ = parser_.keep_alive();
    head_ = req.method == "HEAD";
    http10_ = req.http10;
    stream_->pause_reading();
    arm(server_->config_.handler_timeout_ms, Phase::Handling);
    uint64_t seq = ++seq_;
    // A handler may answer after the connection is gone.
    server_->router_.dispatch(req, [this, alive = alive_.token(), seq](Response r) {
      if (!alive) return;
      Entry e(this);
      respond(seq, std::move(r));
    });
  }

  void respond(uint64_t seq, Response r) {
    if (closed_ || seq != seq_ || phase_ != Phase::Handling) return;
    requests_total().with({std::to_string(r.status)}).inc();
    if (stream_->write(serialize_response(r, keep_alive_, head_, http10_)) != 0) return close_now();
    if (!keep_alive_) return linger();
    stream_->resume_reading();
    arm(server_->config_.idle_timeout_ms, Phase::Idle);
    process();
  }

  void send_error(const Response& r) {
    if (closed_ || phase_ == Phase::Lingering) return;
    requests_total().with({std::to_string(r.status)}).inc();
    ++seq_;  // a handler still running for this connection is ignored when it answers
    if (stream_->write(serialize_response(r, false, false, false)) != 0) return close_now();
    linger();
  }

  void linger() {
    buffer_.clear();
    stream_->resume_reading();
    linger_deadline_ms_ = uv_now(loop_) + kLingerMs;
    last_input_ms_ = uv_now(loop_);
    arm(kLingerPollMs, Phase::Lingering);
  }

  void linger_tick() {
    uint64_t now = uv_now(loop_);
    bool flushed = stream_->pending_write_bytes() == 0;
    if ((flushed && now - last_input_ms_ >= kLingerQuietMs) || now >= linger_deadline_ms_) return close_now();
    arm(kLingerPollMs, Phase::Lingering);
  }

  HttpServer* server_;
  uv_loop_t* loop_;
  core::TcpStream* stream_ = nullptr;
  RequestParser parser_;
  core::TimerHandle timer_;
  std::string buffer_;
  std::string peer_ip_;
  Phase phase_ = Phase::Idle;
  uint64_t seq_ = 0;
  bool keep_alive_ = true;
  bool head_ = false;
  bool http10_ = false;
  bool in_process_ = false;
  bool drain_wait_ = false;
  bool closed_ = false;
  core::Lifetime alive_;
  uint64_t linger_deadline_ms_ = 0;
  uint64_t last_input_ms_ = 0;
};

core::Result<HttpServer*, std::string> HttpServer::start(uv_loop_t* loop, const HttpServerConfig& config,
                                                         const Router& router) {
  sockaddr_storage addr{};
  if (!parse_listen(config.listen, addr))
    return core::Err("invalid listen address '" + config.listen + "' (want ip:port or [ipv6]:port)");
  std::shared_ptr<core::TlsContext> tls;
  if (!config.tls_cert_file.empty() || !config.tls_key_file.empty()) {
    if (config.tls_cert_file.empty() || config.tls_key_file.empty())
      return core::Err(std::string("TLS needs both a certificate file and a key file"));
    auto ctx = core::TlsContext::server({config.tls_cert_file, config.tls_key_file});
    if (!ctx) return core::Err("cannot load the TLS certificate or key: " + ctx.error());
    tls = *ctx;
  }
  auto* s = new HttpServer(config, router);
  s->tls_ = std::move(tls);
  uv_tcp_init(loop, &s->listener_);
  s->listener_.data = s;
  int rc = uv_tcp_bind(&s->listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&s->listener_), 511, on_connection_cb);
  if (rc != 0) {
    s->close();
    return core::Err("cannot listen on " + config.listen + ": " + uv_strerror(rc));
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&s->listener_, reinterpret_cast<sockaddr*>(&bound), &len);
  s->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                               : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  requests_total();
  connections_open().get();
  connections_rejected().get();
  tls_failures().get();
  core::log_info("http_listening",
                 {{"listen", config.listen}, {"port", std::to_string(s->port_)}, {"tls", s->tls_ ? "on" : "off"}});
  return s;
}

void HttpServer::on_connection_cb(uv_stream_t* s, int status) {
  auto* self = static_cast<HttpServer*>(s->data);
  if (status == 0 && !self->closing_) self->on_connection();
}

void HttpServer::on_connection() {
  uv_stream_t* listener = reinterpret_cast<uv_stream_t*>(&listener_);
  if (connections_.size() >= config_.max_connections + kRejectSlack) {
    static NullHandler null_handler;
    if (core::TcpStream* t = core::TcpStream::accept(listener, &null_handler)) t->close();
    connections_rejected().get().inc();
    return;
  }
  auto* conn = new HttpConnection(this, listener_.loop);
  core::TcpStream* stream = core::TcpStream::accept(listener, conn);
  if (!stream) return delete conn;
  connections_.insert(conn);
  conn->start(stream);
  if (tls_ && stream->start_tls_server(tls_) != 0) return conn->close_now();
  if (connections_.size() > config_.max_connections) conn->reject();
}

void HttpServer::forget(HttpConnection* c) {
  if (!closing_) connections_.erase(c);
}

void HttpServer::close() {
  if (closing_) return;
  closing_ = true;
  auto conns = std::move(connections_);
  connections_.clear();
  for (HttpConnection* conn : conns) conn->close_now();
  uv_close(reinterpret_cast<uv_handle_t*>(&listener_),
           [](uv_handle_t* h) { delete static_cast<HttpServer*>(h->data); });
}

}  // namespace deliverd::admin
