#pragma once
// The suppression list in PostgreSQL: addresses that must not be mailed again, per account, plus
// the global list (account "*", kGlobalAccount) that holds for every account. The async calls run
// on the loop through PgConnection; the *_blocking ones are for the command line only. Every
// change is announced on the channel kSuppressionChannel (trigger from migration 0004), which is
// how policy/ keeps its in-memory copy current.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/address.h"
#include "core/result.h"
#include "store/address_hash.h"
#include "store/pg_connection.h"

namespace deliverd::store {

inline constexpr std::string_view kGlobalAccount = "*";
inline constexpr std::string_view kSuppressionChannel = "deliverd_suppressions";

struct Suppression {
  std::string account, address;
  std::string reason;  // "unsubscribed", "hard_bounce", "manual", …
  std::string source;  // "one_click", "bounce", "api", …
};

struct ListedSuppression {
  Suppression row;
  std::string created_at;
};

// Surrounding white space trimmed, then parsed and normalised by core/address.h (domain as
// lower-case A-labels, local part as given, plus-addressing kept). The error says what is wrong.
core::Result<core::Address, std::string> parse_listed_address(std::string_view address);
// parse_listed_address as text: "" when it is not an address.
std::string normalize_address(std::string_view address);
// Rows are keyed by addresses.key(address) and found by any of addresses.candidates(address)
// (store/address_hash.h), so rows written under an old key or before keys still count.

// Idempotent: a second add for the same account and address keeps the first row (under whichever
// hash it has). cb gets true when a row was inserted, false when it was already there, or an error.
void add_suppression(PgConnection& pg, const AddressHasher& addresses, const Suppression& s,
                     std::function<void(core::Result<bool, std::string>)> cb);

// Sources of the suppressions the platform's guards write: a recipient's one-click unsubscribe,
// a hard bounce, a complaint, an erasure. Only operators lift them (an account's own key lifts
// only what the account added), so a tenant cannot undo an opt-out, a bounce or an erasure.
bool is_guard_source(std::string_view source);
inline constexpr std::string_view kGuardSourcesSql =
    "('one_click', 'bounce', 'bounce_async', 'complaint', 'erasure')";

struct SuppressionRemoval {
  bool found = false;    // the account had the address suppressed
  bool removed = false;  // and it is not any more
  bool erased = false;   // a row of it was kept as a hash only (erasure)
  std::string sources;       // the sources of the rows found, comma-separated (for the audit row)
  std::string guard_source;  // not removed: the guard source that kept it
};
// In one statement: the address's rows of the account are removed, unless one of them has a
// guard source and !may_remove_guards — then none is.
void remove_suppression(PgConnection& pg, const AddressHasher& addresses, const std::string& account, const std::string& address,
                        bool may_remove_guards, std::function<void(core::Result<SuppressionRemoval, std::string>)> cb);

// cb gets whether the account (or the global list) has suppressed the address, or an error.
void is_suppressed(PgConnection& pg, const AddressHasher& addresses, const std::string& account, const std::string& address,
                   std::function<void(core::Result<bool, std::string>)> cb);

// One page of (account, hash) pairs in primary-key order, the first `limit` after `after` (nullopt:
// from the start). Paging by key holds the loop for one page at a time, whatever the list's size;
// a row that changes meanwhile is covered by the NOTIFY the caller LISTENs to.
using SuppressionPage = std::vector<std::pair<std::string, std::string>>;
void load_suppression_page(PgConnection& pg, const std::optional<std::pair<std::string, std::string>>& after,
                           size_t limit, std::function<void(core::Result<SuppressionPage, std::string>)> cb);

// Blocking, for `deliverd suppress add|remove|list`.
core::Result<bool, std::string> add_suppression_blocking(const std::string& conninfo, const AddressHasher& addresses,
                                                         const Suppression& s);
core::Result<bool, std::string> remove_suppression_blocking(const std::string& conninfo, const AddressHasher& addresses,
                                                            const std::string& account, const std::string& address);
// Newest first; address "" lists the account, otherwise only that address.
core::Result<std::vector<ListedSuppression>, std::string> list_suppressions_blocking(const std::string& conninfo,
                                                                                     const AddressHasher& addresses,
                                                                                     const std::string& account,
                                                                                     const std::string& address,
                                                                                     size_t limit);

}  // namespace deliverd::store
