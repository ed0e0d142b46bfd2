#pragma once
// Capabilities a server advertises in its 250 reply to EHLO (RFC 5321 4.1.1.1 and extensions).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/outcome.h"

namespace deliverd::smtp {

struct EhloCapabilities {
  std::string greeting;  // the first line: server domain and greeting text
  bool pipelining = false;
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool starttls = false;
  bool enhanced_status_codes = false;
  bool chunking = false;
  bool dsn = false;
  bool size_advertised = false;
  uint64_t size_limit = 0;                  // 0: SIZE without a (valid) limit, or none advertised
  std::vector<std::string> auth_mechanisms;  // upper-case, from "AUTH a b" and legacy "AUTH=a b"
  std::vector<std::string> keywords;         // every valid keyword, upper-case, in order

  bool has(std::string_view keyword) const;  // case-insensitive
  bool supports_auth(std::string_view mechanism) const;
};

// At most this many keywords are kept; a reply advertising more is trimmed, not refused.
inline constexpr size_t kMaxEhloKeywords = 64;

// Parses the text of a 2xx EHLO reply (lines joined with "\n", as ReplyParser produces).
// Malformed capability lines are skipped: a server's odd extension must not stop delivery.
EhloCapabilities parse_ehlo(const core::Reply& reply);

}  // namespace deliverd::smtp
