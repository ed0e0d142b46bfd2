#pragma once
// Base64 (RFC 4648 section 4, with padding) and base64url (section 5, without padding), through
// OpenSSL's EVP block coder. Decoding is strict, so every byte string has exactly one accepted
// encoding: no white space, no characters from the other alphabet, padding exactly where
// section 3.2 puts it, and the unused low bits of the last character zero (section 3.5). That
// matters where an encoding is compared or signed (unsubscribe tokens) and costs nothing where
// it is not. Errors say what was wrong and where, never the input.
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::core {

std::string base64_encode(std::string_view bytes);
Result<std::string, std::string> base64_decode(std::string_view text);

std::string base64url_encode(std::string_view bytes);  // no padding
Result<std::string, std::string> base64url_decode(std::string_view text);

}  // namespace deliverd::core
