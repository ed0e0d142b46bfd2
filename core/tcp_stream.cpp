#include "core/tcp_stream.h"

#include <memory>

namespace deliverd::core {
namespace {
struct WriteReq {
  uv_write_t req{};
  std::string bytes;
  TcpStream* stream;
};
}  // namespace

TcpStream* TcpStream::create(uv_loop_t* loop, StreamHandler* handler) {
  auto* s = new TcpStream(handler);
  uv_tcp_init(loop, &s->tcp_);
  s->tcp_.data = s;
  return s;
}

TcpStream* TcpStream::accept(uv_stream_t* server, StreamHandler* handler) {
  TcpStream* s = create(server->loop, handler);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&s->tcp_)) != 0 || s->start_reading() != 0) {
    s->close();
    return nullptr;
  }
  uv_tcp_nodelay(&s->tcp_, 1);
  return s;
}

int TcpStream::connect(const sockaddr* addr) {
  connect_req_.data = this;
  uv_tcp_nodelay(&tcp_, 1);
  return uv_tcp_connect(&connect_req_, &tcp_, addr, on_connect_cb);
}

void TcpStream::on_connect_cb(uv_connect_t* req, int status) {
  auto* self = static_cast<TcpStream*>(req->data);
  if (self->closing_) return;
  if (status == 0) status = self->start_reading();
  self->handler_->on_connected(status);
}

int TcpStream::start_reading() {
  if (reading_) return 0;
  int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc_cb, on_read_cb);
  if (rc == 0) reading_ = true;
  return rc;
}

void TcpStream::pause_reading() {
  if (reading_ && !closing_) uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

void TcpStream::resume_reading() {
  if (!closing_) start_reading();
}

void TcpStream::on_alloc_cb(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<TcpStream*>(h->data);
  *buf = uv_buf_init(self->read_buf_, sizeof self->read_buf_);
}

void TcpStream::on_read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<TcpStream*>(s->data);
  if (self->closing_) return;
  if (nread > 0) {
    self->handler_->on_data(std::string_view(buf->base, static_cast<size_t>(nread)));
  } else if (nread < 0) {
    self->pause_reading();
    self->handler_->on_end(static_cast<int>(nread));
  }
}

int TcpStream::write(std::string bytes) {
  if (closing_) return UV_ECANCELED;
  auto* w = new WriteReq{{}, std::move(bytes), this};
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, on_write_cb);
  if (rc != 0) {
    delete w;
    return rc;
  }
  pending_write_bytes_ += w->bytes.size();
  return 0;
}

void TcpStream::on_write_cb(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
  TcpStream* self = w->stream;
  // Write callbacks run before the close callback, so self is still alive here.
  self->pending_write_bytes_ -= w->bytes.size();
  if (status != 0 && !self->closing_) self->handler_->on_end(status);
}

void TcpStream::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close_cb);
}

void TcpStream::on_close_cb(uv_handle_t* h) { delete static_cast<TcpStream*>(h->data); }

std::string TcpStream::peer_ip() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  char ip[64] = {};
  if (ss.ss_family == AF_INET)
    uv_ip4_name(reinterpret_cast<sockaddr_in*>(&ss), ip, sizeof ip);
  else
    uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&ss), ip, sizeof ip);
  return ip;
}

}  // namespace deliverd::core
