#pragma once
// Where each mailbox's inbox watcher stands (table inbound_watch, migration 0011): the folder's
// UIDVALIDITY and the last UID read, which make every message read once across restarts and
// daemons, and what the watcher is doing, which GET /v1/mailboxes/{id} shows.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/result.h"
#include "store/pg_connection.h"

namespace deliverd::store {

struct WatchRow {
  uint32_t uid_validity = 0, last_uid = 0;  // 0, 0: nothing read yet
  std::string state, last_error, owner;     // owner: the daemon (consumer name) that holds the watch
  std::string updated_at;                   // RFC 3339
};

void load_watch(PgConnection& pg, const std::string& account, const std::string& mailbox,
                std::function<void(core::Result<std::optional<WatchRow>, std::string>)> cb);
// The cursor only moves forward within one UIDVALIDITY, so a slow write from a daemon that lost
// the watch cannot make the next owner read messages again; a new UIDVALIDITY replaces it.
void save_watch_cursor(PgConnection& pg, const std::string& account, const std::string& mailbox,
                       uint32_t uid_validity, uint32_t last_uid,
                       std::function<void(core::Result<core::Ok, std::string>)> cb);
// error is cut to 300 bytes and made valid UTF-8.
void save_watch_state(PgConnection& pg, const std::string& account, const std::string& mailbox,
                      const std::string& state, const std::string& error, const std::string& owner,
                      std::function<void(core::Result<core::Ok, std::string>)> cb);

}  // namespace deliverd::store
