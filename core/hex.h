#pragma once
// Lowercase hexadecimal, the one spelling deliverd writes: SHA-256 digests in the store and API,
// bytea literals, random tokens and keys, Redis script hashes.
#include <optional>
#include <string>
#include <string_view>

namespace deliverd::core {

std::string to_hex(std::string_view bytes);
// Either case; nullopt for an odd length or a character that is not a hex digit.
std::optional<std::string> from_hex(std::string_view hex);

}  // namespace deliverd::core
