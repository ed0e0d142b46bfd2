#include "core/tcp_stream.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <memory>

namespace deliverd::core {
namespace {
struct WriteReq {
  uv_write_t req{};
  std::string bytes;
  TcpStream* stream;
  size_t queued;  // the bytes past what uv_try_write took
};

// Plaintext held until the handshake completes; SMTP writes nothing then, so this is generous.
constexpr size_t kMaxPendingPlain = 1 << 20;

bool is_ip_literal(const std::string& name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}
}  // namespace

struct TcpStream::Tls {
  std::shared_ptr<TlsContext> ctx;
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;  // network → OpenSSL (owned by ssl)
  BIO* wbio = nullptr;  // OpenSSL → network (owned by ssl)
  TlsContext::PeerRef ref;
  bool handshake_done = false;
  bool failed = false;
  std::string pending_plain;
  ~Tls() {
    if (ssl) SSL_free(ssl);
  }
};

TcpStream::TcpStream(StreamHandler* handler) : handler_(handler) {}
TcpStream::~TcpStream() = default;

int TcpStream::start_tls_client(const TlsClientParams& p) {
  if (closing_ || tls_ || !p.ctx) return UV_EINVAL;
  auto t = std::make_unique<Tls>();
  t->ctx = p.ctx;
  t->ssl = SSL_new(p.ctx->native());
  if (!t->ssl) return UV_ENOMEM;
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(t->rbio, -1);
  BIO_set_mem_eof_return(t->wbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_connect_state(t->ssl);
  if (!p.server_name.empty() && !is_ip_literal(p.server_name)) SSL_set_tlsext_host_name(t->ssl, p.server_name.c_str());
  if (!p.dane.empty()) {
    if (!p.verify || p.server_name.empty() || SSL_dane_enable(t->ssl, p.server_name.c_str()) <= 0) return UV_EINVAL;
    SSL_set_verify(t->ssl, SSL_VERIFY_PEER, nullptr);
    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_dane_set_flags(t->ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
    int usable = 0;
    for (const auto& r : p.dane) {
      const auto* data = reinterpret_cast<const unsigned char*>(r.data.data());
      if (SSL_dane_tlsa_add(t->ssl, r.usage, r.selector, r.mtype, data, r.data.size()) > 0) ++usable;
    }
    ERR_clear_error();  // an unusable record leaves an error behind; it is not this stream's failure
    if (usable == 0) return UV_EINVAL;
  } else if (p.verify || p.check) {
    SSL_set_verify(t->ssl, p.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (is_ip_literal(p.server_name)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), p.server_name.c_str());
    } else if (SSL_set1_host(t->ssl, p.server_name.c_str()) != 1) {
      return UV_EINVAL;
    }
  } else {
    SSL_set_verify(t->ssl, SSL_VERIFY_NONE, nullptr);
  }
  // A resumed session skips the certificate, and with it the TLSA match.
  if (!p.session_key.empty() && p.dane.empty()) {
    t->ref = TlsContext::PeerRef{p.ctx.get(), p.session_key + (p.verify ? "|v" : p.check ? "|c" : "|n")};
    SSL_set_ex_data(t->ssl, TlsContext::peer_ref_index(), &t->ref);
    if (SSL_SESSION* sess = p.ctx->take_session(t->ref.peer)) {
      SSL_set_session(t->ssl, sess);
      SSL_SESSION_free(sess);
    }
  }
  tls_ = std::move(t);
  tls_pump_handshake();
  return 0;
}

int TcpStream::start_tls_server(std::shared_ptr<TlsContext> ctx) {
  if (closing_ || tls_ || !ctx) return UV_EINVAL;
  auto t = std::make_unique<Tls>();
  t->ctx = std::move(ctx);
  t->ssl = SSL_new(t->ctx->native());
  if (!t->ssl) return UV_ENOMEM;
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(t->rbio, -1);
  BIO_set_mem_eof_return(t->wbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_accept_state(t->ssl);
  tls_ = std::move(t);
  return 0;
}

TlsInfo TcpStream::tls_info() const {
  TlsInfo info;
  if (!tls_ || !tls_->handshake_done) return info;
  info.version = SSL_get_version(tls_->ssl);
  if (const SSL_CIPHER* c = SSL_get_current_cipher(tls_->ssl)) info.cipher = SSL_CIPHER_get_name(c);
  info.resumed = SSL_session_reused(tls_->ssl) == 1;
  info.verify_result = SSL_get_verify_result(tls_->ssl);
  info.verified = SSL_get_verify_mode(tls_->ssl) != SSL_VERIFY_NONE && info.verify_result == X509_V_OK;
  return info;
}

void TcpStream::release_buffers() {
  if (!tls_ || !tls_->handshake_done || tls_->failed) return;
  if (BIO_ctrl_pending(tls_->rbio) != 0 || BIO_ctrl_pending(tls_->wbio) != 0 || !tls_->pending_plain.empty()) return;
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  if (!rbio || !wbio) {
    BIO_free(rbio);
    BIO_free(wbio);
    return;
  }
  BIO_set_mem_eof_return(rbio, -1);
  BIO_set_mem_eof_return(wbio, -1);
  SSL_set_bio(tls_->ssl, rbio, wbio);  // frees the old pair
  tls_->rbio = rbio;
  tls_->wbio = wbio;
  std::string().swap(tls_->pending_plain);
}

long TcpStream::tls_verify_result() const { return tls_ ? SSL_get_verify_result(tls_->ssl) : X509_V_OK; }

std::string tls_verify_error_text(long r) { return X509_verify_cert_error_string(r); }

TlsResult tls_result_of_verify(long r) {
  switch (r) {
    case X509_V_OK: return TlsResult::Success;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH: return TlsResult::CertificateHostMismatch;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: return TlsResult::CertificateExpired;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED: return TlsResult::CertificateNotTrusted;
    case X509_V_ERR_DANE_NO_MATCH: return TlsResult::TlsaInvalid;
    default: return TlsResult::ValidationFailure;
  }
}

void TcpStream::tls_flush() {
  if (!tls_ || closing_) return;
  char buf[16384];
  std::string out;
  for (;;) {
    int n = BIO_read(tls_->wbio, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (out.empty()) return;
  if (int rc = raw_write(std::move(out)); rc != 0) {
    tls_->failed = true;
    handler_->on_end(rc);
  }
}

void TcpStream::tls_fail(const std::string& why) {
  tls_->failed = true;
  tls_error_ = why;
  tls_flush();  // an alert, if OpenSSL produced one
  if (closing_) return;
  pause_reading();
  if (!tls_->handshake_done)
    handler_->on_tls_handshake(false, why);
  else
    handler_->on_end(UV_EPROTO);
}

bool TcpStream::tls_pump_handshake() {
  if (tls_->handshake_done) return true;
  ERR_clear_error();
  int rc = SSL_do_handshake(tls_->ssl);
  if (rc == 1) {
    tls_->handshake_done = true;
    tls_flush();
    if (closing_) return false;
    handler_->on_tls_handshake(true, {});
    if (closing_ || tls_->failed) return false;
    if (!tls_->pending_plain.empty()) {
      std::string held = std::move(tls_->pending_plain);
      tls_->pending_plain.clear();
      if (write(std::move(held)) != 0) return false;
    }
    return !closing_;
  }
  int err = SSL_get_error(tls_->ssl, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
    tls_flush();
    return false;
  }
  std::string why;
  long vr = SSL_get_verify_result(tls_->ssl);
  if (vr != X509_V_OK)
    why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(vr);
  else
    why = tls_error_string();
  ERR_clear_error();
  tls_fail(why);
  return false;
}

void TcpStream::tls_input(std::string_view bytes) {
  if (tls_->failed) return;
  BIO_write(tls_->rbio, bytes.data(), static_cast<int>(bytes.size()));
  if (!tls_->handshake_done && !tls_pump_handshake()) return;
  static thread_local char plain[16384];
  while (!closing_ && !tls_->failed) {
    ERR_clear_error();
    int n = SSL_read(tls_->ssl, plain, sizeof plain);
    if (n > 0) {
      handler_->on_data(std::string_view(plain, static_cast<size_t>(n)));
      continue;
    }
    int err = SSL_get_error(tls_->ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
    if (err == SSL_ERROR_ZERO_RETURN) {  // close_notify
      tls_flush();
      pause_reading();
      if (!closing_) handler_->on_end(UV_EOF);
      return;
    }
    tls_fail(tls_error_string());
    return;
  }
  tls_flush();  // post-handshake messages (key updates) may need an answer
}

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

void TcpStream::on_alloc_cb(uv_handle_t*, size_t, uv_buf_t* buf) {
  // One buffer per thread, not per stream: libuv fills it and on_read_cb hands it on before the
  // next read on this loop, and thousands of idle TLS sessions must not each pin 16 KiB.
  static thread_local char read_buf[65536];
  *buf = uv_buf_init(read_buf, sizeof read_buf);
}

void TcpStream::on_read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<TcpStream*>(s->data);
  if (self->closing_) return;
  if (nread > 0) {
    std::string_view bytes(buf->base, static_cast<size_t>(nread));
    if (self->tls_)
      self->tls_input(bytes);
    else
      self->handler_->on_data(bytes);
  } else if (nread < 0) {
    // A peer that drops the connection without close_notify ends like a plain close: the
    // protocols on top (SMTP's "." + 250, HTTP lengths) say whether anything was lost.
    self->pause_reading();
    self->handler_->on_end(static_cast<int>(nread));
  }
}

int TcpStream::write(std::string bytes) {
  if (closing_) return UV_ECANCELED;
  if (tls_) {
    if (tls_->failed) return UV_EPROTO;
    if (!tls_->handshake_done) {
      if (tls_->pending_plain.size() + bytes.size() > kMaxPendingPlain) return UV_ENOBUFS;
      tls_->pending_plain += bytes;
      return 0;
    }
    size_t off = 0;
    while (off < bytes.size()) {
      ERR_clear_error();
      int n = SSL_write(tls_->ssl, bytes.data() + off, static_cast<int>(bytes.size() - off));
      if (n <= 0) {
        tls_->failed = true;
        tls_error_ = tls_error_string();
        return UV_EPROTO;
      }
      off += static_cast<size_t>(n);
    }
    tls_flush();
    return closing_ ? UV_ECANCELED : 0;
  }
  return raw_write(std::move(bytes));
}

int TcpStream::raw_write(std::string bytes) {
  if (closing_) return UV_ECANCELED;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  // Most writes fit in the socket buffer: written now, without a request, a callback, or the
  // epoll_ctl that libuv's uv_write costs on every call (it re-arms the descriptor's interest).
  // libuv refuses a try while earlier writes wait, so the order holds. An error is left to
  // uv_write, which reports it through on_write_cb as before.
  size_t done = 0;
  if (pending_write_bytes_ == 0) {
    uv_buf_t b = uv_buf_init(bytes.data(), static_cast<unsigned>(bytes.size()));
    int n = uv_try_write(stream, &b, 1);
    if (n > 0) done = static_cast<size_t>(n);
    if (done == bytes.size()) return 0;
  }
  auto* w = new WriteReq{{}, std::move(bytes), this, 0};
  w->req.data = w;
  w->queued = w->bytes.size() - done;
  uv_buf_t buf = uv_buf_init(w->bytes.data() + done, static_cast<unsigned>(w->queued));
  int rc = uv_write(&w->req, stream, &buf, 1, on_write_cb);
  if (rc != 0) {
    delete w;
    return rc;
  }
  pending_write_bytes_ += w->queued;
  return 0;
}

void TcpStream::on_write_cb(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
  TcpStream* self = w->stream;
  // Write callbacks run before the close callback, so self is still alive here.
  self->pending_write_bytes_ -= w->queued;
  if (status != 0 && !self->closing_) self->handler_->on_end(status);
}

void TcpStream::close() {
  if (closing_) return;
  if (tls_ && tls_->handshake_done && !tls_->failed) {
    // close_notify goes out ahead of the close; uv_write tries to send it right away.
    SSL_shutdown(tls_->ssl);
    tls_flush();
  }
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close_cb);
}

void TcpStream::on_close_cb(uv_handle_t* h) { delete static_cast<TcpStream*>(h->data); }

namespace {
std::string ip_text(const sockaddr_storage& ss) {
  char ip[64] = {};
  if (ss.ss_family == AF_INET)
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&ss), ip, sizeof ip);
  else
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&ss), ip, sizeof ip);
  return ip;
}
}  // namespace

std::string TcpStream::peer_ip() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return ip_text(ss);
}

std::string TcpStream::local_ip() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return ip_text(ss);
}

}  // namespace deliverd::core
