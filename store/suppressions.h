#pragma once
// The per-account suppression list in PostgreSQL: addresses that must not be mailed again.
// Minimal by design (the policy module later adds LISTEN/NOTIFY and an in-memory set); both
// calls are async on the loop through PgConnection.
#include <functional>
#include <string>
#include <string_view>

#include "core/result.h"
#include "store/pg_connection.h"

namespace deliverd::store {

struct Suppression {
  std::string account, address;
  std::string reason;  // "unsubscribed", "hard_bounce", "manual", …
  std::string source;  // "one_click", "bounce", "api", …
};

// Trims surrounding white space and lower-cases the domain; the local part is kept as given
// (RFC 5321 2.4: it may be case-sensitive). "" if there is no '@' with text on both sides.
std::string normalize_address(std::string_view address);
// SHA-256 of the normalised address, 32 raw bytes.
std::string address_sha256(std::string_view normalized);

// Idempotent: a second add for the same account and address keeps the first row. cb gets true
// when a row was inserted, false when it was already there, or an error.
void add_suppression(PgConnection& pg, const Suppression& s, std::function<void(core::Result<bool, std::string>)> cb);

// cb gets whether the account has suppressed the address, or an error.
void is_suppressed(PgConnection& pg, const std::string& account, const std::string& address,
                   std::function<void(core::Result<bool, std::string>)> cb);

}  // namespace deliverd::store
