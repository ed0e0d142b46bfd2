#include "store/rekey.h"

#include <openssl/crypto.h>

#include <iterator>
#include <set>
#include <utility>

#include "core/hex.h"
#include "core/json_writer.h"
#include "store/mailboxes.h"
#include "store/pg_blocking.h"

namespace deliverd::store {

core::Result<RekeyReport, std::string> rekey_secrets(const std::string& conninfo, const SecretBox& box, size_t batch,
                                                     const std::function<void(const RekeyReport&)>& progress) {
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  struct Column {
    const char* name;
    MailboxSecret which;
    const char* label;
  };
  static constexpr Column kColumns[] = {{"password_enc", MailboxSecret::Password, "password"},
                                        {"oauth_token_enc", MailboxSecret::OAuthToken, "oauth_token"},
                                        {"imap_password_enc", MailboxSecret::ImapPassword, "imap password"},
                                        {"oauth_refresh_enc", MailboxSecret::OAuthRefresh, "oauth refresh token"},
                                        {"oauth_pending_enc", MailboxSecret::OAuthRefresh, "oauth pending refresh token"}};
  RekeyReport report;
  std::string after_account, after_id;
  bool first = true;
  while (true) {
    PgResult rows = pg->exec(
        "SELECT account, id, password_enc, oauth_token_enc, imap_password_enc, oauth_refresh_enc, oauth_pending_enc"
        " FROM mailboxes"
        " WHERE $3::boolean OR (account, id) > ($1, $2) ORDER BY account, id LIMIT $4::integer",
        {after_account, after_id, std::string(first ? "true" : "false"), std::to_string(batch)});
    if (!rows.ok) {
      if (rows.sqlstate == "42P01") return core::Err("mailboxes table missing: run `deliverd migrate` first");
      return core::Err("cannot read mailboxes: " + rows.error);
    }
    first = false;
    if (rows.rows.empty()) break;
    for (const auto& row : rows.rows) {
      const std::string account = row[0].value_or(""), id = row[1].value_or("");
      ++report.mailboxes;
      for (size_t c = 0; c < std::size(kColumns); ++c) {
        const auto& text = row[2 + c];
        if (!text) continue;
        const Column& col = kColumns[c];
        auto sealed = decode_bytea(*text);
        if (!sealed) {
          report.failures.push_back("mailbox " + account + "/" + id + " " + col.label + ": not bytea");
          continue;
        }
        if (box.is_current(*sealed)) {
          ++report.already_current;
          continue;
        }
        auto plain = open_mailbox_secret(box, *sealed, account, id, col.which);
        if (!plain) {
          report.failures.push_back("mailbox " + account + "/" + id + " " + col.label + ": " + plain.error());
          continue;
        }
        std::string fresh = encode_bytea(seal_mailbox_secret(box, *plain, account, id, col.which));
        OPENSSL_cleanse(plain->data(), plain->size());
        // Only if the value is still the one read: a concurrent write wins (it is sealed with the
        // writer's current key; a second run reseals it if that was an older one).
        PgResult u = pg->exec(std::string("UPDATE mailboxes SET ") + col.name + " = $3::bytea WHERE account = $1" +
                                  " AND id = $2 AND " + col.name + " = $4::bytea",
                              {account, id, fresh, *text});
        if (!u.ok) return core::Err("cannot reseal mailbox " + account + "/" + id + ": " + u.error);
        if (u.affected == 0)
          ++report.changed_meanwhile;
        else
          ++report.resealed;
      }
      after_account = account;
      after_id = id;
    }
    if (progress) progress(report);
    if (rows.rows.size() < batch) break;
  }
  return report;
}

core::Result<RehashReport, std::string> rehash_addresses(const std::string& conninfo, const AddressHasher& addresses,
                                                         size_t batch,
                                                         const std::function<void(const RehashReport&)>& progress) {
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  RehashReport report;
  // Suppressions, in (account, hash) order. A rewritten row may be met again later in the scan
  // (its new key sorts after the cursor): it is current then, and left alone.
  std::string after_account, after_hash;
  bool first = true;
  while (true) {
    PgResult rows = pg->exec(
        "SELECT account, address_sha256, address FROM suppressions WHERE address IS NOT NULL"
        " AND ($3::boolean OR (account, address_sha256) > ($1, $2::bytea)) ORDER BY account, address_sha256"
        " LIMIT $4::integer",
        {after_account, first ? encode_bytea("") : after_hash, std::string(first ? "true" : "false"),
         std::to_string(batch)});
    if (!rows.ok) return core::Err("cannot read suppressions: " + rows.error);
    first = false;
    if (rows.rows.empty()) break;
    core::JsonWriter w;
    w.begin_array();
    std::set<std::pair<std::string, std::string>> taken;  // (account, new key) within this batch
    int64_t moving = 0;
    for (const auto& row : rows.rows) {
      ++report.suppressions;
      const std::string account = row[0].value_or("");
      after_account = account;
      after_hash = row[1].value_or("");
      auto old = decode_bytea(after_hash);
      const std::string fresh = addresses.key(row[2].value_or(""));
      if (!old || fresh.empty() || *old == fresh) continue;
      if (!taken.insert({account, fresh}).second) {
        ++report.suppressions_kept;
        continue;
      }
      w.begin_object().field("a", account).field("o", core::to_hex(*old)).field("n", core::to_hex(fresh)).end_object();
      ++moving;
    }
    w.end_array();
    if (moving > 0) {
      // A row whose address is listed under the new key already stays as it is (a duplicate the
      // new key would collide with); it still matches through candidates().
      PgResult u = pg->exec(
          "UPDATE suppressions s SET address_sha256 = decode(v->>'n', 'hex') FROM jsonb_array_elements($1::jsonb) v"
          " WHERE s.account = v->>'a' AND s.address_sha256 = decode(v->>'o', 'hex') AND s.address IS NOT NULL"
          " AND NOT EXISTS (SELECT 1 FROM suppressions t WHERE t.account = s.account"
          "   AND t.address_sha256 = decode(v->>'n', 'hex'))",
          {w.take()});
      if (!u.ok) return core::Err("cannot rehash suppressions: " + u.error);
      report.suppressions_rehashed += u.affected;
      report.suppressions_kept += moving - u.affected;
    }
    if (progress) progress(report);
    if (rows.rows.size() < batch) break;
  }
  // Delivery events, in id order.
  std::string after_id = "0";
  while (true) {
    PgResult rows = pg->exec(
        "SELECT id, recipient, recipient_sha256 FROM delivery_events WHERE recipient IS NOT NULL AND id > $1::bigint"
        " ORDER BY id LIMIT $2::integer",
        {after_id, std::to_string(batch)});
    if (!rows.ok) return core::Err("cannot read delivery events: " + rows.error);
    if (rows.rows.empty()) break;
    core::JsonWriter w;
    w.begin_array();
    int64_t moving = 0;
    for (const auto& row : rows.rows) {
      ++report.events;
      after_id = row[0].value_or("0");
      const std::string fresh = addresses.key(row[1].value_or(""));
      auto old = row[2] ? decode_bytea(*row[2]) : std::optional<std::string>(std::string());
      if (fresh.empty() || (old && *old == fresh)) continue;
      w.begin_object().field("i", after_id).field("n", core::to_hex(fresh)).end_object();
      ++moving;
    }
    w.end_array();
    if (moving > 0) {
      PgResult u = pg->exec(
          "UPDATE delivery_events d SET recipient_sha256 = decode(v->>'n', 'hex') FROM jsonb_array_elements($1::jsonb) v"
          " WHERE d.id = (v->>'i')::bigint AND d.recipient IS NOT NULL",
          {w.take()});
      if (!u.ok) return core::Err("cannot rehash delivery events: " + u.error);
      report.events_rehashed += u.affected;
    }
    if (progress) progress(report);
    if (rows.rows.size() < batch) break;
  }
  return report;
}

}  // namespace deliverd::store
