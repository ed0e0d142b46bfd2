#pragma once
// The hashes kept instead of (or next to) an address: suppressions.address_sha256 and
// delivery_events.recipient_sha256 (the column names are historical: both hold 32 bytes of
// HMAC-SHA-256 now). An address is hashed under a key derived from the [security] secret key
// (HKDF-SHA256, kSalt and kInfo), so a dictionary of addresses cannot reverse what an erasure or a
// suppression leaves behind: the plain SHA-256 of every address is one CPU-hour away.
//
// key() is what every writer stores: the HMAC under the current key of the case-folded address.
// candidates() is what every matcher looks for: that key, the HMAC under each old key (rows
// written before a rotation and not yet rewritten by `deliverd rekey`), the plain SHA-256 of the
// case-folded address and that of the normalisation before migration 0008 (rows written before
// hashes were keyed; an erased row has no address to rekey from, so it keeps matching this way).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/key_file.h"

namespace deliverd::store {

class SecretBox;

class AddressHasher {
 public:
  // HKDF's salt and info: frozen, every stored hash depends on them.
  static constexpr std::string_view kSalt = "deliverd address hash";
  static constexpr std::string_view kInfo = "deliverd address hash v1";

  // One hash key per key of the box (the current one first), derived with HKDF-SHA256.
  static AddressHasher from(const SecretBox& box);
  // From hash keys directly (the current one first): for tests and tools.
  static AddressHasher from_hash_keys(const std::vector<core::Key256>& keys);

  // 32 raw bytes; "" when it is not an address.
  std::string key(std::string_view address) const;
  // key() first, then every other form a row of this address may hold, without repeats; empty
  // when it is not an address.
  std::vector<std::string> candidates(std::string_view address) const;
  // candidates() as one text parameter: lower-case hex, comma-separated, for
  // `col = ANY(ARRAY(SELECT decode(unnest(string_to_array($n, ',')), 'hex')))` (any_candidate_sql).
  static std::string sql_list(const std::vector<std::string>& hashes);

 private:
  struct Mac;
  explicit AddressHasher(std::vector<std::shared_ptr<const Mac>> macs) : macs_(std::move(macs)) {}
  std::vector<std::shared_ptr<const Mac>> macs_;  // front: the current key
};

// The SQL of "any of the candidates in parameter $n", n spliced in: "= ANY(…)".
std::string any_candidate_sql(int n);

}  // namespace deliverd::store
