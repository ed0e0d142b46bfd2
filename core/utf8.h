#pragma once
// UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates, nothing past U+10FFFF.
#include <cstddef>
#include <string_view>

namespace deliverd::core {

bool is_valid_utf8(std::string_view s);
// The length a lead byte announces (1 for ASCII and for bytes that cannot lead: callers validate).
size_t utf8_sequence_length(unsigned char lead);
bool is_ascii(std::string_view s);

}  // namespace deliverd::core
