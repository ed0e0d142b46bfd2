#pragma once
// Data subject requests (GDPR Art. 15, 17, 20) for one account: export everything stored about
// it as one JSON document, erase it, or erase one recipient address across it. Erasure keeps
// only SHA-256 hashes on the suppression list, so an erased address is still never mailed again.
// Each erase is one SQL statement, so it happens completely or not at all.
#include <cstdint>
#include <functional>
#include <string>

#include "core/result.h"
#include "store/address_hash.h"
#include "store/pg_connection.h"

namespace deliverd::store {

// Bounds (STYLE §4): an export larger than this many rows per table is refused with an error
// rather than built in memory.
inline constexpr int kMaxExportRows = 100000;

// {"account": …, "exported_at": …, "mailboxes": [...], "suppressions": [...],
//  "delivery_events": [...], "api_keys": [...]} — mailboxes without secrets, keys without hashes.
void export_account(PgConnection& pg, const std::string& account,
                    std::function<void(core::Result<std::string, std::string>)> cb);

struct EraseCounts {
  int64_t mailboxes = 0, delivery_events = 0, api_keys = 0, suppressions_hashed = 0, audit_rows_scrubbed = 0;
  bool refused_owner_keys = false;  // nothing was erased: the account has owner keys, the caller may not
};
// Mailboxes, delivery events and keys are deleted; suppressions lose their address; audit rows
// of the account lose their target, and the rows written by the account's own keys also lose the
// key id and the client address. What stays: the account id, action, time and status. Unless
// may_erase_owner_keys, an account with an owner key is left whole (refused_owner_keys).
void erase_account(PgConnection& pg, const std::string& account, bool may_erase_owner_keys,
                   std::function<void(core::Result<EraseCounts, std::string>)> cb);

// The account's delivery events and their tombstones, again: the rows deliveries still running
// during erase_account wrote after it. cb gets the number deleted.
void erase_account_events(PgConnection& pg, const std::string& account,
                          std::function<void(core::Result<int64_t, std::string>)> cb);

// The address's delivery events lose recipient, reply text and detail; its suppression (added
// if there was none) keeps only the hash, the keyed one (store/address_hash.h); audit rows naming
// it lose their target. cb gets the number of events scrubbed.
void erase_address(PgConnection& pg, const AddressHasher& addresses, const std::string& account,
                   const std::string& address, std::function<void(core::Result<int64_t, std::string>)> cb);

}  // namespace deliverd::store
