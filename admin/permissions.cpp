#include "admin/permissions.h"

#include <array>

#include "queue/job.h"

namespace deliverd::admin {
namespace {

constexpr std::array<std::string_view, kResourceCount> kResourceNames = {"mailboxes", "suppressions", "messages",
                                                                         "accounts",  "keys",         "metrics"};

constexpr PermissionSet all_of(Access a) {
  PermissionSet s = 0;
  for (int r = 0; r < kResourceCount; ++r) s |= permission(static_cast<Resource>(r), a);
  return s;
}

constexpr PermissionSet kAll = all_of(Access::Read) | all_of(Access::Write);
constexpr PermissionSet kUserRead =
    permission(Resource::Mailboxes, Access::Read) | permission(Resource::Suppressions, Access::Read) |
    permission(Resource::Messages, Access::Read) | permission(Resource::Accounts, Access::Read) |
    permission(Resource::Metrics, Access::Read);
constexpr PermissionSet kUser =
    kUserRead | permission(Resource::Mailboxes, Access::Write) | permission(Resource::Suppressions, Access::Write) |
    permission(Resource::Messages, Access::Write) | permission(Resource::Accounts, Access::Write);

}  // namespace

std::string_view to_string(Resource r) { return kResourceNames[static_cast<size_t>(r)]; }

bool is_role(std::string_view role) { return role_permissions(role) != 0; }

PermissionSet role_permissions(std::string_view role) {
  if (role == "owner" || role == "admin") return kAll;
  if (role == "user") return kUser;
  if (role == "readonly") return kUserRead;
  return 0;
}

core::Result<PermissionSet, std::string> parse_scopes(std::string_view scopes) {
  PermissionSet set = 0;
  size_t i = 0;
  while (i < scopes.size()) {
    if (scopes[i] == ' ' || scopes[i] == ',') {
      ++i;
      continue;
    }
    size_t j = scopes.find_first_of(" ,", i);
    if (j == std::string_view::npos) j = scopes.size();
    std::string_view scope = scopes.substr(i, j - i);
    i = j;
    size_t colon = scope.find(':');
    std::string_view res = scope.substr(0, colon), acc = colon == std::string_view::npos ? "" : scope.substr(colon + 1);
    int found = -1;
    for (int r = 0; r < kResourceCount; ++r)
      if (kResourceNames[static_cast<size_t>(r)] == res) found = r;
    if (found < 0 || (acc != "read" && acc != "write"))
      return core::Err("unknown scope '" + std::string(scope) + "' (want <resource>:read|write)");
    set |= permission(static_cast<Resource>(found), acc == "read" ? Access::Read : Access::Write);
  }
  if (set == 0) return core::Err(std::string("scopes name no permission"));
  return set;
}

std::string scopes_to_string(PermissionSet set) {
  std::string out;
  for (int r = 0; r < kResourceCount; ++r)
    for (Access a : {Access::Read, Access::Write})
      if (set & permission(static_cast<Resource>(r), a)) {
        if (!out.empty()) out += ' ';
        out += kResourceNames[static_cast<size_t>(r)];
        out += a == Access::Read ? ":read" : ":write";
      }
  return out;
}

Principal principal_for(const store::ApiKey& key) {
  Principal p;
  p.key_id = key.id;
  p.role = key.role;
  p.account = key.account;
  p.expires_at = key.expires_at;
  p.permissions = role_permissions(key.role);
  if (!key.scopes.empty()) {
    auto s = parse_scopes(key.scopes);
    // A stored scope list that no longer parses grants nothing rather than everything.
    p.permissions = s ? (p.permissions & *s) : 0;
  }
  return p;
}

std::optional<Refusal> check_new_key(const Principal& creator, store::ApiKeySpec& spec, int64_t now_ms) {
  if (!is_role(spec.role)) return Refusal{400, "invalid_role", "role must be owner, admin, user or readonly"};
  if (!creator.can(Resource::Keys, Access::Write)) return Refusal{403, "forbidden", "this key may not manage keys"};
  if (spec.role == "owner" && creator.role != "owner")
    return Refusal{403, "forbidden", "only an owner key may create owner keys"};
  if (!creator.account.empty()) {
    if (spec.account.empty()) spec.account = creator.account;
    if (spec.account != creator.account)
      return Refusal{403, "forbidden", "this key may not create keys for another account"};
  }
  if ((spec.role == "user" || spec.role == "readonly") && spec.account.empty())
    return Refusal{400, "account_required", spec.role + " keys must be bound to an account"};
  PermissionSet effective = role_permissions(spec.role);
  if (!spec.scopes.empty()) {
    auto s = parse_scopes(spec.scopes);
    if (!s) return Refusal{400, "invalid_scopes", s.error()};
    if ((*s & ~effective) != 0)
      return Refusal{400, "invalid_scopes", "scopes are wider than the " + spec.role + " role allows"};
    effective = *s;
    spec.scopes = scopes_to_string(*s);
  }
  // A key never hands out more than it holds itself.
  if ((effective & ~creator.permissions) != 0)
    return Refusal{403, "forbidden", "the new key would have permissions this key does not have"};
  int64_t want_ms = 0;
  if (!spec.expires_at.empty()) {
    if (!queue::parse_rfc3339_ms(spec.expires_at, want_ms))
      return Refusal{400, "invalid_body", "expires_at: not an RFC 3339 date-time"};
    if (want_ms <= now_ms) return Refusal{400, "invalid_body", "expires_at: must be in the future"};
  }
  // Nor for longer than it lives itself.
  if (!creator.expires_at.empty()) {
    int64_t creator_ms = 0;
    if (!queue::parse_rfc3339_ms(creator.expires_at, creator_ms))
      return Refusal{403, "forbidden", "this key's own expiry cannot be read"};
    if (spec.expires_at.empty()) spec.expires_at = creator.expires_at;
    else if (want_ms > creator_ms)
      return Refusal{400, "invalid_body", "expires_at: may not be later than this key's own expiry (" +
                                              creator.expires_at + ")"};
  }
  return std::nullopt;
}

std::optional<Refusal> check_revoke(const Principal& actor, const store::ApiKey& key) {
  if (!actor.can(Resource::Keys, Access::Write)) return Refusal{403, "forbidden", "this key may not manage keys"};
  if (key.role == "owner" && actor.role != "owner")
    return Refusal{403, "forbidden", "only an owner key may revoke owner keys"};
  if (!actor.may_see_account(key.account)) return Refusal{404, "not_found", "no such key"};
  return std::nullopt;
}

}  // namespace deliverd::admin
