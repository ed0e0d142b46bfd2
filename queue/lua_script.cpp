#include "queue/lua_script.h"

#include <openssl/evp.h>

#include <stdexcept>

namespace deliverd::queue {

LuaScript::LuaScript(std::string_view body) : body_(body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(body_.data(), body_.size(), digest, &len, EVP_sha1(), nullptr) != 1)
    throw std::runtime_error("SHA-1 is not available from OpenSSL");
  static constexpr char kHex[] = "0123456789abcdef";
  sha1_.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    sha1_ += kHex[digest[i] >> 4];
    sha1_ += kHex[digest[i] & 0xf];
  }
}

}  // namespace deliverd::queue
