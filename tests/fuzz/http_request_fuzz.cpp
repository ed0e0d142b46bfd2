// Feeds arbitrary bytes to the admin HTTP request parser (no sockets), split into chunks at
// positions taken from the input, then routes every parsed request and serializes the answer.
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "admin/http_request_parser.h"
#include "admin/router.h"

using namespace deliverd::admin;

namespace {
const Router& router() {
  static Router r = [] {
    Router x;
    auto echo = [](const Request& req, Respond respond) {
      Response resp;
      resp.body = req.body.substr(0, 64) + req.query;
      if (const std::string* h = req.header("x-echo")) resp.headers.emplace_back("X-Echo", *h);
      if (const std::string* id = req.param("id")) resp.body += *id;
      respond(std::move(resp));
    };
    x.add("GET", "/healthz", echo);
    x.add("POST", "/v1/mailboxes", echo);
    x.add("GET", "/v1/mailboxes/{id}", echo);
    return x;
  }();
  return r;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // Small limits so the size checks are reached often.
  RequestParser parser(RequestLimits{512, 16, 256});
  size_t chunk = size > 0 ? 1 + data[0] % 64 : 1;
  size_t pos = 0;
  std::string pending;
  int requests = 0;
  while ((pos < size || !pending.empty()) && !parser.error() && requests < 1000) {
    if (pos < size) {
      size_t n = std::min(chunk, size - pos);
      pending.append(input.substr(pos, n));
      pos += n;
    }
    size_t used = parser.feed(pending);
    if (used > pending.size()) __builtin_trap();
    pending.erase(0, used);
    if (parser.complete()) {
      Request req = parser.take();
      ++requests;
      router().dispatch(req, [&](Response resp) {
        std::string wire = serialize_response(resp, parser.keep_alive(), req.method == "HEAD", req.http10);
        if (wire.find("\r\n\r\n") == std::string::npos) __builtin_trap();
      });
    } else if (used == 0 && pos >= size) {
      break;
    }
  }
  if (parser.error() && (parser.error()->status < 400 || parser.error()->status > 499)) __builtin_trap();
  return 0;
}
