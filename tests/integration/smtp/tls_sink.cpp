#include "tests/integration/smtp/tls_sink.h"

#include <stdexcept>
#include <string_view>

#include "core/tcp_stream.h"

namespace deliverd::testing {

struct TlsSink::Conn final : core::StreamHandler {
  TlsSink* sink;
  core::TcpStream* stream = nullptr;
  std::string buf;
  bool in_data = false;
  bool tls = false;
  bool closed = false;

  explicit Conn(TlsSink* s) : sink(s) {}
  void end() {
    if (closed) return;
    closed = true;
    stream->close();
    sink->open_--;
    sink->conns_.erase(this);
    delete this;
  }
  void reply(std::string_view r) { stream->write(std::string(r)); }
  void on_data(std::string_view bytes) override {
    buf.append(bytes);
    size_t pos = 0;
    for (;;) {
      if (in_data) {
        // pos sits on a "\r\n" (the end of the DATA line or kept from the last read).
        size_t e = buf.find("\r\n.\r\n", pos);
        if (e == std::string::npos) {
          if (buf.size() - pos > 4) pos = buf.size() - 4;
          break;
        }
        pos = e + 5;
        in_data = false;
        sink->messages_++;
        reply("250 2.0.0 queued\r\n");
        continue;
      }
      size_t eol = buf.find("\r\n", pos);
      if (eol == std::string::npos) break;
      std::string_view line(buf.data() + pos, eol - pos);
      pos = eol + 2;
      std::string verb(line.substr(0, 4));
      for (char& c : verb) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
      if (verb == "EHLO") {
        reply(sink->mode_ == Mode::StartTls && !tls
                  ? "250-tlssink.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
                  : "250-tlssink.test\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n250 8BITMIME\r\n");
      } else if (verb == "STAR") {
        reply("220 2.0.0 go ahead\r\n");
        buf.clear();  // nothing sent before the handshake may be read as protected
        stream->start_tls_server(sink->ctx_);
        tls = true;
        return;
      } else if (verb == "DATA") {
        reply("354 go\r\n");
        in_data = true;
        pos -= 2;
      } else if (verb == "QUIT") {
        reply("221 2.0.0 bye\r\n");
        return end();
      } else {
        reply("250 2.0.0 ok\r\n");
      }
    }
    buf.erase(0, pos);
  }
  void on_end(int) override { end(); }
  void on_tls_handshake(bool ok, const std::string&) override {
    if (!ok) return end();
    sink->handshakes_++;
    if (sink->mode_ == Mode::Implicit) reply("220 tlssink.test ESMTP\r\n");
  }
};

TlsSink::TlsSink(const std::string& cert_file, const std::string& key_file, Mode mode, const std::string& ip, int port,
                 int max_tls_version)
    : mode_(mode) {
  auto ctx = core::TlsContext::server({cert_file, key_file});
  if (!ctx) throw std::runtime_error(ctx.error());
  ctx_ = *ctx;
  if (max_tls_version) {
    SSL_CTX* native = ctx_->native();
    SSL_CTX_set_security_level(native, 0);
    if (SSL_CTX_set_min_proto_version(native, TLS1_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(native, max_tls_version) != 1 ||
        SSL_CTX_set_cipher_list(native, "ALL:@SECLEVEL=0") != 1)
      throw std::runtime_error("tls sink: cannot limit TLS to version " + std::to_string(max_tls_version));
  }
  uv_loop_init(&loop_);
  uv_tcp_init(&loop_, &listener_);
  listener_.data = this;
  sockaddr_in addr{};
  uv_ip4_addr(ip.c_str(), port, &addr);
  if (uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&addr), 0) != 0 ||
      uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 4096, on_connection) != 0)
    throw std::runtime_error("tls sink: cannot listen");
  sockaddr_storage ss{};
  int len = sizeof ss;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  uv_async_init(&loop_, &stop_, on_stop);
  stop_.data = this;
  thread_ = std::thread([this] { run(); });
}

TlsSink::~TlsSink() {
  uv_async_send(&stop_);
  thread_.join();
  uv_loop_close(&loop_);
}

void TlsSink::run() { uv_run(&loop_, UV_RUN_DEFAULT); }

void TlsSink::on_stop(uv_async_t* a) {
  auto* self = static_cast<TlsSink*>(a->data);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->listener_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->stop_), nullptr);
  auto conns = self->conns_;
  for (Conn* c : conns) c->end();
}

void TlsSink::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<TlsSink*>(server->data);
  if (status != 0) return;
  auto* c = new Conn(self);
  c->stream = core::TcpStream::accept(server, c);
  if (!c->stream) {
    delete c;
    return;
  }
  self->conns_.insert(c);
  self->connections_++;
  self->open_++;
  if (self->mode_ == Mode::Implicit) {
    c->stream->start_tls_server(self->ctx_);
    c->tls = true;
  } else {
    c->reply("220 tlssink.test ESMTP\r\n");
  }
}

}  // namespace deliverd::testing
