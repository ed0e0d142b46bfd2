#pragma once
// API keys for the admin API. A key is "dlv_<prefix>_<secret>": 6 random bytes of prefix and 32
// of secret, both lower-case hex, from OpenSSL's CSPRNG. The token is shown once, when created;
// the database keeps only its SHA-256 and the prefix (for an indexed lookup). Presented tokens are
// compared by hash in constant time. Roles and scopes are checked by admin/permissions.h; this
// file only stores them.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "store/pg_connection.h"

namespace deliverd::store {

inline constexpr std::string_view kApiKeyMarker = "dlv_";
inline constexpr size_t kApiKeyPrefixHex = 12;
inline constexpr size_t kApiKeySecretHex = 64;
inline constexpr size_t kApiKeyLength = 4 + kApiKeyPrefixHex + 1 + kApiKeySecretHex;

struct ApiKey {
  std::string id, prefix;
  std::string token_sha256;  // 32 raw bytes
  std::string role;          // owner | admin | user | readonly
  std::string account;       // "" = not bound to an account
  std::string scopes;        // space-separated; "" = what the role allows
  std::string name, created_by;
  std::string created_at, expires_at, last_used_at, revoked_at;  // RFC 3339 text or ""
  bool expired = false;                                          // expires_at has passed (by the database's clock)
  bool revoked() const { return !revoked_at.empty(); }
};

struct ApiKeySpec {
  std::string role, account, scopes, name, created_by;
  std::string expires_at;  // anything PostgreSQL's timestamptz accepts; "" = never
};

struct CreatedApiKey {
  ApiKey key;
  std::string token;  // the only time the secret exists outside the client
};

// A fresh token and its parts (no database).
CreatedApiKey generate_api_key();
// The prefix of a well-formed token, or nullopt: the shape is checked before any lookup.
std::optional<std::string> api_key_prefix(std::string_view token);
std::string api_key_sha256(std::string_view token);
// Constant-time comparison of the token's hash with the stored hash.
bool api_key_matches(std::string_view token, std::string_view stored_sha256);

// Async on the loop. insert generates the token.
void insert_api_key(PgConnection& pg, const ApiKeySpec& spec,
                    std::function<void(core::Result<CreatedApiKey, std::string>)> cb);
void find_api_key_by_prefix(PgConnection& pg, const std::string& prefix,
                            std::function<void(core::Result<std::optional<ApiKey>, std::string>)> cb);
void get_api_key(PgConnection& pg, const std::string& id,
                 std::function<void(core::Result<std::optional<ApiKey>, std::string>)> cb);
// account "" lists every key.
void list_api_keys(PgConnection& pg, const std::string& account,
                   std::function<void(core::Result<std::vector<ApiKey>, std::string>)> cb);
// Revokes the key and every key it created, and the keys those created, in one statement: a key
// made by a key that is gone would outlive it. cb gets the number of keys revoked now (0 when
// the key was revoked already).
void revoke_api_key(PgConnection& pg, const std::string& id, std::function<void(core::Result<int64_t, std::string>)> cb);
// Records use; writes at most once a minute per key so a busy key costs no write per request.
void touch_api_key(PgConnection& pg, const std::string& id);

// Blocking, for `deliverd key create` (never on the loop).
core::Result<CreatedApiKey, std::string> create_api_key_blocking(const std::string& conninfo, const ApiKeySpec& spec);

}  // namespace deliverd::store
