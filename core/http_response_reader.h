#pragma once
// An HTTP/1.1 response read from bytes as they arrive (http_parser), bounded: headers and body
// each have a size limit, checked as the bytes come, so a peer that sends a gigabyte costs at most
// the limit. Used by core::HttpsClient; kept apart so the parser that faces the network can be
// fuzzed without a connection.
#include <http_parser.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/https_client.h"

namespace deliverd::core {

class HttpResponseReader {
 public:
  struct Limits {
    size_t max_header_bytes = 32768;
    size_t max_body_bytes = 1 << 20;
  };
  enum class State { More, Complete, Failed };

  // head_request: the answer to a HEAD has no body, whatever its Content-Length says.
  HttpResponseReader(Limits limits, bool head_request);
  HttpResponseReader(const HttpResponseReader&) = delete;
  HttpResponseReader& operator=(const HttpResponseReader&) = delete;

  // The next bytes of the answer. Bytes after a complete answer are ignored.
  State feed(std::string_view bytes);
  // The peer closed: an answer without a length ends here; any other is incomplete (More).
  State end();
  State state() const { return state_; }
  // Failed: BadResponse (not HTTP) or TooLarge, and what was wrong.
  HttpsErrorKind error_kind() const { return error_kind_; }
  const std::string& error() const { return error_; }
  // Complete: status, headers (names lower-cased, in order) and the de-chunked body.
  HttpsResponse take() { return std::move(resp_); }

 private:
  static HttpResponseReader* self(http_parser* p) { return static_cast<HttpResponseReader*>(p->data); }
  static int on_header_field(http_parser* p, const char* at, size_t len);
  static int on_header_value(http_parser* p, const char* at, size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_body(http_parser* p, const char* at, size_t len);
  static int on_message_complete(http_parser* p);
  bool count_header(size_t n);
  void too_large(std::string why);
  State after(size_t consumed, size_t given);

  Limits limits_;
  bool head_request_;
  http_parser parser_{};
  http_parser_settings settings_{};
  HttpsResponse resp_;
  bool in_field_ = false;
  size_t header_bytes_ = 0, received_ = 0;
  static constexpr size_t kFramingSlack = 65536;
  State state_ = State::More;
  HttpsErrorKind error_kind_ = HttpsErrorKind::BadResponse;
  std::string error_;
};

}  // namespace deliverd::core
