#pragma once
// AES-256-GCM sealing of secrets at rest (mailbox passwords, tokens), with key rotation.
// Sealed format, version 2: 2 | 4-byte key id | 12-byte random nonce | ciphertext | 16-byte tag;
// the version byte and key id are authenticated with the associated data. Version 1 (written
// before keys rotated): 1 | nonce | ciphertext | tag, opened by trying each configured key.
// The associated data binds a sealed value to its owner (its mailbox) so a ciphertext copied
// onto another row does not open. One key seals (the current one); earlier keys only open, until
// `deliverd rekey` has resealed everything with the current key.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/key_file.h"
#include "core/result.h"

namespace deliverd::store {

class SecretBox {
 public:
  static constexpr unsigned char kVersion = 2;
  static constexpr unsigned char kLegacyVersion = 1;
  static constexpr size_t kNonceBytes = 12;
  static constexpr size_t kTagBytes = 16;
  static constexpr size_t kKeyIdBytes = 4;
  static constexpr size_t kOverhead = 1 + kKeyIdBytes + kNonceBytes + kTagBytes;
  static constexpr size_t kLegacyOverhead = 1 + kNonceBytes + kTagBytes;

  // Each file holds exactly 32 raw bytes, or 64 hex characters (surrounding whitespace ignored),
  // and is readable by its owner only. Errors name the file and the problem, never key material.
  static core::Result<SecretBox, std::string> from_key_file(const std::string& path,
                                                            const std::vector<std::string>& old_paths = {});
  static SecretBox from_key(std::array<unsigned char, 32> key, std::vector<std::array<unsigned char, 32>> old = {});
  // A fresh random key as 64 hex characters (for `deliverd key generate`).
  static std::string generate_hex_key();

  SecretBox(const SecretBox&) = default;
  SecretBox& operator=(const SecretBox&) = default;
  ~SecretBox();

  std::string seal(std::string_view plaintext, std::string_view associated_data = {}) const;
  core::Result<std::string, std::string> open(std::string_view sealed, std::string_view associated_data = {}) const;
  // The format version of a sealed value (0 when it is too short to be one).
  static unsigned char version_of(std::string_view sealed);
  // Sealed in the current format with the current key: nothing for `rekey` to do.
  bool is_current(std::string_view sealed) const;
  uint32_t key_id() const { return keys_.front().id; }
  size_t key_count() const { return keys_.size(); }
  // A 32-byte key for one purpose, derived from the current key with HKDF-SHA256.
  core::Key256 derive(std::string_view salt, std::string_view info) const;
  // The same derivation from every key, the current one first (old keys after, in the order
  // configured): for keys that must still recognise what earlier keys produced.
  std::vector<core::Key256> derive_all(std::string_view salt, std::string_view info) const;

 private:
  struct Key {
    core::Key256 bytes;
    uint32_t id;
  };
  explicit SecretBox(std::vector<Key> keys) : keys_(std::move(keys)) {}
  const Key* find(uint32_t id) const;
  std::vector<Key> keys_;  // front: the current key
};

}  // namespace deliverd::store
