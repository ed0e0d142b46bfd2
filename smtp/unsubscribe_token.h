#pragma once
// The token in our default List-Unsubscribe URL: it names the account, the recipient and the
// campaign, and carries an HMAC-SHA256 over them so nobody can unsubscribe an address they
// did not receive mail for, or guess a URL. Format (URL-safe, no padding):
//   base64url(payload) "." base64url(HMAC-SHA256(key, "deliverd-unsubscribe-v1" | payload))
// payload = version byte 2 | 4-byte key id | for account, address, campaign: 2-byte big-endian
// length | bytes. The key id (core::key_id) names the signing key, so keys rotate: links signed
// with an earlier key ([unsubscribe] old_key_files) keep working for as long as it is listed.
// Version 1 tokens (no key id, signed before keys rotated) are checked against every key.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace deliverd::smtp {

struct UnsubscribeClaims {
  std::string account, address, campaign;
  bool operator==(const UnsubscribeClaims&) const = default;
};

class UnsubscribeTokens {
 public:
  static constexpr size_t kMaxTokenLength = 1024;

  // Each file holds exactly 32 raw bytes, or 64 hex characters (surrounding whitespace ignored),
  // readable by its owner only, like [security] secret_key_file. The first key signs; the others
  // only verify. Errors name the file, never the key.
  static core::Result<UnsubscribeTokens, std::string> from_key_file(const std::string& path,
                                                                    const std::vector<std::string>& old_paths = {});
  static UnsubscribeTokens from_key(const std::array<unsigned char, 32>& key,
                                    const std::vector<std::array<unsigned char, 32>>& old = {});

  UnsubscribeTokens(const UnsubscribeTokens&) = default;
  UnsubscribeTokens& operator=(const UnsubscribeTokens&) = default;
  ~UnsubscribeTokens();

  // Fields longer than 65535 bytes are not representable; callers pass validated job fields.
  std::string issue(const UnsubscribeClaims& c) const;
  // A token in the format before key ids (for tests of links mailed by earlier versions).
  std::string issue_legacy(const UnsubscribeClaims& c) const;
  // Checks length, alphabet, structure and the MAC (in constant time). The error is for logs;
  // the HTTP endpoint answers every failure alike so it reveals nothing.
  core::Result<UnsubscribeClaims, std::string> verify(std::string_view token) const;

 private:
  struct Key {
    std::array<unsigned char, 32> bytes;
    uint32_t id;
  };
  explicit UnsubscribeTokens(std::vector<Key> keys) : keys_(std::move(keys)) {}
  static std::string mac(const Key& key, std::string_view payload);
  std::vector<Key> keys_;  // front: the signing key
};

}  // namespace deliverd::smtp
