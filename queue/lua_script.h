#pragma once
// A Lua script that RedisClient::eval() runs with EVALSHA: per call only its 40-character hash
// travels and Redis skips hashing the body, which matters for the policy scripts run on every
// job. The body is sent (EVAL) only when the server answers NOSCRIPT: the first use on a server,
// after a restart, a failover or SCRIPT FLUSH.
#include <string>
#include <string_view>
#include <vector>

namespace deliverd::queue {

// One run of a script: its keys and its arguments (RedisClient::eval takes the key count first).
struct ScriptCall {
  std::vector<std::string> keys, args;
  std::vector<std::string> eval_args() const;  // {"<n keys>", keys…, args…}
};

class LuaScript {
 public:
  explicit LuaScript(std::string_view body);
  const std::string& body() const { return body_; }
  const std::string& sha1() const { return sha1_; }  // lowercase hex, as Redis names scripts

  // One script that runs this one, then `next` only if this one answered the integer 1, each
  // with its own KEYS and ARGV (see then_args()); it answers {first's answer} or {1, next's
  // answer}. Both bodies are used as they are written (each becomes a Lua function of its KEYS
  // and ARGV), so a script composed of two is never a copy of either. Redis runs it atomically:
  // one round trip and one EVALSHA for both.
  LuaScript then(const LuaScript& next) const;
  // The eval arguments of a then() script: both calls' keys, then the first call's key and
  // argument counts, then both calls' arguments.
  static std::vector<std::string> then_args(const ScriptCall& first, const ScriptCall& next);

 private:
  std::string body_;
  std::string sha1_;
};

}  // namespace deliverd::queue
