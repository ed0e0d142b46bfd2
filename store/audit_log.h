#pragma once
// The audit log: one row per write through the admin API (who, what, for which account, from
// where, when). Rows are appended, never updated, except that erasing an account clears the
// targets of its rows (store/accounts.h), since a target may be an address.
#include <functional>
#include <string>

#include "core/result.h"
#include "store/pg_connection.h"

namespace deliverd::store {

struct AuditEntry {
  std::string key_id, role, account;
  std::string action;  // "mailbox.create", "key.revoke", …
  std::string target;  // the id or address acted on
  std::string peer_ip;
  int status = 0;  // the HTTP status answered
};

void append_audit(PgConnection& pg, const AuditEntry& e, std::function<void(core::Result<core::Ok, std::string>)> cb);

}  // namespace deliverd::store
