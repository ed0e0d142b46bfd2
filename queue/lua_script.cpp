#include "queue/lua_script.h"

#include <openssl/evp.h>

#include <stdexcept>

#include "core/hex.h"

namespace deliverd::queue {

std::vector<std::string> ScriptCall::eval_args() const {
  std::vector<std::string> out;
  out.reserve(1 + keys.size() + args.size());
  out.push_back(std::to_string(keys.size()));
  out.insert(out.end(), keys.begin(), keys.end());
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

LuaScript::LuaScript(std::string_view body) : body_(body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(body_.data(), body_.size(), digest, &len, EVP_sha1(), nullptr) != 1)
    throw std::runtime_error("SHA-1 is not available from OpenSSL");
  sha1_ = core::to_hex(std::string_view(reinterpret_cast<const char*>(digest), len));
}

// Each body becomes a local function whose parameters shadow the global KEYS and ARGV, so it
// reads its own slice of them with the indices it was written with.
LuaScript LuaScript::then(const LuaScript& next) const {
  std::string body = "local function first(KEYS, ARGV)\n" + body_ + "\nend\n" +
                     "local function second(KEYS, ARGV)\n" + next.body_ + "\nend\n" +
                     R"lua(local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local r = first({unpack(KEYS, 1, nk)}, {unpack(ARGV, 3, 2 + na)})
if r ~= 1 then return {r} end
return {r, second({unpack(KEYS, nk + 1, #KEYS)}, {unpack(ARGV, 3 + na, #ARGV)})}
)lua";
  return LuaScript(body);
}

std::vector<std::string> LuaScript::then_args(const ScriptCall& first, const ScriptCall& next) {
  std::vector<std::string> out;
  out.reserve(3 + first.keys.size() + next.keys.size() + first.args.size() + next.args.size());
  out.push_back(std::to_string(first.keys.size() + next.keys.size()));
  out.insert(out.end(), first.keys.begin(), first.keys.end());
  out.insert(out.end(), next.keys.begin(), next.keys.end());
  out.push_back(std::to_string(first.keys.size()));
  out.push_back(std::to_string(first.args.size()));
  out.insert(out.end(), first.args.begin(), first.args.end());
  out.insert(out.end(), next.args.begin(), next.args.end());
  return out;
}

}  // namespace deliverd::queue
