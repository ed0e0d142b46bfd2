#pragma once
// How a mail connection is protected, as a mailbox row, the API and the command line name it.
// none: plaintext. starttls: upgrade after EHLO (RFC 3207). tls: TLS from the first byte (RFC 8314,
// port 465).
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/names.h"

namespace deliverd::core {

enum class Security : uint8_t { None, StartTls, Tls };

inline constexpr Named<Security> kSecurityNames[] = {
    {Security::None, "none"},
    {Security::StartTls, "starttls"},
    {Security::Tls, "tls"},
};
static_assert(in_order(kSecurityNames));

constexpr std::string_view to_string(Security s) { return name_in(kSecurityNames, s); }
constexpr std::optional<Security> security_from_name(std::string_view n) { return value_in(kSecurityNames, n); }

}  // namespace deliverd::core
