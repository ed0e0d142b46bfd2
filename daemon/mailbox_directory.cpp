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
    : loop_(loop), pg_(pg), box_(box), relisten_timer_(loop) {
  loads();
}

MailboxDirectory::~MailboxDirectory() {
  *self_ = nullptr;
  pg_.set_notify_handler({});
  pg_.set_lost_handler({});
}

void MailboxDirectory::start(std::function<void(core::Result<size_t, std::string>)> cb) {
  start_cb_ = std::move(cb);
  pg_.set_notify_handler([this](const std::string& channel, const std::string&) {
    if (channel == store::kMailboxChannel) refresh();
  });
  pg_.set_lost_handler([this](const std::string& error) {
    core::log_warn("mailboxes_connection_lost", {{"error", error}, {"note", "the list is read again once it is back"}});
    relisten_timer_->start(kRelistenMs, [this] { listen_again(); });
  });
  pg_.query("LISTEN " + std::string(store::kMailboxChannel), {}, [ref = self_](const store::PgResult& r) {
    MailboxDirectory* self = *ref;
    if (!self) return;
    if (!r.ok) {
      loads().with({"error"}).inc();
      core::log_error("mailbox_listen_failed", {{"error", r.error}});
      if (self->start_cb_) std::exchange(self->start_cb_, {})(core::Err("cannot LISTEN for mailbox changes: " + r.error));
      return;
    }
    self->refresh();
  });
}

void MailboxDirectory::listen_again() {
  pg_.query("LISTEN " + std::string(store::kMailboxChannel), {}, [ref = self_](const store::PgResult& r) {
    MailboxDirectory* self = *ref;
    if (!self) return;
    if (!r.ok) {
      const int shift = std::min(self->relisten_failures_++, 5);
      self->relisten_timer_->start(kRelistenMs << shift, [self] { self->listen_again(); });
      return;
    }
    self->relisten_failures_ = 0;
    self->refresh();
  });
}

const store::Mailbox* MailboxDirectory::find(const std::string& id) const {
  auto it = mailboxes_.find(id);
  return it == mailboxes_.end() ? nullptr : &it->second;
}

void MailboxDirectory::refresh(std::function<void()> then) {
  if (then) waiting_.push_back(std::move(then));
  if (loading_) {
    stale_ = true;
    return;
  }
  load();
}

void MailboxDirectory::load() {
  loading_ = true;
  stale_ = false;
  store::load_mailboxes(pg_, box_, [ref = self_, waiters = std::exchange(waiting_, {})](auto r) {
    MailboxDirectory* self = *ref;
    if (!self) return;
    self->loading_ = false;
    if (r) {
      loads().with({"ok"}).inc();
      std::map<std::string, store::Mailbox> fresh;
      for (auto& m : *r) fresh[m.id] = std::move(m);
      self->mailboxes_ = std::move(fresh);
      core::log_info("mailboxes_loaded", {{"mailboxes", std::to_string(self->mailboxes_.size())}});
    } else {
      loads().with({"error"}).inc();
      core::log_error("mailbox_load_failed", {{"error", r.error()}, {"note", "the previous list stays in use"}});
    }
    if (self->start_cb_) {
      auto cb = std::exchange(self->start_cb_, {});
      r ? cb(self->mailboxes_.size()) : cb(core::Err(r.error()));
      if (!*ref) return;
    }
    for (const auto& w : waiters) {
      w();
      if (!*ref) return;
    }
    if (self->stale_ || !self->waiting_.empty()) self->load();
  });
}

}  // namespace deliverd::daemon
