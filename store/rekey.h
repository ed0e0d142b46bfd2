#pragma once
// `deliverd rekey`: reseals every stored secret (mailbox passwords, OAuth tokens, IMAP
// passwords) with the current key of the SecretBox, so earlier keys can be retired. Blocking, for
// the command line. Rows are read in batches in (account, id) order and each value is replaced
// only if it is still the one read (compare and set): safe while daemons run and write, and
// idempotent — values already sealed with the current key in the current format are left alone,
// so a second run changes nothing.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/result.h"
#include "store/address_hash.h"
#include "store/secret_box.h"

namespace deliverd::store {

struct RekeyReport {
  int64_t mailboxes = 0;        // rows looked at
  int64_t resealed = 0;         // values now sealed with the current key
  int64_t already_current = 0;  // values that were
  int64_t changed_meanwhile = 0;  // rewritten by someone else between read and write: left to them
  std::vector<std::string> failures;  // "mailbox acct/id password: why" — values that did not open
};

// progress (optional) is called after each batch.
core::Result<RekeyReport, std::string> rekey_secrets(const std::string& conninfo, const SecretBox& box,
                                                     size_t batch = 500,
                                                     const std::function<void(const RekeyReport&)>& progress = {});

struct RehashReport {
  int64_t suppressions = 0;          // rows with an address looked at
  int64_t suppressions_rehashed = 0;  // now under the current key
  int64_t suppressions_kept = 0;      // left as they were: the address is listed under the current key already
  int64_t events = 0;                 // delivery_events rows with a recipient looked at
  int64_t events_rehashed = 0;
};

// The address hashes of suppressions that still hold their address, and of delivery events that
// still hold their recipient, rewritten under the current key (addresses.key), `batch` rows per
// statement in key order, so rows written under an old key (or before keys) stop depending on it.
// Rows without an address (erased) cannot be rewritten: they keep matching through
// AddressHasher::candidates, under an old key only while that key is configured.
core::Result<RehashReport, std::string> rehash_addresses(const std::string& conninfo, const AddressHasher& addresses,
                                                         size_t batch = 500,
                                                         const std::function<void(const RehashReport&)>& progress = {});

}  // namespace deliverd::store
