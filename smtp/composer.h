#pragma once
// Builds a plain-text RFC 5322 message (MIME, RFC 2047 encoded words, quoted-printable) and the
// dot-stuffed DATA payload. Every input is validated; a bad one is an error value naming the field.
#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace deliverd::smtp {

struct MessageSpec {
  std::string from_email, from_name, to_email, to_name, reply_to, subject, text;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, in order
  std::string message_id_domain;  // "" → the domain of from_email
};

// The message with CRLF line endings, no line over 998 octets. The error names the field:
// "to_email: missing '@'", "header \"X Bad\": invalid name", …
core::Result<std::string, std::string> compose(const MessageSpec& m, std::time_t now);

// The DATA payload: line endings made CRLF, lines starting with "." doubled (RFC 5321 4.5.2),
// and the terminating CRLF "." CRLF.
std::string dot_stuff(std::string_view message);

// Building blocks, exposed for tests and for the later HTML/DKIM work.
std::string rfc5322_date(std::time_t t);                   // "Thu, 01 Jan 1970 00:00:00 +0000"
std::string encode_words(std::string_view utf8);           // RFC 2047 B words joined by "\r\n "
std::string quoted_printable(std::string_view crlf_text);  // RFC 2045 6.7, hard breaks kept as CRLF
bool is_valid_utf8(std::string_view s);

}  // namespace deliverd::smtp
