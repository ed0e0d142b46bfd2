#include "queue/lua_script.h"

#include <openssl/evp.h>

#include <stdexcept>

#include "core/hex.h"

namespace deliverd::queue {

LuaScript::LuaScript(std::string_view body) : body_(body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(body_.data(), body_.size(), digest, &len, EVP_sha1(), nullptr) != 1)
    throw std::runtime_error("SHA-1 is not available from OpenSSL");
  sha1_ = core::to_hex(std::string_view(reinterpret_cast<const char*>(digest), len));
}

}  // namespace deliverd::queue
