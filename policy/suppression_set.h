#pragma once
// The in-memory copy of the suppression list that every send is checked against: per account
// (plus the global list, account "*") the address hash of each row, as the database holds it
// (store/address_hash.h: keyed, or plain for rows from before keys). Fed by a full load and then
// by the NOTIFY payloads of migration 0004's trigger.
#include <cstddef>
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
  void replace(std::vector<std::pair<std::string, std::string>> rows);
  void clear();
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
  std::unordered_map<std::string, std::unordered_set<std::string>> by_account_;
  size_t size_ = 0;
};

}  // namespace deliverd::policy
