#include "admin/http_request_parser.h"

#include <climits>

namespace deliverd::admin {

RequestParser::RequestParser(RequestLimits limits) : limits_(limits) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = on_message_begin;
  settings_.on_url = on_url;
  settings_.on_header_field = on_header_field;
  settings_.on_header_value = on_header_value;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_body = on_body;
  settings_.on_message_complete = on_message_complete;
}

void RequestParser::fail(int status, std::string code, std::string message) {
  if (!error_) error_ = ParseError{status, std::move(code), std::move(message)};
}

bool RequestParser::count_header_bytes(size_t n) {
  header_bytes_ += n;
  if (header_bytes_ > limits_.max_header_bytes) {
    fail(431, "headers_too_large", "request line and headers exceed " + std::to_string(limits_.max_header_bytes) +
                                       " bytes");
    return false;
  }
  return true;
}

int RequestParser::on_message_begin(http_parser* p) {
  auto* self = static_cast<RequestParser*>(p->data);
  self->current_ = Request{};
  self->url_.clear();
  self->header_bytes_ = 0;
  self->in_value_ = false;
  self->started_ = true;
  return 0;
}

int RequestParser::on_url(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestParser*>(p->data);
  if (!self->count_header_bytes(len)) return -1;
  self->url_.append(at, len);
  return 0;
}

int RequestParser::on_header_field(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestParser*>(p->data);
  // ": " and CRLF count too, so many tiny headers cannot slip under the limit.
  if (!self->count_header_bytes(len + (self->in_value_ || self->current_.headers.empty() ? 4 : 0))) return -1;
  if (self->in_value_ || self->current_.headers.empty()) {
    if (self->current_.headers.size() >= self->limits_.max_headers) {
      self->fail(431, "headers_too_large", "more than " + std::to_string(self->limits_.max_headers) + " headers");
      return -1;
    }
    self->current_.headers.emplace_back();
    self->in_value_ = false;
  }
  self->current_.headers.back().first.append(at, len);
  return 0;
}

int RequestParser::on_header_value(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestParser*>(p->data);
  if (!self->count_header_bytes(len)) return -1;
  if (self->current_.headers.empty()) return -1;
  self->in_value_ = true;
  self->current_.headers.back().second.append(at, len);
  return 0;
}

int RequestParser::on_headers_complete(http_parser* p) {
  auto* self = static_cast<RequestParser*>(p->data);
  // http-parser leaves content_length at ULLONG_MAX when there is no Content-Length.
  if (p->content_length != ULLONG_MAX && p->content_length > self->limits_.max_body_bytes) {
    self->fail(413, "body_too_large", "request body exceeds " + std::to_string(self->limits_.max_body_bytes) + " bytes");
    return -1;
  }
  if (self->url_.empty() || self->url_.front() != '/') {
    self->fail(400, "bad_request", "request target must be an absolute path");
    return -1;
  }
  size_t q = self->url_.find('?');
  self->current_.path = self->url_.substr(0, q);
  if (q != std::string::npos) self->current_.query = self->url_.substr(q + 1);
  self->current_.method = http_method_str(static_cast<http_method>(p->method));
  self->current_.http10 = p->http_major == 1 && p->http_minor == 0;
  return 0;
}

int RequestParser::on_body(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestParser*>(p->data);
  if (self->current_.body.size() + len > self->limits_.max_body_bytes) {
    self->fail(413, "body_too_large", "request body exceeds " + std::to_string(self->limits_.max_body_bytes) + " bytes");
    return -1;
  }
  self->current_.body.append(at, len);
  return 0;
}

int RequestParser::on_message_complete(http_parser* p) {
  auto* self = static_cast<RequestParser*>(p->data);
  self->complete_ = true;
  self->keep_alive_ = http_should_keep_alive(p) != 0 && !p->upgrade;
  // Stop here so the next pipelined request waits until this one is answered.
  http_parser_pause(p, 1);
  self->paused_ = true;
  return 0;
}

size_t RequestParser::feed(std::string_view data) {
  if (error_ || complete_ || data.empty()) return 0;
  if (!keep_alive_) return 0;  // nothing may follow a request that ends the connection
  if (paused_) {
    http_parser_pause(&parser_, 0);
    paused_ = false;
  }
  size_t n = http_parser_execute(&parser_, &settings_, data.data(), data.size());
  auto err = HTTP_PARSER_ERRNO(&parser_);
  if (err == HPE_PAUSED) return n;
  if (err != HPE_OK) {
    if (err == HPE_HEADER_OVERFLOW)
      fail(431, "headers_too_large", "request headers too large");
    else
      fail(400, "bad_request", http_errno_description(err));
    return n;
  }
  if (parser_.upgrade && !complete_) fail(400, "bad_request", "protocol upgrade is not supported");
  return n;
}

Request RequestParser::take() {
  complete_ = false;
  started_ = false;
  Request r = std::move(current_);
  current_ = Request{};
  return r;
}

}  // namespace deliverd::admin
