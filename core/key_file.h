#pragma once
// The 256-bit keys deliverd reads from files ([security] secret_key_file, [unsubscribe]
// key_file): exactly 32 raw bytes, or 64 hex characters with surrounding white space ignored,
// the way `openssl rand -hex 32 > file` writes them. Errors name the file and the problem,
// never key material; every copy of the file's bytes is wiped.
#include <array>
#include <string>

#include "core/result.h"

namespace deliverd::core {

using Key256 = std::array<unsigned char, 32>;

// A file others may read is warned about (key_file_permissive) and still used.
Result<Key256, std::string> read_key_file(const std::string& path);

}  // namespace deliverd::core
