#pragma once
// AES-256-GCM sealing of secrets at rest (mailbox passwords, tokens).
// Sealed format: version byte (1) | 12-byte random nonce | ciphertext | 16-byte tag.
// The optional associated data binds a sealed value to its owner (e.g. the mailbox id) so a
// ciphertext copied onto another row does not open.
#include <array>
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::store {

class SecretBox {
 public:
  static constexpr unsigned char kVersion = 1;
  static constexpr size_t kNonceBytes = 12;
  static constexpr size_t kTagBytes = 16;
  static constexpr size_t kOverhead = 1 + kNonceBytes + kTagBytes;

  // The file as core::read_key_file reads it: 32 raw bytes or 64 hex characters.
  static core::Result<SecretBox, std::string> from_key_file(const std::string& path);
  static SecretBox from_key(std::array<unsigned char, 32> key);
  // A fresh random key as 64 hex characters (for `deliverd key generate`).
  static std::string generate_hex_key();

  SecretBox(const SecretBox&) = default;
  SecretBox& operator=(const SecretBox&) = default;
  ~SecretBox();

  std::string seal(std::string_view plaintext, std::string_view associated_data = {}) const;
  core::Result<std::string, std::string> open(std::string_view sealed, std::string_view associated_data = {}) const;

 private:
  explicit SecretBox(const std::array<unsigned char, 32>& key) : key_(key) {}
  std::array<unsigned char, 32> key_;
};

}  // namespace deliverd::store
