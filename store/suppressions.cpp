#include "store/suppressions.h"

#include <openssl/sha.h>

#include "core/ascii.h"
#include "store/pg_blocking.h"

namespace deliverd::store {
namespace {

std::string_view trim_blanks(std::string_view a) {
  while (!a.empty() && (a.front() == ' ' || a.front() == '\t')) a.remove_prefix(1);
  while (!a.empty() && (a.back() == ' ' || a.back() == '\t')) a.remove_suffix(1);
  return a;
}

// The two keys an address may be listed under, as bytea parameters ($2, $3 of the queries below;
// the same key twice where there is no legacy one). Empty when it is not an address.
std::vector<std::optional<std::string>> key_params(std::string_view address) {
  const std::string key = suppression_hash(address);
  if (key.empty()) return {};
  const std::string legacy = legacy_suppression_hash(address);
  return {encode_bytea(key), encode_bytea(legacy.empty() ? key : legacy)};
}

}  // namespace

core::Result<core::Address, std::string> parse_listed_address(std::string_view a) {
  return core::parse_address(trim_blanks(a));
}

std::string normalize_address(std::string_view a) {
  auto parsed = parse_listed_address(a);
  return parsed ? parsed->str() : std::string();
}

std::string address_sha256(std::string_view key) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

std::string suppression_hash(std::string_view address) {
  auto parsed = parse_listed_address(address);
  return parsed ? address_sha256(core::case_folded(*parsed)) : std::string();
}

std::string legacy_suppression_hash(std::string_view address) {
  auto parsed = parse_listed_address(address);
  if (!parsed) return {};
  // The normalisation of before: white space trimmed, the domain's ASCII letters lower-cased.
  const std::string_view given = trim_blanks(address);
  const size_t at = given.rfind('@');
  const std::string old = std::string(given.substr(0, at + 1)) + core::ascii_lowercase(given.substr(at + 1));
  if (old == core::case_folded(*parsed)) return {};
  // Frozen: these rows were written with plain SHA-256, whatever address_sha256 becomes.
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(old.data()), old.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

void add_suppression(PgConnection& pg, const Suppression& s, std::function<void(core::Result<bool, std::string>)> cb) {
  std::string address = normalize_address(s.address);
  if (s.account.empty() || address.empty()) {
    // Our own caller's bad input, not the database's: answered at once.
    return cb(core::Err{std::string("suppression needs an account and an address")});
  }
  pg.query(
      "INSERT INTO suppressions (account, address, address_sha256, reason, source)"
      " VALUES ($1, $2, $3::bytea, $4, $5) ON CONFLICT (account, address_sha256) DO NOTHING",
      {s.account, address, encode_bytea(suppression_hash(address)), s.reason, s.source},
      [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err{"cannot add suppression: " + r.error});
        cb(r.affected > 0);
      });
}

void is_suppressed(PgConnection& pg, const std::string& account, const std::string& address,
                   std::function<void(core::Result<bool, std::string>)> cb) {
  auto keys = key_params(address);
  if (keys.empty()) return cb(core::Err{std::string("not an address: ") + address});
  pg.query("SELECT 1 FROM suppressions WHERE account IN ($1, '*') AND address_sha256 IN ($2::bytea, $3::bytea)",
           {account, keys[0], keys[1]}, [cb = std::move(cb)](const PgResult& r) {
             if (!r.ok) return cb(core::Err{"cannot check suppressions: " + r.error});
             cb(!r.rows.empty());
           });
}

bool is_guard_source(std::string_view source) {
  return source == "one_click" || source == "bounce" || source == "complaint" || source == "erasure";
}

void remove_suppression(PgConnection& pg, const std::string& account, const std::string& address,
                        bool may_remove_guards, std::function<void(core::Result<SuppressionRemoval, std::string>)> cb) {
  auto keys = key_params(address);
  if (account.empty() || keys.empty())
    return cb(core::Err{std::string("suppression needs an account and an address")});
  const std::string guards(kGuardSourcesSql);
  pg.query(
      "WITH t AS (SELECT source, address IS NULL AS erased FROM suppressions"
      "   WHERE account = $1 AND address_sha256 IN ($2::bytea, $3::bytea)),"
      " g AS (SELECT source FROM t WHERE source IN " + guards + " ORDER BY source LIMIT 1),"
      " d AS (DELETE FROM suppressions WHERE account = $1 AND address_sha256 IN ($2::bytea, $3::bytea)"
      "   AND ($4::boolean OR NOT EXISTS (SELECT 1 FROM g)) RETURNING 1)"
      " SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM d), coalesce((SELECT bool_or(erased) FROM t), false),"
      " coalesce((SELECT string_agg(DISTINCT source, ',') FROM t), ''), coalesce((SELECT source FROM g), '')",
      {account, keys[0], keys[1], std::string(may_remove_guards ? "true" : "false")},
      [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err{"cannot remove suppression: " + r.error});
        if (r.rows.empty()) return cb(core::Err{std::string("cannot remove suppression: no result")});
        const auto& row = r.rows[0];
        SuppressionRemoval out;
        out.found = row[0].value_or("0") != "0";
        out.removed = row[1].value_or("0") != "0";
        out.erased = row[2].value_or("f") == "t";
        out.sources = row[3].value_or("");
        out.guard_source = row[4].value_or("");
        cb(std::move(out));
      });
}

