#pragma once
// The token endpoint's answer to a refresh_token grant (RFC 6749 §5.1, §5.2), parsed into a
// grant or a named error. The body is hostile input: every field is bounded and checked, and
// whatever is accepted is safe to put into a SASL exchange (printable ASCII, no CR/LF).
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::oauth {

struct TokenGrant {
  std::string access_token;
  int64_t expires_in_s = 0;
  std::string refresh_token;  // "" when the endpoint did not rotate it
  std::string scope;          // "" when not given
};

// What a refresh that did not yield a token means for the mailbox.
enum class TokenErrorKind : uint8_t {
  Revoked,         // invalid_grant: the refresh token was revoked or expired (user action needed)
  ClientRejected,  // invalid_client, unauthorized_client, …: the provider's config is wrong (operator)
  Unavailable,     // 429, 5xx, other statuses: try again later
  Malformed,       // the answer did not follow RFC 6749: named in `code`
};
constexpr std::string_view kTokenErrorKindNames[] = {"revoked", "client_rejected", "unavailable", "malformed"};
constexpr std::string_view to_string(TokenErrorKind k) { return kTokenErrorKindNames[static_cast<size_t>(k)]; }

struct TokenError {
  TokenErrorKind kind = TokenErrorKind::Malformed;
  // The endpoint's "error" for Revoked/ClientRejected ("invalid_grant"); for Unavailable
  // "http_<status>"; for Malformed what was wrong: "not_json", "no_access_token",
  // "bad_access_token", "bad_expires_in", "bad_token_type", "bad_refresh_token", "bad_error".
  std::string code;
  std::string description;  // error_description, escaped and cut to 200 bytes; "" when none
};

inline constexpr size_t kMaxTokenBytes = 8192;
inline constexpr int64_t kDefaultExpiresInS = 3600;  // RFC 6749 makes expires_in only RECOMMENDED

// status: the HTTP status. 200 → a grant or Malformed; 400/401 with an "error" → its kind;
// 429 and 5xx → Unavailable.
core::Result<TokenGrant, TokenError> parse_token_answer(int status, std::string_view body);

}  // namespace deliverd::oauth
