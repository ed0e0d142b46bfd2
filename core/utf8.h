#pragma once
// UTF-8 as RFC 3629 defines it (no overlong forms, no surrogates, nothing past U+10FFFF), and the
// lossless escaping of peer text. What a mail server, a DNS answer or a producer sends is bytes;
// PostgreSQL text and JSON want UTF-8. escape_utf8_lossless() maps any bytes to valid UTF-8
// without losing one: a byte that is not part of a valid sequence becomes the four characters
// \xNN (lowercase hex), NUL becomes \x00 (PostgreSQL text cannot hold it), and a backslash
// becomes \\, so unescape_utf8_lossless() gives back exactly the original bytes.
#include <cstddef>
#include <string>
#include <string_view>

namespace deliverd::core {

bool is_valid_utf8(std::string_view s);
// The length a lead byte announces (1 for ASCII and for bytes that cannot lead: callers validate).
size_t utf8_sequence_length(unsigned char lead);
// Length of the well-formed sequence starting at s[i] (1 for ASCII), or 0 when the bytes there
// are not one (stray continuation byte, truncated sequence, overlong form, surrogate, or a code
// point past U+10FFFF).
size_t utf8_sequence_at(std::string_view s, size_t i);
bool is_ascii(std::string_view s);
// Cuts valid UTF-8 to at most max_bytes without splitting a character (a byte-wise resize can
// leave half a sequence, which PostgreSQL text and JSON refuse).
void truncate_utf8(std::string& s, size_t max_bytes);

// Valid UTF-8 holding no NUL and no backslash comes back unchanged.
std::string escape_utf8_lossless(std::string_view bytes);
// The inverse of escape_utf8_lossless. A backslash not followed by "\\" or "xNN" is kept as it
// is, so text that was never escaped passes through.
std::string unescape_utf8_lossless(std::string_view text);

}  // namespace deliverd::core
