#pragma once
// Incremental HTTP/1.x request parsing on top of http-parser 2.9, with our limits. It stops
// after each complete request, so a connection answers pipelined requests one at a time and
// buffers at most one read of what follows. No sockets here: the fuzz target drives it directly.
#include <http_parser.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "admin/http_types.h"

namespace deliverd::admin {

struct RequestLimits {
  size_t max_header_bytes = 16384;  // request line + headers
  size_t max_headers = 100;
  size_t max_body_bytes = 1 << 20;
};

struct ParseError {
  int status;        // 400, 413, 431
  std::string code;  // "bad_request", "body_too_large", "headers_too_large"
  std::string message;
};

class RequestParser {
 public:
  explicit RequestParser(RequestLimits limits = {});
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Consumes bytes until one request is complete, an error occurs or the data runs out;
  // returns how many bytes were consumed. Feed the rest again after take().
  size_t feed(std::string_view data);

  bool complete() const { return complete_; }
  // The completed request; parsing may resume with feed().
  Request take();
  // Whether the connection may carry another request after the completed one.
  bool keep_alive() const { return keep_alive_; }
  // Some bytes of a not yet complete request have arrived.
  bool in_progress() const { return started_ && !complete_; }
  const std::optional<ParseError>& error() const { return error_; }

 private:
  static int on_message_begin(http_parser* p);
  static int on_url(http_parser* p, const char* at, size_t len);
  static int on_header_field(http_parser* p, const char* at, size_t len);
  static int on_header_value(http_parser* p, const char* at, size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, size_t len);
  static int on_message_complete(http_parser* p);
  bool count_header_bytes(size_t n);
  void fail(int status, std::string code, std::string message);

  RequestLimits limits_;
  http_parser parser_{};
  http_parser_settings settings_{};
  Request current_;
  std::string url_;
  size_t header_bytes_ = 0;
  bool in_value_ = false;
  bool started_ = false;
  bool complete_ = false;
  bool keep_alive_ = true;
  bool paused_ = false;
  std::optional<ParseError> error_;
};

}  // namespace deliverd::admin
