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

bool SuppressionSet::in_sorted(std::string_view account, const Key& k) const {
  auto it = sorted_->find(account);
  return it != sorted_->end() && std::binary_search(it->second.begin(), it->second.end(), k);
}

bool SuppressionSet::has(std::string_view account, const Key& k) const {
  if (!changes_.empty()) {
    auto c = changes_.find(account);
    if (c != changes_.end()) {
      if (c->second.added.count(k)) return true;
      if (c->second.removed.count(k)) return false;
    }
  }
  return in_sorted(account, k);
}

void SuppressionSet::insert(const std::string& account, const std::string& sha256) {
  auto k = key_of(sha256);
  if (!k || has(account, *k)) return;
  Changes& c = changes_[account];
  if (in_sorted(account, *k))
    c.removed.erase(*k);
  else
    c.added.insert(*k);
  ++size_;
}

void SuppressionSet::erase(const std::string& account, const std::string& sha256) {
  auto k = key_of(sha256);
  if (!k || !has(account, *k)) return;
  auto it = changes_.try_emplace(account).first;
  if (!it->second.added.erase(*k)) it->second.removed.insert(*k);
  --size_;
  if (it->second.added.empty() && it->second.removed.empty()) changes_.erase(it);
}

void SuppressionSet::append_sorted(const std::string& account, const std::string& sha256) {
  auto k = key_of(sha256);
  if (!k) return;
  if (frozen_) return insert(account, sha256);
  if (!appending_ || appending_account_ != account) {
    auto [it, fresh] = sorted_->try_emplace(account);
    // An account seen before, not just now: its array is finished, so this row goes in as a change.
    if (!fresh) return insert(account, sha256);
    appending_ = &it->second;  // map nodes do not move
    appending_account_ = account;
  }
  if (!appending_->empty() && !(appending_->back() < *k)) return insert(account, sha256);
  appending_->push_back(*k);
  ++size_;
}

void SuppressionSet::clear() {
  sorted_ = std::make_shared<ByAccount<std::vector<Key>>>();
  frozen_ = false;
  changes_.clear();
  appending_ = nullptr;
  appending_account_.clear();
  size_ = 0;
}

SuppressionSet SuppressionSet::share() {
  frozen_ = true;
  appending_ = nullptr;
  appending_account_.clear();
  return *this;
}

bool SuppressionSet::contains_hash(std::string_view account, const std::string& sha256) const {
  auto k = key_of(sha256);
  if (!k) return false;
  return has(account, *k) || has(store::kGlobalAccount, *k);
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
