#include "daemon/mailbox_directory.h"

#include <algorithm>

#include "core/log.h"
#include "core/metrics.h"

namespace deliverd::daemon {
namespace {

core::Family<core::Counter>& loads() {
  static auto& f = core::Registry::global().counter(
      "deliverd_mailbox_reloads_total", "Reads of the mailboxes table, by result (ok, error)", {"result"});
  return f;
}

constexpr uint64_t kRelistenMs = 1000;  // after a lost connection; doubles up to 32 s

}  // namespace

MailboxDirectory::MailboxDirectory(uv_loop_t* loop, store::PgConnection& pg, const store::SecretBox& box)
    : pg_(pg), box_(box), relisten_timer_(loop) {
  loads();
}

MailboxDirectory::~MailboxDirectory() {
  pg_.set_notify_handler({});
  pg_.set_lost_handler({});
}

void MailboxDirectory::start(std::function<void(core::Result<size_t, std::string>)> cb) {
  start_cb_ = std::move(cb);
  if (ask_) {
    if (taken_) std::exchange(start_cb_, {})(mailboxes_.size());
    return;
  }
  pg_.set_notify_handler([this](const std::string& channel, const std::string& id) {
    if (channel != store::kMailboxChannel) return;
    auto ref = store::parse_mailbox_notification(id);
    ref ? refresh(*ref) : refresh();
  });
  pg_.set_lost_handler([this](const std::string& error) {
    core::log_warn("mailboxes_connection_lost", {{"error", error}, {"note", "the list is read again once it is back"}});
    relisten_timer_->start(kRelistenMs, [this] { listen_again(); });
  });
  pg_.query("LISTEN " + std::string(store::kMailboxChannel), {}, [this, alive = alive_.token()](const store::PgResult& r) {
    if (!alive) return;
    if (!r.ok) {
      loads().with({"error"}).inc();
      core::log_error("mailbox_listen_failed", {{"error", r.error}});
      if (start_cb_) std::exchange(start_cb_, {})(core::Err("cannot LISTEN for mailbox changes: " + r.error));
      return;
    }
    refresh();
  });
}

void MailboxDirectory::listen_again() {
  pg_.query("LISTEN " + std::string(store::kMailboxChannel), {}, [this, alive = alive_.token()](const store::PgResult& r) {
    if (!alive) return;
    if (!r.ok) {
      const int shift = std::min(relisten_failures_++, 5);
      relisten_timer_->start(kRelistenMs << shift, [this] { listen_again(); });
      return;
    }
    relisten_failures_ = 0;
    refresh();
  });
}

const store::Mailbox* MailboxDirectory::find(const std::string& account, const std::string& id) const {
  return get(account, id).get();  // the directory keeps the row alive until its next load
}

std::shared_ptr<const store::Mailbox> MailboxDirectory::get(const std::string& account, const std::string& id) const {
  auto it = mailboxes_.find(store::MailboxRef{account, id});
  return it == mailboxes_.end() ? nullptr : it->second;
}

void MailboxDirectory::take(Rows rows, const std::vector<store::MailboxRef>& changed) {
  auto alive = alive_.token();
  mailboxes_ = std::move(rows);
  taken_ = true;
  if (on_change_)
    for (const auto& ref : changed) on_change_(ref);
  if (alive && start_cb_) std::exchange(start_cb_, {})(mailboxes_.size());
}

std::vector<store::MailboxRef> MailboxDirectory::refs() const {
  std::vector<store::MailboxRef> out;
  out.reserve(mailboxes_.size());
  for (const auto& [ref, m] : mailboxes_) out.push_back(ref);
  return out;
}

void MailboxDirectory::refresh(std::function<void()> then) {
  if (ask_) return ask_(std::nullopt, std::move(then));
  full_ = true;
  if (then) waiting_.push_back(std::move(then));
  if (!loading_) load();
}

void MailboxDirectory::refresh(const store::MailboxRef& ref, std::function<void()> then) {
  if (ask_) return ask_(ref, std::move(then));
  ids_.insert(ref);
  if (then) waiting_.push_back(std::move(then));
  if (!loading_) load();
}

void MailboxDirectory::load() {
  loading_ = true;
  const bool full = full_ || ids_.size() > kMaxRows;
  std::vector<store::MailboxRef> ids(ids_.begin(), ids_.end());
  full_ = false;
  ids_.clear();
  auto done = [this, alive = alive_.token(), full, ids, waiters = std::exchange(waiting_, {})](
                  core::Result<std::vector<store::Mailbox>, std::string> r) {
    if (!alive) return;
    loading_ = false;
    std::vector<store::MailboxRef> changed;
    if (r) {
      loads().with({"ok"}).inc();
      // The rows this load read again, as they were: rows gone stay gone.
      Rows before;
      if (full) before = std::exchange(mailboxes_, {});
      for (const auto& id : ids)
        if (auto it = mailboxes_.find(id); it != mailboxes_.end()) before.insert(mailboxes_.extract(it));
      for (auto& m : *r) {
        store::MailboxRef ref{m.account, m.id};
        auto old = before.find(ref);
        if (old != before.end() && store::same_sending_settings(*old->second, m)) {
          m.generation = old->second->generation;
        } else {
          m.generation = ++generation_;
          if (old != before.end()) changed.push_back(ref);
        }
        if (old != before.end()) before.erase(old);
        mailboxes_[std::move(ref)] = std::make_shared<const store::Mailbox>(std::move(m));
      }
      for (const auto& [ref, m] : before) changed.push_back(ref);
      core::log_info("mailboxes_loaded", {{"read", full ? "all" : std::to_string(ids.size())},
                                          {"mailboxes", std::to_string(mailboxes_.size())},
                                          {"changed", std::to_string(changed.size())}});
    } else {
      loads().with({"error"}).inc();
      core::log_error("mailbox_load_failed", {{"error", r.error()}, {"note", "the previous list stays in use"}});
    }
    if (r && on_load_) on_load_(mailboxes_, changed);
    if (on_change_)
      for (const auto& ref : changed) on_change_(ref);
    if (start_cb_) {
      auto cb = std::exchange(start_cb_, {});
      r ? cb(mailboxes_.size()) : cb(core::Err(r.error()));
      if (!alive) return;  // a callback destroyed the directory
    }
    for (const auto& w : waiters) {
      w();
      if (!alive) return;  // a callback destroyed the directory
    }
    if (full_ || !ids_.empty()) load();
  };
  if (full)
    store::load_mailboxes(pg_, box_, std::move(done));
  else
    store::load_mailboxes_by_ref(pg_, box_, ids, std::move(done));
}

}  // namespace deliverd::daemon
