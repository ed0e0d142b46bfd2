#pragma once
// Builds RFC 5322 messages: text, html or multipart/alternative bodies (quoted-printable or base64
// chosen by content), RFC 2047 encoded words, folding, List-Unsubscribe (RFC 2369, RFC 8058) with
// a visible link and postal footer for campaign mail, and pass-through of producer-built `raw`
// messages with only the headers we must add. Every input is validated; a bad one is an error
// value naming the field.
#include <cstddef>
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
  std::string html;               // with text: multipart/alternative; alone: text/html
  std::string raw;                // a whole message: passed through, missing required headers added
  // Campaign (commercial) mail must carry a way out: List-Unsubscribe headers, a visible link in
  // every body and the sender's postal address (CAN-SPAM). At least one of url/mailto is needed.
  std::string campaign;
  std::string unsubscribe_url;     // http(s) URL; one-click (RFC 8058) when set
  std::string unsubscribe_mailto;  // bare address, e.g. "unsub@acme.example"
  std::string postal_address;      // footer for campaign mail; "" = none
};

// What composing cost, for tests that bound the work rather than the time: the body bytes given
// (after footers) and the bytes every pass over them examined (each memchr, count, encoding
// loop and copy adds the bytes it read).
struct ComposeStats {
  size_t body_bytes = 0;
  size_t bytes_examined = 0;
};

// The message with CRLF line endings, no line over 998 octets. Addresses are checked and
// normalised by core/address.h; one with a UTF-8 local part goes into the header as raw UTF-8
// (RFC 6532), so the message must then travel with SMTPUTF8. The error names the field:
// "to_email: the address has no '@'", "header \"X Bad\": invalid name", …
// Each body is scanned once to choose its encoding and then encoded straight into the message.
core::Result<std::string, std::string> compose(const MessageSpec& m, std::time_t now,
                                               ComposeStats* stats = nullptr);

// The DATA payload: line endings made CRLF, lines starting with "." doubled (RFC 5321 4.5.2),
// and the terminating CRLF "." CRLF. Runs of lines that need nothing are copied whole; the
// examined bytes are added to `stats` (body_bytes untouched).
std::string dot_stuff(std::string_view message, ComposeStats* stats = nullptr);

// RFC 5322 checks on a finished message (CRLF only, lines ≤ 998, well-formed fields, exactly
// one From and Date, at most one of each other singular field, ASCII header values, or UTF-8
// ones in a message with UTF-8 addresses, RFC 6532).
core::Result<core::Ok, std::string> validate_message(std::string_view message, bool utf8_headers = false);

// Building blocks, exposed for tests, DKIM and the fuzz target.
std::string rfc5322_date(std::time_t t);                   // "Thu, 01 Jan 1970 00:00:00 +0000"
std::string encode_words(std::string_view utf8);           // RFC 2047 B words joined by "\r\n "
std::string quoted_printable(std::string_view crlf_text);  // RFC 2045 6.7, hard breaks kept as CRLF
std::string base64_lines(std::string_view bytes);          // RFC 2045 6.8, 76-character lines
// "Name: value\r\n" folded near 78 columns; non-ASCII values become encoded words. Errors name
// `field` (CR/LF, controls, invalid UTF-8, a word too long for 998).
core::Result<std::string, std::string> header_field(std::string_view name, std::string_view value,
                                                    std::string_view field);

// The Message-ID of a composed (or raw) message, without the angle brackets: "" when its header
// block has none. Kept with the delivery so what comes back to the mailbox can be matched to it.
std::string message_id_of(std::string_view message);

}  // namespace deliverd::smtp
