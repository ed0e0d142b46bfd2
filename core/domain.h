#pragma once
// Domain names as deliverd sends to and connects to them: mail domains of addresses, SMTP and
// IMAP hosts, MX targets. One spelling inside: lower-case A-labels.
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::core {

inline constexpr size_t kMaxDomainLength = 253;  // 255 octets on the wire, less the length bytes
inline constexpr size_t kMaxLabelLength = 63;

// Letters, digits and hyphens in labels of 1-63 octets, no hyphen at either end, 253 octets in
// all, no trailing dot. A label with non-ASCII characters is an internationalised one: mapped as
// UTS #46 says (non-transitional, so "Bücher" is "bücher" and "faß" keeps its ß) and turned into
// an A-label by libidn2 under IDNA2008; a label given as an A-label ("xn--…") must be one that
// IDNA2008 would produce. The result is lower-case ASCII. Errors name the offending label:
// "the domain label 'xn--ls8h' is not valid IDNA2008 (string contains a disallowed character)".
Result<std::string, std::string> normalize_domain(std::string_view name);

// Special-use and internal names that must never be a delivery or connection target, whatever
// DNS would answer for them: "localhost" and "*.localhost", "*.invalid" (RFC 6761), "*.local"
// (RFC 6762, multicast DNS), "*.onion" (RFC 7686), "*.home.arpa" (RFC 8375), "*.internal" (ICANN's
// private-use name) and single-label names, which a stub resolver completes from its search list
// into internal names. ".test" and ".example" are not refused: they resolve only where someone
// set them up on purpose (test rigs). Takes a normalised name; answers the rule it breaks.
std::optional<std::string_view> special_use_rule(std::string_view normalized_name);

}  // namespace deliverd::core
