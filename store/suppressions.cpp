#include "store/suppressions.h"


#include "core/ascii.h"
#include "store/pg_blocking.h"

namespace deliverd::store {
namespace {

std::string_view trim_blanks(std::string_view a) {
  while (!a.empty() && (a.front() == ' ' || a.front() == '\t')) a.remove_prefix(1);
  while (!a.empty() && (a.back() == ' ' || a.back() == '\t')) a.remove_suffix(1);
  return a;
}

// Insert under the current key unless a row of the address (under any of its hashes) is there.
std::string insert_sql() {
  return "INSERT INTO suppressions (account, address, address_sha256, reason, source)"
         " SELECT $1, $2, $3::bytea, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM suppressions WHERE account = $1"
         " AND address_sha256 " + any_candidate_sql(6) + ") ON CONFLICT (account, address_sha256) DO NOTHING";
}

}  // namespace

core::Result<core::Address, std::string> parse_listed_address(std::string_view a) {
  return core::parse_address(trim_blanks(a));
}

std::string normalize_address(std::string_view a) {
  auto parsed = parse_listed_address(a);
  return parsed ? parsed->str() : std::string();
}

void add_suppression(PgConnection& pg, const AddressHasher& addresses, const Suppression& s,
                     std::function<void(core::Result<bool, std::string>)> cb) {
  std::string address = normalize_address(s.address);
  if (s.account.empty() || address.empty()) {
    // Our own caller's bad input, not the database's: answered at once.
    return cb(core::Err{std::string("suppression needs an account and an address")});
  }
  pg.query(
      insert_sql(),
      {s.account, address, encode_bytea(addresses.key(address)), s.reason, s.source,
       AddressHasher::sql_list(addresses.candidates(address))},
      [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err{"cannot add suppression: " + r.error});
        cb(r.affected > 0);
      });
}

void is_suppressed(PgConnection& pg, const AddressHasher& addresses, const std::string& account,
                   const std::string& address, std::function<void(core::Result<bool, std::string>)> cb) {
  auto keys = addresses.candidates(address);
  if (keys.empty()) return cb(core::Err{std::string("not an address: ") + address});
  pg.query("SELECT 1 FROM suppressions WHERE account IN ($1, '*') AND address_sha256 " + any_candidate_sql(2) +
               " LIMIT 1",
           {account, AddressHasher::sql_list(keys)}, [cb = std::move(cb)](const PgResult& r) {
             if (!r.ok) return cb(core::Err{"cannot check suppressions: " + r.error});
             cb(!r.rows.empty());
           });
}

bool is_guard_source(std::string_view source) {
  return source == "one_click" || source == "bounce" || source == "bounce_async" || source == "complaint" ||
         source == "erasure";
}

