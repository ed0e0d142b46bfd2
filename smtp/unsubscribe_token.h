#pragma once
// The token in our default List-Unsubscribe URL: it names the account, the recipient and the
// campaign, and carries an HMAC-SHA256 over them so nobody can unsubscribe an address they
// did not receive mail for, or guess a URL. Format (URL-safe, no padding):
//   base64url(payload) "." base64url(HMAC-SHA256(key, "deliverd-unsubscribe-v1" | payload))
// payload = version byte 1 | for account, address, campaign: 2-byte big-endian length | bytes.
#include <array>
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::smtp {

struct UnsubscribeClaims {
  std::string account, address, campaign;
  bool operator==(const UnsubscribeClaims&) const = default;
};

class UnsubscribeTokens {
 public:
  static constexpr size_t kMaxTokenLength = 1024;

  // The file as core::read_key_file reads it, like [security] secret_key_file.
  static core::Result<UnsubscribeTokens, std::string> from_key_file(const std::string& path);
  static UnsubscribeTokens from_key(const std::array<unsigned char, 32>& key) { return UnsubscribeTokens(key); }

  UnsubscribeTokens(const UnsubscribeTokens&) = default;
  UnsubscribeTokens& operator=(const UnsubscribeTokens&) = default;
  ~UnsubscribeTokens();

  // Fields longer than 65535 bytes are not representable; callers pass validated job fields.
  std::string issue(const UnsubscribeClaims& c) const;
  // Checks length, alphabet, structure and the MAC (in constant time). The error is for logs;
  // the HTTP endpoint answers every failure alike so it reveals nothing.
  core::Result<UnsubscribeClaims, std::string> verify(std::string_view token) const;

 private:
  explicit UnsubscribeTokens(const std::array<unsigned char, 32>& key) : key_(key) {}
  std::string mac(std::string_view payload) const;
  std::array<unsigned char, 32> key_;
};

}  // namespace deliverd::smtp
