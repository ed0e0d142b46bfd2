#include "core/key_file.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>

#include "core/hex.h"

namespace deliverd::core {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

constexpr size_t kMaxPrivateFile = 1 << 20;

}  // namespace

Result<std::string, std::string> read_private_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Err("cannot read key file " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return Err("cannot read key file " + path + ": " + std::strerror(e));
  }
  if ((st.st_mode & 0077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Err("key file " + path + " is readable by group or others (mode " + mode +
               "): make it private with chmod 600 (or 400)");
  }
  std::string data;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      OPENSSL_cleanse(data.data(), data.size());
      return Err("cannot read key file " + path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxPrivateFile) {
      ::close(fd);
      OPENSSL_cleanse(data.data(), data.size());
      OPENSSL_cleanse(buf, sizeof buf);
      return Err("key file " + path + " is larger than 1 MiB");
    }
  }
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  return data;
}

Result<Key256, std::string> read_key_file(const std::string& path) {
  auto file = read_private_file(path);
  if (!file) return Err(file.error());
  std::string& data = *file;
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

uint32_t key_id(const Key256& key) {
  static constexpr std::string_view kLabel = "deliverd key id v1";
  std::string data(kLabel);
  data.append(reinterpret_cast<const char*>(key.data()), key.size());
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  OPENSSL_cleanse(data.data(), data.size());
  return (uint32_t(md[0]) << 24) | (uint32_t(md[1]) << 16) | (uint32_t(md[2]) << 8) | uint32_t(md[3]);
}

std::string key_id_hex(uint32_t id) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", id);
  return buf;
}

Key256 hkdf_sha256(const Key256& master, std::string_view salt, std::string_view info) {
  Key256 out{};
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr),
                                                                  &EVP_PKEY_CTX_free);
  size_t len = out.size();
  bool ok = ctx && EVP_PKEY_derive_init(ctx.get()) == 1 && EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) == 1 &&
            EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), master.data(), static_cast<int>(master.size())) == 1 &&
            EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), reinterpret_cast<const unsigned char*>(salt.data()),
                                        static_cast<int>(salt.size())) == 1 &&
            EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), reinterpret_cast<const unsigned char*>(info.data()),
                                        static_cast<int>(info.size())) == 1 &&
            EVP_PKEY_derive(ctx.get(), out.data(), &len) == 1 && len == out.size();
  // Never depends on input: a failure here is a broken crypto library.
  if (!ok) throw std::runtime_error("HKDF-SHA256 failed");
  return out;
}

}  // namespace deliverd::core
