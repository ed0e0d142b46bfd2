#pragma once
// The 256-bit keys deliverd reads from files ([security] secret_key_file and old_secret_key_files,
// [unsubscribe] key_file and old_key_files): exactly 32 raw bytes, or 64 hex characters with
// surrounding white space ignored, the way `openssl rand -hex 32 > file` writes them — and other
// private material (DKIM keys). A file that group or others may read is refused, naming the file
// and its mode: a key readable by another account of the host is a key already shared. The mode
// is checked on the descriptor that is read, so nothing can swap the file in between. Errors
// name the file and the problem, never key material; every copy of the file's bytes is wiped.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::core {

using Key256 = std::array<unsigned char, 32>;

// The whole file, if only its owner may read it.
Result<std::string, std::string> read_private_file(const std::string& path);

Result<Key256, std::string> read_key_file(const std::string& path);

// A short public name for a key (the first 4 bytes of SHA-256 over a fixed label and the key),
// written into what the key seals or signs, so the right key of several is found at once.
uint32_t key_id(const Key256& key);
std::string key_id_hex(uint32_t id);

// HKDF-SHA256 (RFC 5869): a 32-byte key for one purpose (info) from a master key.
Key256 hkdf_sha256(const Key256& master, std::string_view salt, std::string_view info);

}  // namespace deliverd::core
