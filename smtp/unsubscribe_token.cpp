#include "smtp/unsubscribe_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstdint>

#include "core/base64.h"
#include "core/key_file.h"

namespace deliverd::smtp {
namespace {

constexpr std::string_view kContext = "deliverd-unsubscribe-v1";
constexpr unsigned char kVersion = 1;

void put_field(std::string& out, std::string_view v) {
  size_t n = std::min<size_t>(v.size(), 0xffff);
  out += static_cast<char>((n >> 8) & 0xff);
  out += static_cast<char>(n & 0xff);
  out.append(v.substr(0, n));
}

bool get_field(std::string_view& in, std::string& out) {
  if (in.size() < 2) return false;
  size_t n = (size_t(uint8_t(in[0])) << 8) | uint8_t(in[1]);
  in.remove_prefix(2);
  if (in.size() < n) return false;
  out.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

}  // namespace

core::Result<UnsubscribeTokens, std::string> UnsubscribeTokens::from_key_file(const std::string& path) {
  auto key = core::read_key_file(path);
  if (!key) return core::Err{key.error()};
  UnsubscribeTokens tokens(*key);
  OPENSSL_cleanse(key->data(), key->size());
  return tokens;
}

UnsubscribeTokens::~UnsubscribeTokens() { OPENSSL_cleanse(key_.data(), key_.size()); }

std::string UnsubscribeTokens::mac(std::string_view payload) const {
  std::string data(kContext);
  data += payload;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string UnsubscribeTokens::issue(const UnsubscribeClaims& c) const {
  std::string payload(1, static_cast<char>(kVersion));
  put_field(payload, c.account);
  put_field(payload, c.address);
  put_field(payload, c.campaign);
  return core::base64url_encode(payload) + "." + core::base64url_encode(mac(payload));
}

core::Result<UnsubscribeClaims, std::string> UnsubscribeTokens::verify(std::string_view token) const {
  if (token.empty() || token.size() > kMaxTokenLength) return core::Err{std::string("token length")};
  size_t dot = token.find('.');
  if (dot == std::string_view::npos) return core::Err{std::string("token has no MAC")};
  auto payload = core::base64url_decode(token.substr(0, dot));
  auto tag = core::base64url_decode(token.substr(dot + 1));
  if (!payload || !tag) return core::Err{std::string("token is not base64url")};
  std::string expected = mac(*payload);
  if (tag->size() != expected.size() || CRYPTO_memcmp(tag->data(), expected.data(), expected.size()) != 0)
    return core::Err{std::string("token MAC mismatch")};
  std::string_view in = *payload;
  if (in.empty() || static_cast<unsigned char>(in[0]) != kVersion) return core::Err{std::string("token version")};
  in.remove_prefix(1);
  UnsubscribeClaims c;
  if (!get_field(in, c.account) || !get_field(in, c.address) || !get_field(in, c.campaign) || !in.empty())
    return core::Err{std::string("token payload malformed")};
  return c;
}

}  // namespace deliverd::smtp
