#include "store/oauth_grants.h"

#include <cstdlib>

#include "store/mailboxes.h"
#include "store/pg_blocking.h"

namespace deliverd::store {

namespace {

std::optional<std::string> ms_as_timestamp(int64_t ms) {
  if (ms <= 0) return std::nullopt;
  return std::to_string(ms);
}

void update(PgConnection& pg, std::string sql, std::vector<std::optional<std::string>> params,
            std::function<void(bool ok)> cb) {
  pg.query(std::move(sql), std::move(params), [cb = std::move(cb)](const PgResult& r) {
    if (cb) cb(r.ok && r.affected > 0);
  });
}

}  // namespace

void load_oauth_grant(PgConnection& pg, const SecretBox& box, const std::string& account, const std::string& id,
                      std::function<void(core::Result<OAuthGrant, std::string>)> cb) {
  pg.query("SELECT oauth_provider, oauth_refresh_enc, oauth_pending_enc FROM mailboxes WHERE account = $1 AND id = $2",
           {account, id}, [box, account, id, cb = std::move(cb)](const PgResult& r) {
             const std::string who = "mailbox " + account + "/" + id;
             if (!r.ok) return cb(core::Err("cannot read the OAuth grant of " + who + ": " + r.error));
             if (r.rows.empty()) return cb(core::Err(who + ": no such mailbox"));
             const auto& row = r.rows[0];
             if (!row[0] || !row[1]) return cb(core::Err(who + ": has no OAuth grant"));
             OAuthGrant g;
             g.provider = *row[0];
             std::string* dest[] = {&g.refresh_token, &g.pending_refresh_token};
             for (size_t k = 0; k < 2; ++k) {
               if (!row[k + 1]) continue;
               auto sealed = decode_bytea(*row[k + 1]);
               if (!sealed) return cb(core::Err(who + ": a refresh token is not bytea"));
               auto plain = open_mailbox_secret(box, *sealed, account, id, MailboxSecret::OAuthRefresh);
               if (!plain) return cb(core::Err(who + ": a refresh token does not open: " + plain.error()));
               *dest[k] = std::move(*plain);
             }
             cb(std::move(g));
           });
}

void save_oauth_pending(PgConnection& pg, const SecretBox& box, const std::string& account, const std::string& id,
                        const std::string& token, std::function<void(bool ok)> cb) {
  update(pg,
         "UPDATE mailboxes SET oauth_pending_enc = $3::bytea WHERE account = $1 AND id = $2 AND oauth_provider IS NOT "
         "NULL",
         {account, id, encode_bytea(seal_mailbox_secret(box, token, account, id, MailboxSecret::OAuthRefresh))},
         std::move(cb));
}

// Pending and current are sealed alike (MailboxSecret::OAuthRefresh): promotion is the swap the
// associated data would otherwise forbid, done in SQL without opening either.
void promote_oauth_pending(PgConnection& pg, const std::string& account, const std::string& id,
                           std::function<void(bool ok)> cb) {
  update(pg,
         "UPDATE mailboxes SET oauth_refresh_enc = oauth_pending_enc, oauth_pending_enc = NULL"
         " WHERE account = $1 AND id = $2 AND oauth_pending_enc IS NOT NULL",
         {account, id}, std::move(cb));
}

void drop_oauth_pending(PgConnection& pg, const std::string& account, const std::string& id,
                        std::function<void(bool ok)> cb) {
  update(pg, "UPDATE mailboxes SET oauth_pending_enc = NULL WHERE account = $1 AND id = $2", {account, id},
         std::move(cb));
}

void record_oauth_refresh(PgConnection& pg, const std::string& account, const std::string& id, int64_t at_ms,
                          const std::string& result, int64_t expires_ms) {
  pg.query("UPDATE mailboxes SET oauth_refreshed_at = to_timestamp($3::bigint / 1000.0), oauth_refresh_result = $4,"
           " oauth_expires_at = CASE WHEN $5::bigint IS NULL THEN oauth_expires_at"
           " ELSE to_timestamp($5::bigint / 1000.0) END WHERE account = $1 AND id = $2 AND oauth_provider IS NOT NULL",
           {account, id, std::to_string(at_ms), result, ms_as_timestamp(expires_ms)}, [](const PgResult&) {});
}

core::Result<std::vector<std::pair<std::string, int64_t>>, std::string> oauth_providers_in_use(
    const std::string& conninfo) {
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  PgResult r = pg->exec(
      "SELECT oauth_provider, count(*) FROM mailboxes WHERE oauth_provider IS NOT NULL GROUP BY 1 ORDER BY 1");
  if (!r.ok) return core::Err("cannot read mailboxes: " + r.error);
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& row : r.rows) out.emplace_back(row[0].value_or(""), std::atoll(row[1].value_or("0").c_str()));
  return out;
}

}  // namespace deliverd::store
