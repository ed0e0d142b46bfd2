#pragma once
// A TCP connection on the loop. The handle lives inside the object and the object is freed in
// the close callback (STYLE.md §1). After close() no handler callback is made, so the owner may
// be destroyed right after calling it. TLS sits inside the stream (OpenSSL memory BIOs between
// the socket and the handler): after start_tls_client()/start_tls_server() handlers see plaintext.
#include <uv.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tls_context.h"
#include "core/outcome.h"

namespace deliverd::core {

class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  virtual void on_connected(int status) { (void)status; }  // 0, or a libuv error code
  virtual void on_data(std::string_view bytes) = 0;
  // The peer closed (UV_EOF) or a read/write failed. The stream still needs close().
  virtual void on_end(int status) = 0;
  // The TLS handshake finished (ok) or failed (error says why; the stream still needs close()).
  virtual void on_tls_handshake(bool ok, const std::string& error) {
    (void)ok;
    (void)error;
  }
};

struct TlsClientParams {
  std::shared_ptr<TlsContext> ctx;
  std::string server_name;  // SNI and, when verify is set, the name the certificate must carry
  bool verify = true;       // false only for opportunistic TLS, where plaintext is the alternative
  // With verify false: the chain and server_name are still checked against ctx's trust store,
  // and the handshake goes on whatever they say (MTA-STS testing mode reports, never refuses).
  // TlsInfo::verify_result tells what the check found.
  bool check = false;
  std::string session_key;  // resumption cache key ("host:port"); "" = no resumption
  // DANE (RFC 7672): usable TLSA records of the peer; the certificate is then verified against
  // them, not the CA store: DANE-EE by key or certificate alone (no name or expiry check, 3.1.1),
  // DANE-TA as a trust anchor with server_name checked (3.1.2). Requires verify; no resumption.
  std::vector<DaneRecord> dane;
};

struct TlsInfo {
  std::string version;  // "TLSv1.3"
  std::string cipher;
  bool resumed = false;
  bool verified = false;  // the certificate chain and name were checked and passed
  long verify_result = 0;  // X509_V_OK, or what the check (verify or check) found wrong
};

// An X509 verification verdict (X509_V_OK, X509_V_ERR_…) as a TLS-RPT result type (RFC 8460 4.3).
TlsResult tls_result_of_verify(long x509_result);
// OpenSSL's words for the verdict ("certificate has expired").
std::string tls_verify_error_text(long x509_result);

class TcpStream {
 public:
  static TcpStream* create(uv_loop_t* loop, StreamHandler* handler);
  // Takes the next pending connection of a listening socket; nullptr if there was none.
  static TcpStream* accept(uv_stream_t* server, StreamHandler* handler);

  // Connects to exactly this address (already vetted by the caller). Returns 0 or a libuv
  // error; on success on_connected() follows. Reading starts once connected.
  int connect(const sockaddr* addr);
  void set_handler(StreamHandler* handler) { handler_ = handler; }

  // Queues bytes for writing. Returns 0 or a libuv error (the stream is then unusable).
  int write(std::string bytes);
  size_t pending_write_bytes() const { return pending_write_bytes_; }

  // Starts TLS on a connected stream; bytes written after this are encrypted (and held until the
  // handshake is done). Returns 0 or a libuv error; the result comes through on_tls_handshake().
  int start_tls_client(const TlsClientParams& params);
  int start_tls_server(std::shared_ptr<TlsContext> ctx);
  bool tls_active() const { return tls_ != nullptr; }
  TlsInfo tls_info() const;
  // Why TLS failed, when it did ("certificate verify failed: certificate has expired", …).
  const std::string& tls_error() const { return tls_error_; }
  // The certificate check's X509 verdict, after a handshake or its failure (X509_V_OK = 0).
  long tls_verify_result() const;

  // For a connection about to sit idle: gives back what TLS buffering grew to (the memory BIOs
  // keep the capacity of the largest flight, the certificate chain's) when nothing is pending.
  void release_buffers();
  void pause_reading();
  void resume_reading();

  // Idempotent. Frees the object once libuv has closed the handle.
  void close();
  bool closing() const { return closing_; }

  // "ip" of the peer, e.g. "127.0.0.1" or "::1"; "" if unknown.
  std::string peer_ip() const;
  // This side's address of the connection, in the same form.
  std::string local_ip() const;
  uv_loop_t* loop() const { return tcp_.loop; }

 private:
  struct Tls;
  explicit TcpStream(StreamHandler* handler);
  ~TcpStream();
  int start_reading();
  int raw_write(std::string bytes);
  void tls_input(std::string_view bytes);
  bool tls_pump_handshake();  // false when the stream failed or was closed by the handler
  void tls_flush();           // moves ciphertext produced by OpenSSL onto the socket
  void tls_fail(const std::string& why);

  static void on_connect_cb(uv_connect_t* req, int status);
  static void on_alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write_cb(uv_write_t* req, int status);
  static void on_close_cb(uv_handle_t* h);

  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  StreamHandler* handler_;
  std::unique_ptr<Tls> tls_;
  std::string tls_error_;
  size_t pending_write_bytes_ = 0;
  bool closing_ = false;
  bool reading_ = false;
};

}  // namespace deliverd::core
