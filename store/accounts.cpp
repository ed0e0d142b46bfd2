#include "store/accounts.h"

#include <memory>

#include "core/hex.h"
#include "core/json_writer.h"
#include "store/delivery_events.h"
#include "store/suppressions.h"

namespace deliverd::store {
namespace {

std::string cell(const std::vector<std::optional<std::string>>& row, size_t i) {
  return row.size() > i && row[i] ? *row[i] : std::string();
}

void nullable(core::JsonWriter& w, std::string_view key, const std::optional<std::string>& v) {
  w.key(key);
  if (v)
    w.value(*v);
  else
    w.null();
}

constexpr const char* kTs = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

struct ExportState {
  std::string account;
  core::JsonWriter w;
  std::function<void(core::Result<std::string, std::string>)> cb;
};

bool too_many(const PgResult& r) { return r.rows.size() > static_cast<size_t>(kMaxExportRows); }

}  // namespace

void export_account(PgConnection& pg, const std::string& account,
                    std::function<void(core::Result<std::string, std::string>)> cb) {
  auto st = std::make_shared<ExportState>();
  st->account = account;
  st->cb = std::move(cb);
  st->w.begin_object().field("account", account);
  std::string limit = std::to_string(kMaxExportRows + 1);
  auto fail = [st](const std::string& what, const PgResult& r) {
    if (!r.ok) return st->cb(core::Err("cannot export " + what + ": " + r.error)), true;
    if (too_many(r))
      return st->cb(core::Err("cannot export " + what + ": more than " + std::to_string(kMaxExportRows) + " rows")),
             true;
    return false;
  };
  PgConnection* p = &pg;
  pg.query(
      std::string("SELECT to_char(now() AT TIME ZONE 'UTC', ") + kTs +
          "), id, email, smtp_host, smtp_port, security, coalesce(username, ''), mode, paused,"
          " to_char(created_at AT TIME ZONE 'UTC', " +
          kTs + "), to_char(updated_at AT TIME ZONE 'UTC', " + kTs +
          "), password_enc IS NOT NULL, oauth_token_enc IS NOT NULL"
          " FROM (SELECT 1) one LEFT JOIN mailboxes ON account = $1 ORDER BY id LIMIT " +
          limit,
      {account}, [st, fail, p, limit](const PgResult& r) {
        if (fail("mailboxes", r)) return;
        st->w.field("exported_at", r.rows.empty() ? std::string() : cell(r.rows[0], 0));
        st->w.key("mailboxes").begin_array();
        for (const auto& row : r.rows) {
          if (!row[1]) continue;  // the LEFT JOIN's empty row: no mailboxes
          st->w.begin_object()
              .field("id", cell(row, 1))
              .field("email", cell(row, 2))
              .field("smtp_host", cell(row, 3))
              .field("smtp_port", static_cast<int64_t>(std::stoll(cell(row, 4))))
              .field("security", cell(row, 5))
              .field("username", cell(row, 6))
              .field("mode", cell(row, 7))
              .field("paused", cell(row, 8) == "t")
              .field("created_at", cell(row, 9))
              .field("updated_at", cell(row, 10))
              .field("has_password", cell(row, 11) == "t")
              .field("has_oauth_token", cell(row, 12) == "t")
              .end_object();
        }
        st->w.end_array();
        p->query(
            std::string("SELECT address, address_sha256, reason, source, to_char(created_at AT TIME ZONE 'UTC', ") +
                kTs + ") FROM suppressions WHERE account = $1 ORDER BY created_at, address_sha256 LIMIT " + limit,
            {st->account}, [st, fail, p, limit](const PgResult& r) {
              if (fail("suppressions", r)) return;
              st->w.key("suppressions").begin_array();
              for (const auto& row : r.rows) {
                st->w.begin_object();
                nullable(st->w, "address", row[0]);
                st->w.field("address_sha256", core::to_hex(decode_bytea(cell(row, 1)).value_or("")))
                    .field("reason", cell(row, 2))
                    .field("source", cell(row, 3))
                    .field("created_at", cell(row, 4))
                    .end_object();
              }
              st->w.end_array();
              delivery_events_for_account(
                  *p, st->account, 0, kMaxExportRows + 1,
                  [st, p](core::Result<std::vector<DeliveryEvent>, std::string> ev) {
                    if (!ev) return st->cb(core::Err("cannot export delivery events: " + ev.error()));
                    if (ev->size() > static_cast<size_t>(kMaxExportRows))
                      return st->cb(core::Err(std::string("cannot export delivery events: too many rows")));
                    st->w.key("delivery_events").begin_array();
                    for (const auto& e : *ev) st->w.raw(delivery_event_json(e));
                    st->w.end_array();
                    p->query(std::string("SELECT id, role, coalesce(scopes, ''), coalesce(name, ''),"
                                         " to_char(created_at AT TIME ZONE 'UTC', ") +
                                 kTs + "), to_char(expires_at AT TIME ZONE 'UTC', " + kTs +
                                 "), to_char(last_used_at AT TIME ZONE 'UTC', " + kTs +
                                 "), to_char(revoked_at AT TIME ZONE 'UTC', " + kTs +
                                 ") FROM api_keys WHERE account = $1 ORDER BY created_at, id",
                             {st->account}, [st](const PgResult& r) {
                               if (!r.ok) return st->cb(core::Err("cannot export api keys: " + r.error));
                               st->w.key("api_keys").begin_array();
                               for (const auto& row : r.rows) {
                                 st->w.begin_object()
                                     .field("id", cell(row, 0))
                                     .field("role", cell(row, 1))
                                     .field("scopes", cell(row, 2))
                                     .field("name", cell(row, 3))
                                     .field("created_at", cell(row, 4));
                                 nullable(st->w, "expires_at", row[5]);
                                 nullable(st->w, "last_used_at", row[6]);
                                 nullable(st->w, "revoked_at", row[7]);
                                 st->w.end_object();
                               }
                               st->w.end_array().end_object();
                               st->cb(st->w.take());
                             });
                  });
            });
      });
}

void erase_account(PgConnection& pg, const std::string& account, bool may_erase_owner_keys,
                   std::function<void(core::Result<EraseCounts, std::string>)> cb) {
  // Every part is guarded by "go": one statement, so the owner-key check and the erasure see the
  // same snapshot, and either everything goes or nothing does.
  pg.query(
      "WITH go AS (SELECT $2::boolean OR NOT EXISTS (SELECT 1 FROM api_keys WHERE account = $1 AND role = 'owner'"
      "   AND revoked_at IS NULL) AS ok),"
      " m AS (DELETE FROM mailboxes WHERE account = $1 AND (SELECT ok FROM go) RETURNING 1),"
      " e AS (DELETE FROM delivery_events WHERE account = $1 AND (SELECT ok FROM go) RETURNING 1),"
      " t AS (DELETE FROM delivery_event_tombstones WHERE account = $1 AND (SELECT ok FROM go) RETURNING 1),"
      " k AS (DELETE FROM api_keys WHERE account = $1 AND (SELECT ok FROM go) RETURNING 1),"
      " s AS (UPDATE suppressions SET address = NULL WHERE account = $1 AND address IS NOT NULL"
      "   AND (SELECT ok FROM go) RETURNING 1),"
      // The account's own keys were its users acting: their key ids and addresses go too.
      " own AS (SELECT id FROM api_keys WHERE account = $1),"
      " a AS (UPDATE audit_log SET target = NULL,"
      "   key_id = CASE WHEN key_id IN (SELECT id FROM own) THEN NULL ELSE key_id END,"
      "   peer_ip = CASE WHEN key_id IN (SELECT id FROM own) THEN NULL ELSE peer_ip END"
      "   WHERE account = $1 AND (SELECT ok FROM go) RETURNING 1)"
      // Aged-out markers count with the rows they stand for.
      " SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM e) + (SELECT count(*) FROM t), (SELECT count(*) FROM k),"
      " (SELECT count(*) FROM s), (SELECT count(*) FROM a), (SELECT ok FROM go)",
      {account, std::string(may_erase_owner_keys ? "true" : "false")}, [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot erase account: " + r.error));
        if (r.rows.empty()) return cb(core::Err(std::string("cannot erase account: no result")));
        const auto& row = r.rows[0];
        EraseCounts c;
        c.refused_owner_keys = cell(row, 5) != "t";
        c.mailboxes = std::stoll(cell(row, 0));
        c.delivery_events = std::stoll(cell(row, 1));
        c.api_keys = std::stoll(cell(row, 2));
        c.suppressions_hashed = std::stoll(cell(row, 3));
        c.audit_rows_scrubbed = std::stoll(cell(row, 4));
        cb(c);
      });
}

void erase_account_events(PgConnection& pg, const std::string& account,
                          std::function<void(core::Result<int64_t, std::string>)> cb) {
  pg.query(
      "WITH e AS (DELETE FROM delivery_events WHERE account = $1 RETURNING 1),"
      " t AS (DELETE FROM delivery_event_tombstones WHERE account = $1 RETURNING 1)"
      " SELECT (SELECT count(*) FROM e) + (SELECT count(*) FROM t)",
      {account}, [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot erase delivery events: " + r.error));
        if (r.rows.empty()) return cb(core::Err(std::string("cannot erase delivery events: no result")));
        cb(static_cast<int64_t>(std::stoll(cell(r.rows[0], 0))));
      });
}

void erase_address(PgConnection& pg, const AddressHasher& addresses, const std::string& account,
                   const std::string& address, std::function<void(core::Result<int64_t, std::string>)> cb) {
  std::string normalized = normalize_address(address);
  if (account.empty() || normalized.empty()) return cb(core::Err(std::string("an account and an address are needed")));
  const std::string key = addresses.key(normalized);
  // Events under any form of the address's hash (old keys, plain SHA-256, the normalisation
  // before 0008) are scrubbed. One suppression row is kept, under the current key ($2): rows
  // under the other forms go, since a plain hash of an erased address is reversible and a row
  // without an address can never be rekeyed.
  const std::string any = any_candidate_sql(4);
  pg.query(
      "WITH e AS (UPDATE delivery_events SET recipient = NULL, reply_text = NULL, detail = NULL"
      "   WHERE account = $1 AND recipient_sha256 " + any + " RETURNING 1),"
      " s AS (INSERT INTO suppressions (account, address, address_sha256, reason, source)"
      "   VALUES ($1, NULL, $2::bytea, 'erased', 'erasure')"
      "   ON CONFLICT (account, address_sha256) DO UPDATE SET address = NULL, reason = 'erased', source = 'erasure'"
      "   RETURNING 1),"
      " l AS (DELETE FROM suppressions WHERE account = $1 AND address_sha256 " + any +
      "   AND address_sha256 <> $2::bytea RETURNING 1),"
      " a AS (UPDATE audit_log SET target = NULL WHERE account = $1 AND lower(target) = lower($3) RETURNING 1)"
      " SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM s), (SELECT count(*) FROM a)",
      {account, encode_bytea(key), normalized, AddressHasher::sql_list(addresses.candidates(normalized))},
      [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot erase address: " + r.error));
        if (r.rows.empty()) return cb(core::Err(std::string("cannot erase address: no result")));
        cb(static_cast<int64_t>(std::stoll(cell(r.rows[0], 0))));
      });
}

}  // namespace deliverd::store
