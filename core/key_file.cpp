#include "core/key_file.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/hex.h"
#include "core/log.h"

namespace deliverd::core {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

Result<Key256, std::string> read_key_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Err(std::string("cannot read key file ") + path + ": " + std::strerror(errno));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 0077) != 0)
    log_warn("key_file_permissive", {{"path", path}, {"hint", "chmod 600 or 400"}});

  Key256 key{};
  if (data.size() == key.size()) {
    std::memcpy(key.data(), data.data(), key.size());
    OPENSSL_cleanse(data.data(), data.size());
    return key;
  }
  size_t b = 0, e = data.size();
  while (b < e && is_space(data[b])) ++b;
  while (e > b && is_space(data[e - 1])) --e;
  const size_t n = data.size();
  std::optional<std::string> raw;
  if (e - b == 2 * key.size()) raw = from_hex(std::string_view(data).substr(b, e - b));
  OPENSSL_cleanse(data.data(), data.size());
  if (b == e) return Err(std::string("key file ") + path + " is empty");
  if (!raw)
    return Err(std::string("key file ") + path + " must hold 32 raw bytes or 64 hex characters (it has " +
               std::to_string(n) + " bytes)");
  std::memcpy(key.data(), raw->data(), key.size());
  OPENSSL_cleanse(raw->data(), raw->size());
  return key;
}

}  // namespace deliverd::core
