#pragma once
// The daemon's copy of the mailboxes table. Anyone may change the table — the platform's web
// app, `deliverd mailbox add`, another daemon's admin API, the policy gate pausing a mailbox —
// and migration 0006 announces each change on kMailboxChannel, so every daemon reads the list
// again at once. A connection lost is a notification possibly missed: the list is read again
// when it is back.
//
// One daemon's loops share one directory's rows: the primary's directory reads the table and
// hands every load to the others (follow, take), which read rows again only by asking it.
#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/lifetime.h"
#include "core/result.h"
#include "core/timer.h"
#include "store/mailboxes.h"
#include "store/pg_connection.h"
#include "store/secret_box.h"

namespace deliverd::daemon {

class MailboxDirectory {
 public:
  // pg and box must outlive the directory; it sets pg's notify and lost handlers.
  MailboxDirectory(uv_loop_t* loop, store::PgConnection& pg, const store::SecretBox& box);
  ~MailboxDirectory();
  MailboxDirectory(const MailboxDirectory&) = delete;
  MailboxDirectory& operator=(const MailboxDirectory&) = delete;

  // LISTENs, then loads (in that order, so no change falls between the two). cb runs once with
  // the first load's result; later loads that fail keep the previous list.
  void start(std::function<void(core::Result<size_t, std::string>)> cb);

  // Ids are unique per account only: a mailbox is always looked up with its account.
  const store::Mailbox* find(const std::string& account, const std::string& id) const;
  // The same row, kept alive by the caller beyond the next load.
  std::shared_ptr<const store::Mailbox> get(const std::string& account, const std::string& id) const;
  size_t size() const { return mailboxes_.size(); }
  // Every (account, id) loaded.
  std::vector<store::MailboxRef> refs() const;

  // Reads the whole table again. `then` runs after a load that began after this call (so it
  // sees every change committed before it), whether that load succeeded or not. Calls made while
  // a load runs share the next one.
  void refresh(std::function<void()> then = {});
  // The same for one mailbox: its row is read again (and dropped if it is gone).
  void refresh(const store::MailboxRef& ref, std::function<void()> then = {});

  // Runs after a load for each mailbox whose sending settings changed (store::same_sending_settings)
  // or that is gone, so its idle pooled sessions can be closed.
  void on_change(std::function<void(const store::MailboxRef&)> handler) { on_change_ = std::move(handler); }

  // The rows are immutable once loaded, so other loops' directories point at the same ones.
  using Rows = std::map<store::MailboxRef, std::shared_ptr<const store::Mailbox>>;
  // The leader's side: runs after each load that read rows, with all of them and the refs that
  // changed (on_change's), before the callbacks waiting for that load.
  void on_load(std::function<void(const Rows&, const std::vector<store::MailboxRef>& changed)> handler) {
    on_load_ = std::move(handler);
  }
  // A follower's side, set before start(): it neither LISTENs nor reads; refresh() becomes
  // ask(ref or all, then), which must run `then` on this loop after the leader's next load.
  using Ask = std::function<void(std::optional<store::MailboxRef>, std::function<void()> then)>;
  void follow(Ask ask) { ask_ = std::move(ask); }
  // A follower takes each of the leader's loads: on_change runs for `changed`, and the first
  // answers start().
  void take(Rows rows, const std::vector<store::MailboxRef>& changed);

 private:
  void load();
  void listen_again();

  store::PgConnection& pg_;
  const store::SecretBox& box_;
  Rows mailboxes_;
  std::function<void(const Rows&, const std::vector<store::MailboxRef>&)> on_load_;
  Ask ask_;            // set: a follower
  bool taken_ = false;  // a follower has had a load
  uint64_t generation_ = 0;  // Mailbox::generation of the latest change
  std::function<void(const store::MailboxRef&)> on_change_;
  std::function<void(core::Result<size_t, std::string>)> start_cb_;
  // What the next load reads: everything, or these rows (beyond kMaxRows, everything).
  static constexpr size_t kMaxRows = 100;
  bool full_ = false;
  std::set<store::MailboxRef> ids_;
  bool loading_ = false;
  std::vector<std::function<void()>> waiting_;  // for the next load to begin
  core::TimerHandle relisten_timer_;
  int relisten_failures_ = 0;
  // Replies may arrive after destruction (the connection outlives us): they check this first.
  core::Lifetime alive_;
};

}  // namespace deliverd::daemon
