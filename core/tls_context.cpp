#include "core/tls_context.h"

#include <openssl/err.h>

namespace deliverd::core {
namespace {

// TLS 1.3 hands out session tickets after the handshake, so resumption data is captured here
// rather than from SSL_get1_session right after connecting.
int on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* ref = static_cast<TlsContext::PeerRef*>(SSL_get_ex_data(ssl, TlsContext::peer_ref_index()));
  if (!ref || !ref->ctx || ref->peer.empty()) return 0;
  ref->ctx->store_session(ref->peer, session);
  return 1;  // we keep the reference
}

}  // namespace

std::string tls_error_string() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

int TlsContext::peer_ref_index() {
  static int idx = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return idx;
}

bool dane_usable(const DaneRecord& r) {
  if (r.usage != 2 && r.usage != 3) return false;
  if (r.selector > 1) return false;
  switch (r.mtype) {
    case 0: return !r.data.empty();
    case 1: return r.data.size() == 32;
    case 2: return r.data.size() == 64;
    default: return false;
  }
}

Result<std::shared_ptr<TlsContext>, std::string> TlsContext::client(const TlsClientOptions& opts) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return Err(tls_error_string());
  SSL_CTX_set_min_proto_version(ctx, opts.opportunistic ? TLS1_VERSION : TLS1_2_VERSION);
  if (opts.opportunistic) {
    // Debian's openssl.cnf raises the floor to TLS 1.2 at level 2 for every context; a server
    // that speaks only TLS 1.0 with SHA-1 signatures would then get plaintext instead.
    SSL_CTX_set_security_level(ctx, 0);
    if (SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0") != 1) {
      SSL_CTX_free(ctx);
      return Err("cannot allow every cipher for opportunistic TLS: " + tls_error_string());
    }
  }
  // Many SMTP servers drop the TCP connection after QUIT without close_notify; that is not an attack
  // on a protocol with its own end marker ("." and 250), so it is reported as a plain close.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (opts.opportunistic) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  } else if (opts.use_system_roots && SSL_CTX_set_default_verify_paths(ctx) != 1) {
    SSL_CTX_free(ctx);
    return Err("cannot load the system CA store: " + tls_error_string());
  }
  if (!opts.opportunistic && !opts.ca_file.empty() && SSL_CTX_load_verify_locations(ctx, opts.ca_file.c_str(), nullptr) != 1) {
    SSL_CTX_free(ctx);
    return Err("cannot load CA file " + opts.ca_file + ": " + tls_error_string());
  }
  if (!opts.opportunistic) SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  // Lets a connection verify against TLSA records instead (TcpStream, TlsClientParams::dane).
  if (!opts.opportunistic && SSL_CTX_dane_enable(ctx) <= 0) {
    SSL_CTX_free(ctx);
    return Err("cannot enable DANE verification: " + tls_error_string());
  }
  if (opts.session_cache_size > 0) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  } else {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  return std::shared_ptr<TlsContext>(new TlsContext(ctx, false, opts.session_cache_size));
}

Result<std::shared_ptr<TlsContext>, std::string> TlsContext::server(const TlsServerOptions& opts) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return Err(tls_error_string());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx, opts.cert_file.c_str()) != 1) {
    SSL_CTX_free(ctx);
    return Err("cannot load certificate " + opts.cert_file + ": " + tls_error_string());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, opts.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    SSL_CTX_free(ctx);
    return Err("cannot load key " + opts.key_file + ": " + tls_error_string());
  }
  return std::shared_ptr<TlsContext>(new TlsContext(ctx, true, 0));
}

TlsContext::~TlsContext() {
  for (auto& [peer, e] : sessions_) SSL_SESSION_free(e.session);
  SSL_CTX_free(ctx_);
}

SSL_SESSION* TlsContext::take_session(const std::string& peer) {
  auto it = sessions_.find(peer);
  if (it == sessions_.end()) return nullptr;
  if (!SSL_SESSION_is_resumable(it->second.session)) {
    SSL_SESSION_free(it->second.session);
    lru_.erase(it->second.lru);
    sessions_.erase(it);
    return nullptr;
  }
  SSL_SESSION_up_ref(it->second.session);
  return it->second.session;
}

void TlsContext::store_session(const std::string& peer, SSL_SESSION* session) {
  if (cache_size_ == 0) {
    SSL_SESSION_free(session);
    return;
  }
  auto it = sessions_.find(peer);
  if (it != sessions_.end()) {
    SSL_SESSION_free(it->second.session);
    lru_.erase(it->second.lru);
    sessions_.erase(it);
  }
  while (sessions_.size() >= cache_size_ && !lru_.empty()) {
    auto old = sessions_.find(lru_.back());
    SSL_SESSION_free(old->second.session);
    sessions_.erase(old);
    lru_.pop_back();
  }
  lru_.push_front(peer);
  sessions_.emplace(peer, Entry{session, lru_.begin()});
}

}  // namespace deliverd::core
