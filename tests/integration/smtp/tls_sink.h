#pragma once
// An in-tree SMTP sink that speaks TLS through core::TcpStream (the same memory-BIO code the client
// uses), on its own thread and loop: implicit TLS or STARTTLS, PIPELINING, counts messages. Made for
// volume: thousands of concurrent TLS sessions, which Python servers cannot hold on a small machine.
#include <uv.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>

#include "core/tls_context.h"

namespace deliverd::testing {

class TlsSink {
 public:
  enum class Mode { Implicit, StartTls };
  // max_tls_version (e.g. TLS1_1_VERSION): an old server that speaks nothing newer, at OpenSSL
  // security level 0 as such servers need; 0 = the library's TLS 1.2+.
  TlsSink(const std::string& cert_file, const std::string& key_file, Mode mode, const std::string& ip = "127.0.0.1",
          int port = 0, int max_tls_version = 0);
  ~TlsSink();
  int port() const { return port_; }
  size_t messages() const { return messages_.load(); }
  size_t connections() const { return connections_.load(); }
  size_t open_connections() const { return open_.load(); }
  size_t handshakes() const { return handshakes_.load(); }

  struct Conn;

 private:
  static void on_connection(uv_stream_t* server, int status);
  static void on_stop(uv_async_t* a);
  void run();

  Mode mode_;
  std::shared_ptr<core::TlsContext> ctx_;
  uv_loop_t loop_{};
  uv_tcp_t listener_{};
  uv_async_t stop_{};
  int port_ = 0;
  std::thread thread_;
  std::unordered_set<Conn*> conns_;  // loop thread only
  std::atomic<size_t> messages_{0}, connections_{0}, open_{0}, handshakes_{0};
  friend struct Conn;
};

}  // namespace deliverd::testing
