#include "policy/mailbox_keys.h"

#include <map>
#include <memory>
#include <optional>

#include "core/log.h"

namespace deliverd::policy {
namespace {

// The <what> parts the gate writes; anything else under mbx: is not ours to move.
std::optional<size_t> what_start(std::string_view rest) {
  for (std::string_view w : {":state", ":sends", ":next", ":resv", ":warmup", ":gcra_us:h", ":gcra_us:m"})
    if (rest.size() > w.size() && rest.substr(rest.size() - w.size()) == w) return rest.size() - w.size();
  size_t day = rest.rfind(":day:");
  if (day != std::string_view::npos && day > 0 && day + 5 < rest.size() &&
      rest.substr(day + 5).find_first_not_of("0123456789") == std::string_view::npos)
    return day;
  return std::nullopt;
}

std::string glob_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

struct Upgrade {
  queue::RedisClient* redis;
  std::string prefix;
  std::map<std::string, std::string> account_of;  // id → account; "" when ambiguous
  std::function<void(core::Result<size_t, std::string>)> cb;
  size_t renamed = 0, waiting = 0;
  std::string next_cursor;
  bool failed = false;

  void scan(const std::string& cursor) {
    redis->command({"SCAN", cursor, "MATCH", glob_escape(prefix) + "mbx:*", "COUNT", "1000"},
                   [self = shared(), this](const queue::RedisReply& r) { on_page(r); });
  }
  std::shared_ptr<Upgrade> shared();
  std::weak_ptr<Upgrade> weak;

  void on_page(const queue::RedisReply& r) {
    if (r.type != queue::RedisReply::Type::Array || r.elements.size() != 2)
      return cb(core::Err("SCAN: " + (r.is_error() ? r.str : std::string("unexpected reply"))));
    next_cursor = r.elements[0].str;
    const std::string old_root = prefix + "mbx:";
    for (const auto& k : r.elements[1].elements) {
      std::string_view key = k.str;
      if (key.substr(0, old_root.size()) != old_root) continue;
      std::string_view rest = key.substr(old_root.size());
      auto at = what_start(rest);
      if (!at) continue;
      std::string id(rest.substr(0, *at));
      auto it = account_of.find(id);
      if (it == account_of.end()) continue;  // a mailbox that is gone: its keys expire
      if (it->second.empty()) {
        core::log_warn("policy_key_ambiguous", {{"key", std::string(key)},
                                                {"note", "two accounts have this mailbox id; the old state is left"}});
        continue;
      }
      ++waiting;
      redis->command({"RENAMENX", std::string(key), mailbox_key(prefix, it->second, id, rest.substr(*at + 1))},
                     [self = shared(), this](const queue::RedisReply& rr) {
                       if (rr.is_error()) failed = true;
                       if (rr.type == queue::RedisReply::Type::Integer && rr.integer == 1) ++renamed;
                       if (--waiting == 0) after_page();
                     });
    }
    if (waiting == 0) after_page();
  }

  void after_page() {
    if (failed) return cb(core::Err(std::string("RENAMENX failed")));
    if (next_cursor == "0") return cb(renamed);
    scan(next_cursor);
  }
};

std::shared_ptr<Upgrade> Upgrade::shared() { return weak.lock(); }

}  // namespace

std::string mailbox_key(std::string_view prefix, std::string_view account, std::string_view id,
                        std::string_view what) {
  std::string k(prefix);
  k.append("acct:").append(std::to_string(account.size())).append(":").append(account);
  k.append(":mbx:").append(id).append(":").append(what);
  return k;
}

void upgrade_mailbox_keys(queue::RedisClient& redis, std::string prefix, const std::vector<MailboxRef>& mailboxes,
                          std::function<void(core::Result<size_t, std::string>)> cb) {
  auto u = std::make_shared<Upgrade>();
  u->weak = u;
  u->redis = &redis;
  u->prefix = std::move(prefix);
  u->cb = std::move(cb);
  for (const auto& m : mailboxes) {
    auto [it, fresh] = u->account_of.emplace(m.id, m.account);
    if (!fresh && it->second != m.account) it->second.clear();
  }
  u->scan("0");
}

}  // namespace deliverd::policy
