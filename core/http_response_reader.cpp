#include "core/http_response_reader.h"

#include <climits>

#include "core/ascii.h"

namespace deliverd::core {

HttpResponseReader::HttpResponseReader(Limits limits, bool head_request)
    : limits_(limits), head_request_(head_request) {
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
  http_parser_settings_init(&settings_);
  settings_.on_header_field = on_header_field;
  settings_.on_header_value = on_header_value;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_body = on_body;
  settings_.on_message_complete = on_message_complete;
}

HttpResponseReader::State HttpResponseReader::feed(std::string_view bytes) {
  if (state_ != State::More || bytes.empty()) return state_;
  // Framing (chunk sizes and extensions) is not header or body: it is bounded by the total.
  received_ += bytes.size();
  if (received_ > limits_.max_header_bytes + limits_.max_body_bytes + kFramingSlack) {
    too_large("answer larger than " + std::to_string(limits_.max_header_bytes + limits_.max_body_bytes) + " bytes");
    return state_;
  }
  size_t n = http_parser_execute(&parser_, &settings_, bytes.data(), bytes.size());
  return after(n, bytes.size());
}

HttpResponseReader::State HttpResponseReader::end() {
  if (state_ != State::More) return state_;
  // http_parser is told of the end with 0 bytes: a body delimited by the close is complete.
  http_parser_execute(&parser_, &settings_, nullptr, 0);
  // Anything else the close cut short is incomplete, not malformed: the caller says "closed".
  return state_;
}

HttpResponseReader::State HttpResponseReader::after(size_t consumed, size_t given) {
  if (state_ != State::More) return state_;  // a callback decided (complete, or too large)
  if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK || consumed != given) {
    state_ = State::Failed;
    error_kind_ = HttpsErrorKind::BadResponse;
    error_ = http_errno_description(HTTP_PARSER_ERRNO(&parser_));
  }
  return state_;
}

void HttpResponseReader::too_large(std::string why) {
  state_ = State::Failed;
  error_kind_ = HttpsErrorKind::TooLarge;
  error_ = std::move(why);
}

bool HttpResponseReader::count_header(size_t n) {
  header_bytes_ += n;
  if (header_bytes_ <= limits_.max_header_bytes) return true;
  too_large("headers larger than " + std::to_string(limits_.max_header_bytes) + " bytes");
  return false;
}

int HttpResponseReader::on_header_field(http_parser* p, const char* at, size_t len) {
  auto* s = self(p);
  if (!s->count_header(len)) return 1;
  if (!s->in_field_) s->resp_.headers.emplace_back();
  s->in_field_ = true;
  s->resp_.headers.back().first.append(ascii_lowercase(std::string_view(at, len)));
  return 0;
}

int HttpResponseReader::on_header_value(http_parser* p, const char* at, size_t len) {
  auto* s = self(p);
  if (!s->count_header(len)) return 1;
  s->in_field_ = false;
  if (s->resp_.headers.empty()) return 1;
  s->resp_.headers.back().second.append(at, len);
  return 0;
}

int HttpResponseReader::on_headers_complete(http_parser* p) {
  auto* s = self(p);
  s->resp_.status = static_cast<int>(p->status_code);
  if (p->content_length != ULLONG_MAX && p->content_length > s->limits_.max_body_bytes) {
    s->too_large("Content-Length " + std::to_string(p->content_length) + " exceeds " +
                 std::to_string(s->limits_.max_body_bytes) + " bytes");
    return 2;
  }
  return s->head_request_ ? 1 : 0;  // 1: no body follows
}

int HttpResponseReader::on_body(http_parser* p, const char* at, size_t len) {
  auto* s = self(p);
  if (s->resp_.body.size() + len > s->limits_.max_body_bytes) {
    s->too_large("body larger than " + std::to_string(s->limits_.max_body_bytes) + " bytes");
    return 1;
  }
  s->resp_.body.append(at, len);
  return 0;
}

int HttpResponseReader::on_message_complete(http_parser* p) {
  auto* s = self(p);
  if (s->state_ == State::More) s->state_ = State::Complete;
  http_parser_pause(p, 1);
  return 0;
}

}  // namespace deliverd::core
