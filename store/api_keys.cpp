#include "store/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <stdexcept>

#include "core/hex.h"
#include "store/pg_blocking.h"

namespace deliverd::store {
namespace {

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  // A key from a failed CSPRNG would be guessable: refusing to go on is the only safe answer.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return core::to_hex(raw);
}

bool all_lower_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

constexpr const char* kColumns =
    "id, prefix, token_sha256, role, coalesce(account, ''), coalesce(scopes, ''), coalesce(name, ''),"
    " coalesce(created_by, ''), to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " coalesce(to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''),"
    " coalesce(to_char(last_used_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''),"
    " coalesce(to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''),"
    " (expires_at IS NOT NULL AND expires_at <= now())";

ApiKey from_row(const std::vector<std::optional<std::string>>& row) {
  auto s = [&](size_t i) { return row.size() > i && row[i] ? *row[i] : std::string(); };
  ApiKey k;
  k.id = s(0);
  k.prefix = s(1);
  k.token_sha256 = decode_bytea(s(2)).value_or("");
  k.role = s(3);
  k.account = s(4);
  k.scopes = s(5);
  k.name = s(6);
  k.created_by = s(7);
  k.created_at = s(8);
  k.expires_at = s(9);
  k.last_used_at = s(10);
  k.revoked_at = s(11);
  k.expired = s(12) == "t";
  return k;
}

std::optional<std::string> opt(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

const char* kInsert =
    "INSERT INTO api_keys (id, prefix, token_sha256, role, account, scopes, name, created_by, expires_at)"
    " VALUES ($1, $2, $3::bytea, $4, $5, $6, $7, $8, $9::timestamptz) RETURNING ";

std::vector<std::optional<std::string>> insert_params(const CreatedApiKey& c, const ApiKeySpec& spec) {
  return {c.key.id,       c.key.prefix,         encode_bytea(c.key.token_sha256),
          spec.role,      opt(spec.account),    opt(spec.scopes),
          opt(spec.name), opt(spec.created_by), opt(spec.expires_at)};
}

}  // namespace

CreatedApiKey generate_api_key() {
  CreatedApiKey c;
  c.key.prefix = random_hex(kApiKeyPrefixHex / 2);
  c.key.id = "key_" + c.key.prefix;
  c.token = std::string(kApiKeyMarker) + c.key.prefix + "_" + random_hex(kApiKeySecretHex / 2);
  c.key.token_sha256 = api_key_sha256(c.token);
  return c;
}

std::optional<std::string> api_key_prefix(std::string_view token) {
  if (token.size() != kApiKeyLength || token.substr(0, kApiKeyMarker.size()) != kApiKeyMarker) return std::nullopt;
  std::string_view prefix = token.substr(kApiKeyMarker.size(), kApiKeyPrefixHex);
  std::string_view secret = token.substr(kApiKeyMarker.size() + kApiKeyPrefixHex + 1);
  if (token[kApiKeyMarker.size() + kApiKeyPrefixHex] != '_' || !all_lower_hex(prefix) || !all_lower_hex(secret))
    return std::nullopt;
  return std::string(prefix);
}

std::string api_key_sha256(std::string_view token) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

bool api_key_matches(std::string_view token, std::string_view stored_sha256) {
  std::string h = api_key_sha256(token);
  // Hash the token even when the stored value is unusable, so timing does not tell them apart.
  if (stored_sha256.size() != h.size()) return false;
  return CRYPTO_memcmp(h.data(), stored_sha256.data(), h.size()) == 0;
}

void insert_api_key(PgConnection& pg, const ApiKeySpec& spec,
                    std::function<void(core::Result<CreatedApiKey, std::string>)> cb) {
  CreatedApiKey c = generate_api_key();
  auto params = insert_params(c, spec);
  pg.query(std::string(kInsert) + kColumns, std::move(params),
           [cb = std::move(cb), token = c.token](const PgResult& r) {
             if (!r.ok) return cb(core::Err("cannot create key: " + r.error));
             if (r.rows.empty()) return cb(core::Err(std::string("cannot create key: no row returned")));
             cb(CreatedApiKey{from_row(r.rows[0]), token});
           });
}

void find_api_key_by_prefix(PgConnection& pg, const std::string& prefix,
                            std::function<void(core::Result<std::optional<ApiKey>, std::string>)> cb) {
  pg.query(std::string("SELECT ") + kColumns + " FROM api_keys WHERE prefix = $1", {prefix},
           [cb = std::move(cb)](const PgResult& r) {
             if (!r.ok) return cb(core::Err("cannot look up key: " + r.error));
             if (r.rows.empty()) return cb(std::optional<ApiKey>());
             cb(std::optional<ApiKey>(from_row(r.rows[0])));
           });
}

void get_api_key(PgConnection& pg, const std::string& id,
                 std::function<void(core::Result<std::optional<ApiKey>, std::string>)> cb) {
  pg.query(std::string("SELECT ") + kColumns + " FROM api_keys WHERE id = $1", {id},
           [cb = std::move(cb)](const PgResult& r) {
             if (!r.ok) return cb(core::Err("cannot read key: " + r.error));
             if (r.rows.empty()) return cb(std::optional<ApiKey>());
             cb(std::optional<ApiKey>(from_row(r.rows[0])));
           });
}

void list_api_keys(PgConnection& pg, const std::string& account,
                   std::function<void(core::Result<std::vector<ApiKey>, std::string>)> cb) {
  pg.query(std::string("SELECT ") + kColumns +
               " FROM api_keys WHERE ($1::text IS NULL OR account = $1) ORDER BY created_at, id",
           {opt(account)}, [cb = std::move(cb)](const PgResult& r) {
             if (!r.ok) return cb(core::Err("cannot list keys: " + r.error));
             std::vector<ApiKey> out;
             for (const auto& row : r.rows) out.push_back(from_row(row));
             cb(std::move(out));
           });
}

void revoke_api_key(PgConnection& pg, const std::string& id,
                    std::function<void(core::Result<int64_t, std::string>)> cb) {
  // UNION (not UNION ALL) stops at keys already in the tree, so even a cycle written into the
  // table by hand ends.
  pg.query(
      "WITH RECURSIVE tree(id) AS (SELECT id FROM api_keys WHERE id = $1"
      " UNION SELECT k.id FROM api_keys k JOIN tree t ON k.created_by = t.id)"
      " UPDATE api_keys SET revoked_at = now() WHERE id IN (SELECT id FROM tree) AND revoked_at IS NULL",
      {id}, [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot revoke key: " + r.error));
        cb(static_cast<int64_t>(r.affected));
      });
}

void touch_api_key(PgConnection& pg, const std::string& id) {
  pg.query(
      "UPDATE api_keys SET last_used_at = now() WHERE id = $1"
      " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
      {id}, [](const PgResult&) {});
}

core::Result<CreatedApiKey, std::string> create_api_key_blocking(const std::string& conninfo, const ApiKeySpec& spec) {
  auto db = detail::BlockingPg::connect(conninfo);
  if (!db) return core::Err(db.error());
  CreatedApiKey c = generate_api_key();
  PgResult r = db->exec(std::string(kInsert) + kColumns, insert_params(c, spec));
  if (!r.ok) return core::Err("cannot create key: " + r.error);
  if (r.rows.empty()) return core::Err(std::string("cannot create key: no row returned"));
  return CreatedApiKey{from_row(r.rows[0]), c.token};
}

}  // namespace deliverd::store
