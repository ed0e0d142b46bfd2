#pragma once
// A Lua script that RedisClient::eval() runs with EVALSHA: per call only its 40-character hash
// travels and Redis skips hashing the body, which matters for the policy scripts run on every
// job. The body is sent (EVAL) only when the server answers NOSCRIPT: the first use on a server,
// after a restart, a failover or SCRIPT FLUSH.
#include <string>
#include <string_view>

namespace deliverd::queue {

class LuaScript {
 public:
  explicit LuaScript(std::string_view body);
  const std::string& body() const { return body_; }
  const std::string& sha1() const { return sha1_; }  // lowercase hex, as Redis names scripts

 private:
  std::string body_;
  std::string sha1_;
};

}  // namespace deliverd::queue
