#pragma once
// The HTTP request/response values handlers see. Handlers answer through a Respond callback, so
// they may finish later (after a Redis PING, a SQL query…); the server keeps responses in order.
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace deliverd::admin {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method, path, query, body;
  // The client's address: the socket's peer, or behind a trusted proxy the address the proxies
  // reported (admin/client_address.h). Limits, the audit log and logs use it.
  std::string peer_ip;
  std::string socket_peer_ip;  // the connection's own peer (a proxy, when there is one)
  HeaderList headers;  // names as sent; look up with header()
  HeaderList params;   // values of {name} segments of the matched route
  bool http10 = false;

  // First header with this name (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const;
  const std::string* param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  HeaderList headers;  // extra headers; names/values containing CR or LF are dropped
};

// May be called from any later loop turn, exactly once; calls after the connection closed are
// ignored. Handlers must copy what they need from the Request before answering asynchronously.
using Respond = std::function<void(Response)>;
using Handler = std::function<void(const Request&, Respond)>;

// {"error":{"code":"…","message":"…"}}
Response json_error(int status, std::string_view code, std::string_view message);
std::string_view reason_phrase(int status);

// The bytes on the wire. HEAD requests get headers only.
std::string serialize_response(const Response& r, bool keep_alive, bool head_request, bool http10);

}  // namespace deliverd::admin
