#pragma once
// A TCP connection on the loop. The handle lives inside the object and the object is freed in
// the close callback (STYLE.md §1). After close() no handler callback is made, so the owner may
// be destroyed right after calling it. TLS (issue 3) slots in here: handlers see plaintext.
#include <uv.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace deliverd::core {

class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  virtual void on_connected(int status) { (void)status; }  // 0, or a libuv error code
  virtual void on_data(std::string_view bytes) = 0;
  // The peer closed (UV_EOF) or a read/write failed. The stream still needs close().
  virtual void on_end(int status) = 0;
};

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

  void pause_reading();
  void resume_reading();

  // Idempotent. Frees the object once libuv has closed the handle.
  void close();
  bool closing() const { return closing_; }

  // "ip" of the peer, e.g. "127.0.0.1" or "::1"; "" if unknown.
  std::string peer_ip() const;
  uv_loop_t* loop() const { return tcp_.loop; }

 private:
  explicit TcpStream(StreamHandler* handler) : handler_(handler) {}
  ~TcpStream() = default;
  int start_reading();

  static void on_connect_cb(uv_connect_t* req, int status);
  static void on_alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write_cb(uv_write_t* req, int status);
  static void on_close_cb(uv_handle_t* h);

  uv_tcp_t tcp_{};
  uv_connect_t connect_req_{};
  StreamHandler* handler_;
  size_t pending_write_bytes_ = 0;
  bool closing_ = false;
  bool reading_ = false;
  char read_buf_[16384];
};

}  // namespace deliverd::core
