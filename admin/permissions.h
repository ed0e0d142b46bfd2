#pragma once
// Who may do what through the admin API. A key has a role; its permissions are the role's,
// narrowed by explicit scopes when it has any. Resources × read/write:
//   owner, admin: everything (admin may not create or revoke owner keys);
//   user:         read/write mailboxes, suppressions, messages, accounts (its own); read metrics;
//   readonly:     read mailboxes, suppressions, messages, accounts; read metrics.
// user and readonly keys are bound to one account; owner and admin keys may be.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"
#include "store/api_keys.h"

namespace deliverd::admin {

enum class Resource : uint8_t { Mailboxes, Suppressions, Messages, Accounts, Keys, Metrics };
inline constexpr int kResourceCount = 6;
enum class Access : uint8_t { Read, Write };

using PermissionSet = uint32_t;  // bit (resource * 2 + access)

constexpr PermissionSet permission(Resource r, Access a) {
  return PermissionSet{1} << (static_cast<int>(r) * 2 + static_cast<int>(a));
}
std::string_view to_string(Resource r);
bool is_role(std::string_view role);
// 0 for an unknown role.
PermissionSet role_permissions(std::string_view role);
// "mailboxes:read suppressions:write" (spaces or commas); "" → nullopt-free empty set is an
// error too: a key with no permission at all is refused. The error names the bad scope.
core::Result<PermissionSet, std::string> parse_scopes(std::string_view scopes);
std::string scopes_to_string(PermissionSet set);

struct Principal {
  std::string key_id, role, account;  // account "" = all accounts
  std::string expires_at;             // RFC 3339, "" = never
  PermissionSet permissions = 0;
  bool can(Resource r, Access a) const { return (permissions & permission(r, a)) != 0; }
  bool may_see_account(std::string_view a) const { return account.empty() || account == a; }
  // Owner and admin keys: the operators of the platform, who may undo what the daemon's guards did.
  bool is_operator() const { return role == "owner" || role == "admin"; }
};

// The principal for a stored key (its role narrowed by its scopes).
Principal principal_for(const store::ApiKey& key);

struct Refusal {
  int status;  // 400 or 403
  std::string code, message;
};
// Whether `creator` may create a key as described; normalises spec.scopes on success. A key
// never outlives its creator: a creator with an expiry gives the new key that expiry (or an
// earlier one); `now_ms` is the time to judge expiries by.
std::optional<Refusal> check_new_key(const Principal& creator, store::ApiKeySpec& spec, int64_t now_ms);
// Whether `actor` may revoke `key`.
std::optional<Refusal> check_revoke(const Principal& actor, const store::ApiKey& key);

}  // namespace deliverd::admin
