#include "admin/http_types.h"

#include <algorithm>
#include "core/ascii.h"
#include "core/json_writer.h"

namespace deliverd::admin {
namespace {
bool has_crlf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }
}  // namespace

const std::string* Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (core::iequals(k, name)) return &v;
  return nullptr;
}

const std::string* Request::param(std::string_view name) const {
  for (const auto& [k, v] : params)
    if (k == name) return &v;
  return nullptr;
}

Response json_error(int status, std::string_view code, std::string_view message) {
  core::JsonWriter w;
  w.begin_object().key("error").begin_object().field("code", code).field("message", message).end_object().end_object();
  Response r;
  r.status = status;
  r.body = w.take();
  return r;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

std::string serialize_response(const Response& r, bool keep_alive, bool head_request, bool http10) {
  int status = r.status >= 100 && r.status <= 999 ? r.status : 500;
  std::string out;
  out.reserve(256 + r.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\n";
  bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
  if (!no_body) {
    if (!r.content_type.empty() && !has_crlf(r.content_type)) out += "Content-Type: " + r.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  }
  if (!keep_alive)
    out += "Connection: close\r\n";
  else if (http10)
    out += "Connection: keep-alive\r\n";
  out += "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n";
  for (const auto& [k, v] : r.headers) {
    if (k.empty() || has_crlf(k) || has_crlf(v) || k.find(':') != std::string::npos) continue;
    out += k + ": " + v + "\r\n";
  }
  out += "\r\n";
  if (!head_request && !no_body) out += r.body;
  return out;
}

}  // namespace deliverd::admin
