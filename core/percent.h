#pragma once
// Percent-encoding and -decoding (RFC 3986 section 2.1) for URL paths, query strings, userinfo and HTML form
// bodies. Strict: a '%' not followed by two hex digits makes the whole input invalid, since a
// caller that guessed would read a different value than the sender meant.
#include <optional>
#include <string>
#include <string_view>

namespace deliverd::core {

struct PercentDecoding {
  // application/x-www-form-urlencoded (HTML forms, RFC 8058 one-click bodies) spells a space '+'.
  bool plus_is_space = false;
  // "%00" ends C strings and splits identifiers; only a caller that passes bytes through whole
  // (a Redis password) accepts it.
  bool allow_nul = false;
};

std::optional<std::string> percent_decode(std::string_view s, PercentDecoding how = {});

// Every byte except the unreserved ones (A-Z a-z 0-9 - . _ ~) as %XX (upper case): safe in a
// query string and in an application/x-www-form-urlencoded body alike.
std::string percent_encode(std::string_view s);

}  // namespace deliverd::core
