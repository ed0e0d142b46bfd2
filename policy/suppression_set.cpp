#include "policy/suppression_set.h"

#include "core/hex.h"
#include "store/suppressions.h"

namespace deliverd::policy {

void SuppressionSet::insert(const std::string& account, const std::string& sha256) {
  if (by_account_[account].insert(sha256).second) ++size_;
}

void SuppressionSet::erase(const std::string& account, const std::string& sha256) {
  auto it = by_account_.find(account);
  if (it == by_account_.end()) return;
  if (it->second.erase(sha256)) --size_;
  if (it->second.empty()) by_account_.erase(it);
}

void SuppressionSet::replace(std::vector<std::pair<std::string, std::string>> rows) {
  clear();
  for (auto& [account, sha] : rows) insert(account, sha);
}

void SuppressionSet::clear() {
  by_account_.clear();
  size_ = 0;
}

bool SuppressionSet::contains_hash(std::string_view account, const std::string& sha256) const {
  for (std::string_view a : {account, store::kGlobalAccount}) {
    auto it = by_account_.find(std::string(a));
    if (it != by_account_.end() && it->second.count(sha256)) return true;
  }
  return false;
}

bool SuppressionSet::contains_any(std::string_view account, const std::vector<std::string>& candidates) const {
  for (const auto& h : candidates)
    if (contains_hash(account, h)) return true;
  return false;
}

bool SuppressionSet::parse_notification(std::string_view p, Change& out) {
  if (p.size() < 3 || p[1] != '|') return false;
  if (p[0] == 'T') {
    out = {Op::Truncate, {}, {}};
    return true;
  }
  if (p[0] != 'I' && p[0] != 'D') return false;
  std::string_view rest = p.substr(2);
  size_t bar = rest.find('|');
  if (bar != 64 || bar + 1 >= rest.size()) return false;
  auto sha = core::from_hex(rest.substr(0, 64));
  if (!sha) return false;
  out = {p[0] == 'I' ? Op::Insert : Op::Delete, std::string(rest.substr(65)), std::move(*sha)};
  return true;
}

void SuppressionSet::apply(const Change& c) {
  if (c.op == Op::Insert) insert(c.account, c.sha256);
  if (c.op == Op::Delete) erase(c.account, c.sha256);
  if (c.op == Op::Truncate) clear();
}

}  // namespace deliverd::policy
