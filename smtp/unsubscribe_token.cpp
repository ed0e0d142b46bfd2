#include "smtp/unsubscribe_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <sstream>

namespace deliverd::smtp {
namespace {

constexpr std::string_view kContext = "deliverd-unsubscribe-v1";
constexpr unsigned char kVersion = 1;

int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

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

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string base64url(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (size_t rest = in.size() - i; rest > 0) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    if (rest == 2) out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

core::Result<std::string, std::string> base64url_decode(std::string_view s) {
  if (s.size() % 4 == 1) return core::Err{std::string("bad base64url length")};
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v = b64url_value(c);
    if (v < 0) return core::Err{std::string("bad base64url character")};
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  // Unused low bits must be zero, so each byte string has exactly one encoding.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return core::Err{std::string("non-canonical base64url")};
  return out;
}

core::Result<UnsubscribeTokens, std::string> UnsubscribeTokens::from_key_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::Err{"cannot read key file " + path};
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string raw = ss.str();
  std::array<unsigned char, 32> key{};
  if (raw.size() == 32) {
    std::copy(raw.begin(), raw.end(), key.begin());
    return UnsubscribeTokens(key);
  }
  std::string_view t = raw;
  while (!t.empty() && isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  while (!t.empty() && isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  if (t.size() != 64) return core::Err{"key file " + path + ": need 32 raw bytes or 64 hex characters"};
  for (size_t i = 0; i < 32; ++i) {
    int hi = hex_value(t[2 * i]), lo = hex_value(t[2 * i + 1]);
    if (hi < 0 || lo < 0) return core::Err{"key file " + path + ": not hexadecimal"};
    key[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  OPENSSL_cleanse(raw.data(), raw.size());
  return UnsubscribeTokens(key);
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
  return base64url(payload) + "." + base64url(mac(payload));
}

core::Result<UnsubscribeClaims, std::string> UnsubscribeTokens::verify(std::string_view token) const {
  if (token.empty() || token.size() > kMaxTokenLength) return core::Err{std::string("token length")};
  size_t dot = token.find('.');
  if (dot == std::string_view::npos) return core::Err{std::string("token has no MAC")};
  auto payload = base64url_decode(token.substr(0, dot));
  auto tag = base64url_decode(token.substr(dot + 1));
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