void remove_suppression(PgConnection& pg, const AddressHasher& addresses, const std::string& account,
                        const std::string& address, bool may_remove_guards,
                        std::function<void(core::Result<SuppressionRemoval, std::string>)> cb) {
  auto keys = addresses.candidates(address);
  if (account.empty() || keys.empty())
    return cb(core::Err{std::string("suppression needs an account and an address")});
  const std::string guards(kGuardSourcesSql);
  pg.query(
      "WITH t AS (SELECT source, address IS NULL AS erased FROM suppressions"
      "   WHERE account = $1 AND address_sha256 " + any_candidate_sql(2) + "),"
      " g AS (SELECT source FROM t WHERE source IN " + guards + " ORDER BY source LIMIT 1),"
      " d AS (DELETE FROM suppressions WHERE account = $1 AND address_sha256 " + any_candidate_sql(2) +
      "   AND ($3::boolean OR NOT EXISTS (SELECT 1 FROM g)) RETURNING 1)"
      " SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM d), coalesce((SELECT bool_or(erased) FROM t), false),"
      " coalesce((SELECT string_agg(DISTINCT source, ',') FROM t), ''), coalesce((SELECT source FROM g), '')",
      {account, AddressHasher::sql_list(keys), std::string(may_remove_guards ? "true" : "false")},
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

void load_suppression_page(PgConnection& pg, const std::optional<std::pair<std::string, std::string>>& after,
                           size_t limit, std::function<void(core::Result<SuppressionPage, std::string>)> cb) {
  auto parse = [cb = std::move(cb)](const PgResult& r) {
    if (!r.ok) return cb(core::Err{"cannot load suppressions: " + r.error});
    SuppressionPage out;
    out.reserve(r.rows.size());
    for (const auto& row : r.rows) {
      auto hash = decode_bytea(row[1].value_or(""));
      if (!row[0] || !hash || hash->size() != 32) continue;
      out.emplace_back(*row[0], std::move(*hash));
    }
    cb(std::move(out));
  };
  if (!after) {
    return pg.query("SELECT account, address_sha256 FROM suppressions ORDER BY account, address_sha256 LIMIT $1",
                    {std::to_string(limit)}, std::move(parse));
  }
  pg.query(
      "SELECT account, address_sha256 FROM suppressions WHERE (account, address_sha256) > ($2, $3::bytea)"
      " ORDER BY account, address_sha256 LIMIT $1",
      {std::to_string(limit), after->first, encode_bytea(after->second)}, std::move(parse));
}

core::Result<bool, std::string> add_suppression_blocking(const std::string& conninfo, const AddressHasher& addresses,
                                                         const Suppression& s) {
  auto parsed = parse_listed_address(s.address);
  if (s.account.empty() || !parsed) return core::Err{"not an address: '" + s.address + "'" + (parsed ? "" : ": " + parsed.error())};
  const std::string address = parsed->str();
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  PgResult r = pg->exec(insert_sql(), {s.account, address, encode_bytea(addresses.key(address)), s.reason, s.source,
                                       AddressHasher::sql_list(addresses.candidates(address))});
  if (!r.ok) return core::Err{"cannot add suppression: " + r.error};
  return r.affected > 0;
}

core::Result<bool, std::string> remove_suppression_blocking(const std::string& conninfo, const AddressHasher& addresses,
                                                            const std::string& account, const std::string& address) {
  auto keys = addresses.candidates(address);
  if (account.empty() || keys.empty()) return core::Err{"not an address: '" + address + "'"};
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  PgResult r = pg->exec("DELETE FROM suppressions WHERE account = $1 AND address_sha256 " + any_candidate_sql(2),
                        {account, AddressHasher::sql_list(keys)});
  if (!r.ok) return core::Err{"cannot remove suppression: " + r.error};
  return r.affected > 0;
}

core::Result<std::vector<ListedSuppression>, std::string> list_suppressions_blocking(const std::string& conninfo,
                                                                                     const AddressHasher& addresses,
                                                                                     const std::string& account,
                                                                                     const std::string& address,
                                                                                     size_t limit) {
  std::optional<std::string> keys;
  if (!address.empty()) {
    auto c = addresses.candidates(address);
    if (c.empty()) return core::Err{"not an address: '" + address + "'"};
    keys = AddressHasher::sql_list(c);
  }
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  PgResult r = pg->exec(
      "SELECT account, address, reason, source, created_at::text FROM suppressions WHERE account = $1"
      " AND ($2::text IS NULL OR address_sha256 " + any_candidate_sql(2) + ") ORDER BY created_at DESC, address LIMIT $3",
      {account, keys, std::to_string(limit)});
  if (!r.ok) return core::Err{"cannot list suppressions: " + r.error};
  std::vector<ListedSuppression> out;
  for (const auto& row : r.rows)
    out.push_back(
        {{row[0].value_or(""), row[1].value_or(""), row[2].value_or(""), row[3].value_or("")}, row[4].value_or("")});
  return out;
}

}  // namespace deliverd::store
