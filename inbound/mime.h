#pragma once
// A bounded MIME walker (RFC 2045, 2046): the leaf parts of a message with their content types
// and decoded bodies, which is all the classifier reads. Written here rather than taken from
// GMime: deliverd reads reports, not arbitrary mail, and over IMAP it fetches the parts one by
// one (BODYSTRUCTURE, then BODY.PEEK[n]), so the same Message is also built from parts without
// a whole message to parse; GMime would bring GLib and GObject reference counting into a daemon
// that has neither, for a few hundred lines of boundary splitting that are fuzzed here.
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "inbound/headers.h"

namespace deliverd::inbound {

struct ContentType {
  std::string type = "text", subtype = "plain";  // lower-case
  std::vector<std::pair<std::string, std::string>> params;  // names lower-case, values unquoted

  bool is(std::string_view t, std::string_view s) const;
  std::string_view param(std::string_view name) const;  // "" when absent
};

// "multipart/report; report-type=delivery-status; boundary=\"x\"" → {multipart, report, …}.
// Anything that does not parse is text/plain (RFC 2045 5.2).
ContentType parse_content_type(std::string_view value);

struct Part {
  ContentType type;
  Headers headers;   // the part's own MIME headers
  std::string body;  // transfer encoding undone (base64, quoted-printable); at most max_part_bytes
  bool truncated = false;
};

struct Message {
  Headers headers;          // the top-level header block
  std::vector<Part> parts;  // leaves in document order; message/* parts are leaves too
  bool truncated = false;   // a limit was reached somewhere
};

struct MimeLimits {
  int max_depth = 8;
  size_t max_parts = 32;
  size_t max_part_bytes = 128 * 1024;
};

// Never fails: a message without MIME structure is one text/plain leaf, a multipart without its
// closing boundary ends at the end of the input.
Message parse_message(std::string_view raw, const MimeLimits& limits = {});

// Undoes a Content-Transfer-Encoding; 7bit/8bit/binary/unknown come back as they are, base64
// that does not decode too.
std::string decode_transfer(std::string_view body, std::string_view encoding);

}  // namespace deliverd::inbound
