#include "store/rekey.h"

#include <openssl/crypto.h>

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
                                        {"imap_password_enc", MailboxSecret::ImapPassword, "imap password"}};
  RekeyReport report;
  std::string after_account, after_id;
  bool first = true;
  while (true) {
    PgResult rows = pg->exec(
        "SELECT account, id, password_enc, oauth_token_enc, imap_password_enc FROM mailboxes"
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
      for (size_t c = 0; c < 3; ++c) {
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

}  // namespace deliverd::store
