#pragma once
// HTTP/1.1 server on the loop for the admin API, /metrics and health checks (and later the
// public unsubscribe endpoint on its own listener). Keep-alive and pipelining; requests on one
// connection are answered in order, one handler at a time. Limits: header bytes (→ 431), body
// bytes (→ 413), a per-request read deadline (→ 408), an idle keep-alive timeout, a handler
// deadline (→ 503) and a connection cap (→ 503). Malformed requests get 400 and the connection
// is closed. Optional TLS from a certificate and key file.
#include <uv.h>

#include <cstddef>
#include <memory>
#include <string>
#include <unordered_set>
#include <unordered_map>
#include <vector>

#include "admin/http_request_parser.h"
#include "admin/http_types.h"
#include "admin/router.h"
#include "core/result.h"
#include "core/tls_context.h"
#include "dns/address_policy.h"

namespace deliverd::admin {

struct HttpServerConfig {
  std::string listen = "127.0.0.1:8025";  // "ip:port" or "[ipv6]:port"; port 0 picks a free one
  size_t max_header_bytes = 16384, max_body_bytes = 1 << 20;
  int idle_timeout_ms = 30000, read_timeout_ms = 10000;
  int handler_timeout_ms = 30000;
  size_t max_connections = 1024;
  // Peers in these ranges are proxies: the client address comes from X-Forwarded-For
  // (admin/client_address.h). Empty: the header is ignored.
  std::vector<dns::Cidr> trusted_proxies;
  // Both set: HTTPS (TLS 1.2+, core::TlsContext::server); a failed handshake closes the connection.
  std::string tls_cert_file, tls_key_file;
};

class HttpConnection;

class HttpServer {  // heap object freed after close() (STYLE.md §1)
 public:
  // Binds and listens; the router is copied. Errors name the address and the cause.
  static core::Result<HttpServer*, std::string> start(uv_loop_t* loop, const HttpServerConfig& config,
                                                      const Router& router);
  // Stops listening and closes every connection; idempotent.
  void close();
  int port() const { return port_; }
  size_t connection_count() const { return connections_.size(); }

 private:
  friend class HttpConnection;
  HttpServer(const HttpServerConfig& config, const Router& router) : config_(config), router_(router) {}
  ~HttpServer() = default;
  static void on_connection_cb(uv_stream_t* s, int status);
  void on_connection();
  void forget(HttpConnection* c);

  HttpServerConfig config_;
  Router router_;
  uv_tcp_t listener_{};
  int port_ = 0;
  bool closing_ = false;
  std::unordered_set<HttpConnection*> connections_;  // each frees itself once closed
  std::shared_ptr<core::TlsContext> tls_;  // null: plaintext
};

}  // namespace deliverd::admin