void load_suppression_hashes(
    PgConnection& pg, size_t max_rows,
    std::function<void(core::Result<std::vector<std::pair<std::string, std::string>>, std::string>)> cb) {
  // One row more than allowed tells "exactly at the bound" from "over it".
  pg.query("SELECT account, address_sha256 FROM suppressions LIMIT $1", {std::to_string(max_rows + 1)},
           [cb = std::move(cb), max_rows](const PgResult& r) {
             if (!r.ok) return cb(core::Err{"cannot load suppressions: " + r.error});
             if (r.rows.size() > max_rows)
               return cb(core::Err{"more than " + std::to_string(max_rows) + " suppressions (raise the bound)"});
             std::vector<std::pair<std::string, std::string>> out;
             out.reserve(r.rows.size());
             for (const auto& row : r.rows) {
               auto hash = decode_bytea(row[1].value_or(""));
               if (!row[0] || !hash || hash->size() != 32) continue;
               out.emplace_back(*row[0], std::move(*hash));
             }
             cb(std::move(out));
           });
}

core::Result<bool, std::string> add_suppression_blocking(const std::string& conninfo, const Suppression& s) {
  auto parsed = parse_listed_address(s.address);
  if (s.account.empty() || !parsed) return core::Err{"not an address: '" + s.address + "'" + (parsed ? "" : ": " + parsed.error())};
  const std::string address = parsed->str();
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  PgResult r = pg->exec(
      "INSERT INTO suppressions (account, address, address_sha256, reason, source)"
      " VALUES ($1, $2, $3::bytea, $4, $5) ON CONFLICT (account, address_sha256) DO NOTHING",
      {s.account, address, encode_bytea(suppression_hash(address)), s.reason, s.source});
  if (!r.ok) return core::Err{"cannot add suppression: " + r.error};
  return r.affected > 0;
}

core::Result<bool, std::string> remove_suppression_blocking(const std::string& conninfo, const std::string& account,
                                                            const std::string& address) {
  auto keys = key_params(address);
  if (account.empty() || keys.empty()) return core::Err{"not an address: '" + address + "'"};
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  PgResult r = pg->exec("DELETE FROM suppressions WHERE account = $1 AND address_sha256 IN ($2::bytea, $3::bytea)",
                        {account, keys[0], keys[1]});
  if (!r.ok) return core::Err{"cannot remove suppression: " + r.error};
  return r.affected > 0;
}

core::Result<std::vector<ListedSuppression>, std::string> list_suppressions_blocking(const std::string& conninfo,
                                                                                     const std::string& account,
                                                                                     const std::string& address,
                                                                                     size_t limit) {
  std::vector<std::optional<std::string>> keys = {std::nullopt, std::nullopt};
  if (!address.empty()) {
    keys = key_params(address);
    if (keys.empty()) return core::Err{"not an address: '" + address + "'"};
  }
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  PgResult r = pg->exec(
      "SELECT account, address, reason, source, created_at::text FROM suppressions WHERE account = $1"
      " AND ($2::bytea IS NULL OR address_sha256 IN ($2::bytea, $3::bytea)) ORDER BY created_at DESC, address LIMIT $4",
      {account, keys[0], keys[1], std::to_string(limit)});
  if (!r.ok) return core::Err{"cannot list suppressions: " + r.error};
  std::vector<ListedSuppression> out;
  for (const auto& row : r.rows)
    out.push_back(
        {{row[0].value_or(""), row[1].value_or(""), row[2].value_or(""), row[3].value_or("")}, row[4].value_or("")});
  return out;
}

}  // namespace deliverd::store
