#include "policy/suppression_set.h"

#include <algorithm>

#include "core/hex.h"
#include "store/suppressions.h"

namespace deliverd::policy {

std::optional<SuppressionSet::Key> SuppressionSet::key_of(const std::string& sha256) {
  if (sha256.size() < 16) return std::nullopt;
  auto word = [&](size_t at) {
    uint64_t v = 0;
    for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(sha256[at + i]);
    return v;
  };
  return Key{word(0), word(8)};
}

bool SuppressionSet::List::in_sorted(const Key& k) const { return std::binary_search(sorted.begin(), sorted.end(), k); }

bool SuppressionSet::List::has(const Key& k) const {
  if (!added.empty() && added.count(k)) return true;
  return in_sorted(k) && (removed.empty() || !removed.count(k));
}

void SuppressionSet::insert(const std::string& account, const std::string& sha256) {
  auto k = key_of(sha256);
  if (!k) return;
  List& l = by_account_[account];
  if (l.has(*k)) return;
  if (l.in_sorted(*k))
    l.removed.erase(*k);
  else
    l.added.insert(*k);
  ++size_;
}

void SuppressionSet::erase(const std::string& account, const std::string& sha256) {
  auto k = key_of(sha256);
  auto it = by_account_.find(account);
  if (!k || it == by_account_.end() || !it->second.has(*k)) return;
  List& l = it->second;
  if (!l.added.erase(*k)) l.removed.insert(*k);
  --size_;
  if (l.added.empty() && l.sorted.size() == l.removed.size()) {
    if (appending_ == account) appending_.clear();
    by_account_.erase(it);
  }
}

void SuppressionSet::append_sorted(const std::string& account, const std::string& sha256) {
  auto k = key_of(sha256);
  if (!k) return;
  if (appending_.empty() || appending_ != account) {
    auto [it, fresh] = by_account_.try_emplace(account);
    // An account seen before, not just now: its array is finished, so this row goes in as a change.
    if (!fresh) return insert(account, sha256);
    appending_ = account;
  }
  List& l = by_account_.find(account)->second;
  if (!l.sorted.empty() && !(l.sorted.back() < *k)) return insert(account, sha256);
  l.sorted.push_back(*k);
  ++size_;
}

void SuppressionSet::clear() {
  by_account_.clear();
  appending_.clear();
  size_ = 0;
}

bool SuppressionSet::contains_hash(std::string_view account, const std::string& sha256) const {
  auto k = key_of(sha256);
  if (!k) return false;
  for (std::string_view a : {account, store::kGlobalAccount}) {
    auto it = by_account_.find(std::string(a));
    if (it != by_account_.end() && it->second.has(*k)) return true;
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
