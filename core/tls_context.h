#pragma once
// OpenSSL configuration shared by every TLS stream of one role: TLS 1.2 minimum, the system trust
// store plus an optional extra CA bundle, and (client side) a bounded per-peer session cache so a
// reconnect to the same host resumes instead of paying a full handshake. The one exception is the
// opportunistic client context of MX mode (TlsClientOptions::opportunistic).
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "core/result.h"

namespace deliverd::core {

struct TlsClientOptions {
  std::string ca_file;               // extra CA bundle trusted besides the system's; "" = system only
  bool use_system_roots = true;      // false: trust only ca_file (tests)
  size_t session_cache_size = 4096;  // peers remembered for resumption; 0 disables resumption
  // Any protocol version (TLS 1.0 up) and cipher the peer offers, at OpenSSL security level 0,
  // and never verified: for opportunistic TLS only, where the alternative is plaintext and old
  // TLS still beats none (RFC 7435). Trust settings are ignored; nothing is verified with it.
  bool opportunistic = false;
};

// One TLSA record (RFC 6698 2.1) as DANE verification takes it: certificate usage (2 DANE-TA,
// 3 DANE-EE; RFC 7672 3.1.3 leaves 0 and 1 unused for SMTP), selector (0 certificate, 1 public
// key), matching type (0 full, 1 SHA-256, 2 SHA-512) and the association data as raw bytes.
struct DaneRecord {
  uint8_t usage = 0;
  uint8_t selector = 0;
  uint8_t mtype = 0;
  std::string data;
  bool operator==(const DaneRecord&) const = default;
};
// Whether OpenSSL can verify a peer against the record for SMTP (RFC 7672 3.1): DANE-TA or
// DANE-EE, a known selector and matching type, digest data of the digest's length.
bool dane_usable(const DaneRecord& r);

struct TlsServerOptions {
  std::string cert_file;  // PEM chain, leaf first
  std::string key_file;
};

class TlsContext {
 public:
  static Result<std::shared_ptr<TlsContext>, std::string> client(const TlsClientOptions& opts);
  static Result<std::shared_ptr<TlsContext>, std::string> server(const TlsServerOptions& opts);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* native() const { return ctx_; }
  bool is_server() const { return server_; }

  // Resumption cache keyed by "host:port" (or any peer key the caller chooses). take() returns a
  // new reference (caller frees with SSL_SESSION_free) or nullptr.
  SSL_SESSION* take_session(const std::string& peer);
  void store_session(const std::string& peer, SSL_SESSION* session);  // takes one reference
  size_t cached_sessions() const { return sessions_.size(); }

  // What a client SSL's ex-data slot points at, so the new-session callback knows where to store.
  struct PeerRef {
    TlsContext* ctx = nullptr;
    std::string peer;
  };
  static int peer_ref_index();

 private:
  TlsContext(SSL_CTX* ctx, bool server, size_t cache_size) : ctx_(ctx), server_(server), cache_size_(cache_size) {}
  struct Entry {
    SSL_SESSION* session;
    std::list<std::string>::iterator lru;
  };
  SSL_CTX* ctx_;
  bool server_;
  size_t cache_size_;
  std::unordered_map<std::string, Entry> sessions_;
  std::list<std::string> lru_;  // most recent first
};

// The last OpenSSL error queue entries as one line, clearing the queue.
std::string tls_error_string();

}  // namespace deliverd::core
