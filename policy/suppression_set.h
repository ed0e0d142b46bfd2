#pragma once
// The in-memory copy of the suppression list that every send is checked against: per account
// (plus the global list, account "*") the address hash of each row, as the database holds it
// (store/address_hash.h: keyed, or plain for rows from before keys). Fed by a full load in pages
// and then by the NOTIFY payloads of migration 0004's trigger. About 16 bytes a row (ten million
// rows in about 170 MB; bench/suppression_memory_bench measures it).
//
// The bulk-loaded rows can be shared (share()): the event loops of one daemon hold them once and
// each keeps only the changes notified since the load.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace deliverd::policy {

class SuppressionSet {
 public:
  // account "*" suppresses for everyone. sha256 is 32 raw bytes (the column's name; keyed now).
  void insert(const std::string& account, const std::string& sha256);
  void erase(const std::string& account, const std::string& sha256);
  // The bulk load: rows in the order of the suppressions table's primary key (each account's
  // rows together, hashes ascending within it) go into a sorted array at 16 bytes a row; a row
  // out of that order is inserted like a notification, so the order is a speed-up, not a rule.
  void append_sorted(const std::string& account, const std::string& sha256);
  void clear();
  // Another set over the same bulk-loaded rows, with a copy of the changes since. From then on
  // those rows are frozen in both sets (a later append_sorted goes in as a change), so sets on
  // other threads read them without a lock, and each set's changes stay its own.
  SuppressionSet share();
  bool shares_rows_with(const SuppressionSet& o) const { return sorted_ == o.sorted_; }
  // Checks the account and the global list under each of an address's hashes
  // (store::AddressHasher::candidates: case does not matter, old keys and plain rows count).
  bool contains_any(std::string_view account, const std::vector<std::string>& candidates) const;
  bool contains_hash(std::string_view account, const std::string& sha256) const;
  size_t size() const { return size_; }

  // "I|<hex sha256>|<account>", "D|…", "T||" (truncate: reload). False for a malformed payload.
  enum class Op { Insert, Delete, Truncate };
  struct Change {
    Op op;
    std::string account, sha256;
  };
  static bool parse_notification(std::string_view payload, Change& out);
  void apply(const Change& c);

 private:
  // The first 128 bits of the hash, as two big-endian words so that comparing them compares the
  // bytes. Ten million random 128-bit keys collide with probability about 2^-82: the truncation
  // halves the memory and suppresses nobody by mistake.
  struct Key {
    uint64_t hi = 0, lo = 0;
    bool operator==(const Key& o) const { return hi == o.hi && lo == o.lo; }
    bool operator<(const Key& o) const { return hi != o.hi ? hi < o.hi : lo < o.lo; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const { return static_cast<size_t>(k.lo ^ (k.hi >> 1)); }
  };
  // Accounts are looked up by string_view without a copy.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  template <typename V>
  using ByAccount = std::unordered_map<std::string, V, NameHash, std::equal_to<>>;
  // What was notified after the bulk load: keys its rows lack (added), rows since removed.
  struct Changes {
    std::unordered_set<Key, KeyHash> added, removed;
  };
  bool in_sorted(std::string_view account, const Key& k) const;
  bool has(std::string_view account, const Key& k) const;
  static std::optional<Key> key_of(const std::string& sha256);

  // Each account's bulk-loaded rows, ascending: shared by every share() of this set.
  std::shared_ptr<ByAccount<std::vector<Key>>> sorted_ = std::make_shared<ByAccount<std::vector<Key>>>();
  bool frozen_ = false;  // sorted_ is shared: never written again
  ByAccount<Changes> changes_;
  std::vector<Key>* appending_ = nullptr;  // the array append_sorted is filling, and its account
  std::string appending_account_;
  size_t size_ = 0;
};

}  // namespace deliverd::policy
