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
constexpr unsigned char kLegacyVersion = 1;
constexpr unsigned char kVersion = 2;

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

core::Result<UnsubscribeTokens, std::string> UnsubscribeTokens::from_key_file(
    const std::string& path, const std::vector<std::string>& old_paths) {
  std::vector<std::string> paths = {path};
  paths.insert(paths.end(), old_paths.begin(), old_paths.end());
  std::vector<Key> keys;
  for (const auto& p : paths) {
    auto k = core::read_key_file(p);
    if (!k) {
      for (auto& key : keys) OPENSSL_cleanse(key.bytes.data(), key.bytes.size());
      return core::Err(k.error());
    }
    keys.push_back(Key{*k, core::key_id(*k)});
    OPENSSL_cleanse(k->data(), k->size());
  }
  return UnsubscribeTokens(std::move(keys));
}

UnsubscribeTokens UnsubscribeTokens::from_key(const std::array<unsigned char, 32>& key,
                                              const std::vector<std::array<unsigned char, 32>>& old) {
  std::vector<Key> keys = {Key{key, core::key_id(key)}};
  for (const auto& k : old) keys.push_back(Key{k, core::key_id(k)});
  return UnsubscribeTokens(std::move(keys));
}

UnsubscribeTokens::~UnsubscribeTokens() {
  for (auto& k : keys_) OPENSSL_cleanse(k.bytes.data(), k.bytes.size());
}

std::string UnsubscribeTokens::mac(const Key& key, std::string_view payload) {
  std::string data(kContext);
  data += payload;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.bytes.data(), static_cast<int>(key.bytes.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string UnsubscribeTokens::issue(const UnsubscribeClaims& c) const {
  const Key& key = keys_.front();
  std::string payload(1, static_cast<char>(kVersion));
  for (int shift = 24; shift >= 0; shift -= 8) payload += static_cast<char>((key.id >> shift) & 0xff);
  put_field(payload, c.account);
  put_field(payload, c.address);
  put_field(payload, c.campaign);
  return core::base64url_encode(payload) + "." + core::base64url_encode(mac(key, payload));
}

std::string UnsubscribeTokens::issue_legacy(const UnsubscribeClaims& c) const {
  std::string payload(1, static_cast<char>(kLegacyVersion));
  put_field(payload, c.account);
  put_field(payload, c.address);
  put_field(payload, c.campaign);
  return core::base64url_encode(payload) + "." + core::base64url_encode(mac(keys_.front(), payload));
}

core::Result<UnsubscribeClaims, std::string> UnsubscribeTokens::verify(std::string_view token) const {
  if (token.empty() || token.size() > kMaxTokenLength) return core::Err{std::string("token length")};
  size_t dot = token.find('.');
  if (dot == std::string_view::npos) return core::Err{std::string("token has no MAC")};
  auto payload = core::base64url_decode(token.substr(0, dot));
  auto tag = core::base64url_decode(token.substr(dot + 1));
  if (!payload || !tag) return core::Err{std::string("token is not base64url")};
  std::string_view in = *payload;
  if (in.empty()) return core::Err{std::string("token version")};
  auto matches = [&](const Key& key) {
    std::string expected = mac(key, *payload);
    return tag->size() == expected.size() && CRYPTO_memcmp(tag->data(), expected.data(), expected.size()) == 0;
  };
  const auto version = static_cast<unsigned char>(in[0]);
  in.remove_prefix(1);
  if (version == kVersion) {
    if (in.size() < 4) return core::Err{std::string("token payload malformed")};
    uint32_t id = 0;
    for (int i = 0; i < 4; ++i) id = (id << 8) | static_cast<uint8_t>(in[static_cast<size_t>(i)]);
    in.remove_prefix(4);
    const Key* key = nullptr;
    for (const auto& k : keys_)
      if (k.id == id) key = &k;
    if (!key) return core::Err{"token signed with key id " + core::key_id_hex(id) + ", which is not configured"};
    if (!matches(*key)) return core::Err{std::string("token MAC mismatch")};
  } else if (version == kLegacyVersion) {
    bool any = false;
    for (const auto& k : keys_) any = matches(k) || any;
    if (!any) return core::Err{std::string("token MAC mismatch")};
  } else {
    return core::Err{std::string("token version")};
  }
  UnsubscribeClaims c;
  if (!get_field(in, c.account) || !get_field(in, c.address) || !get_field(in, c.campaign) || !in.empty())
    return core::Err{std::string("token payload malformed")};
  return c;
}

}  // namespace deliverd::smtp
