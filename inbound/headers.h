#pragma once
// RFC 5322 header blocks as mail servers really send them: CRLF or bare LF, folded lines,
// RFC 2047 encoded words, 8-bit bytes, lines without a colon. Parsing never fails: what cannot
// be a field is skipped, and the block is bounded in fields and bytes, so a hostile message
// costs a known amount. Values keep their bytes; decode_words() is for text that a rule reads
// (a Subject), never for addresses or Message-IDs.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace deliverd::inbound {

struct HeaderField {
  std::string name;   // as sent (compare with core::iequals)
  std::string value;  // unfolded (line breaks inside the value removed), outer white space trimmed
};

struct HeaderLimits {
  size_t max_fields = 256;
  size_t max_bytes = 64 * 1024;  // of the block; the rest is not read
};

struct Headers {
  std::vector<HeaderField> fields;
  bool truncated = false;  // a limit cut the block short

  // The first field of that name (case-insensitive), or nullptr.
  const std::string* get(std::string_view name) const;
  // get() or "".
  std::string_view value(std::string_view name) const;
  bool has(std::string_view name) const { return get(name) != nullptr; }
};

// Reads fields up to the first empty line (or the end). *body_offset (optional) is where the
// body starts: after the empty line, or text.size() when there is none.
Headers parse_headers(std::string_view text, size_t* body_offset = nullptr, const HeaderLimits& limits = {});

// RFC 2047: encoded words ("=?utf-8?B?...?=", "?Q?") decoded to UTF-8; white space between two
// adjacent encoded words dropped (6.2). UTF-8, US-ASCII and ISO-8859-1 / Windows-1252 (as
// Latin-1) are converted; a word in another charset, or one that does not decode, stays as it
// was. The result is valid UTF-8: stray bytes are escaped (core::escape_utf8_lossless).
std::string decode_words(std::string_view value);

// Quoted-printable (RFC 2045 6.7) with soft line breaks; encoded_word: RFC 2047 "Q" ('_' is a
// space, no line breaks, a bad escape fails). A body keeps a bad escape as it stands.
std::optional<std::string> decode_quoted_printable(std::string_view text, bool encoded_word);

// The message ids of an In-Reply-To, References or Message-ID value: "<a@b> (c) <c@d>" →
// {"a@b", "c@d"}, without angle brackets, at most max ids, each at most 998 bytes.
std::vector<std::string> message_ids(std::string_view value, size_t max = 64);

// The address of a From / Final-Recipient style value: "Bob <bob@x>" → "bob@x", "bob@x" →
// "bob@x"; "" when there is no '@'. Syntax is not checked (core/address.h does that).
std::string address_in(std::string_view value);

}  // namespace deliverd::inbound
