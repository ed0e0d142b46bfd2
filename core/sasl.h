#pragma once
// SASL client messages, before base64: what SMTP AUTH (RFC 4954) and IMAP AUTHENTICATE
// (RFC 9051 §6.2.2) send for each mechanism deliverd speaks. One spelling for both protocols.
#include <string>
#include <string_view>

namespace deliverd::core {

// RFC 4616: NUL, user, NUL, password (no authorisation identity).
std::string sasl_plain(std::string_view user, std::string_view password);
// Google's and Microsoft's XOAUTH2: "user=U\1auth=Bearer T\1\1".
std::string sasl_xoauth2(std::string_view user, std::string_view token);
// RFC 7628 OAUTHBEARER: the GS2 header with the user as authorisation identity, then host,
// port and the bearer token.
std::string sasl_oauthbearer(std::string_view user, std::string_view host, int port, std::string_view token);
// What a client answers to a mechanism's error challenge so that the server sends its final
// failure: XOAUTH2 an empty response, OAUTHBEARER a single ^A (RFC 7628 §3.2.3).
inline constexpr std::string_view kXoauth2ErrorAnswer = "";
inline constexpr std::string_view kOauthbearerErrorAnswer = "\x01";

}  // namespace deliverd::core
