#include "inbound/watcher.h"

#include <algorithm>
#include <array>
#include <string>

#include "core/log.h"

namespace deliverd::inbound {
namespace {

constexpr std::array<std::string_view, 6> kWatchStateNames = {"connecting", "reading", "idle",
                                                              "polling",    "backoff", "stopped"};

// "4,5,6,9" → "4:6,9": a batch of new mail is mostly consecutive UIDs.
std::string uid_set(const std::vector<uint32_t>& uids) {
  std::string out;
  for (size_t i = 0; i < uids.size();) {
    size_t j = i;
    while (j + 1 < uids.size() && uids[j + 1] == uids[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(uids[i]);
    if (j > i) out += ':' + std::to_string(uids[j]);
    i = j + 1;
  }
  return out;
}

std::string describe(const ImapError& e) {
  std::string out = std::string(to_string(e.kind)) + " in " + std::string(to_string(e.command));
  if (!e.text.empty()) out += ": " + e.text;
  return out;
}

// The provider asked us to slow down, or a login was refused (retrying fast would only lock
// the account): these wait at least backoff_limit_ms.
bool provider_limit(ImapErrorKind k) {
  return k == ImapErrorKind::Limit || k == ImapErrorKind::Unavailable || k == ImapErrorKind::LoginFailed ||
         k == ImapErrorKind::AuthUnavailable;
}

bool moves(SignalKind k) { return k == SignalKind::Bounce || k == SignalKind::Delay || k == SignalKind::Complaint; }

}  // namespace

std::string_view to_string(WatchState s) { return kWatchStateNames[static_cast<size_t>(s)]; }

std::string_view Watcher::step_name(Step s) {
  static constexpr std::string_view kNames[] = {
      "resolve",   "credentials", "connect", "login", "open", "load_cursor", "save_cursor", "search",
      "structure", "fetch",       "signal",  "move",  "idle", "poll",        "connection",
  };
  return kNames[static_cast<size_t>(s)];
}

Watcher::Watcher(uv_loop_t* loop, WatcherConfig cfg, WatcherHost& host)
    : loop_(loop), cfg_(std::move(cfg)), host_(host), timer_(loop) {
  if (cfg_.imap.tls_name.empty()) cfg_.imap.tls_name = cfg_.host;
  if (cfg_.fetch_batch == 0) cfg_.fetch_batch = 1;
  if (cfg_.backoff_min_ms == 0) cfg_.backoff_min_ms = 1;
  cfg_.backoff_max_ms = std::max(cfg_.backoff_max_ms, cfg_.backoff_min_ms);
}

Watcher::~Watcher() {
  alive_.end();
  close_client();
  timer_.reset();
}

void Watcher::start() {
  if (started_ || state_ == WatchState::Stopped) return;
  started_ = true;
  connect();
}

void Watcher::stop() {
  if (state_ == WatchState::Stopped) return;
  ++session_;
  close_client();
  timer_->stop();
  set_state(WatchState::Stopped);
  alive_.end();
}

void Watcher::set_state(WatchState s, std::string_view error) {
  if (s == state_ && reported_) return;
  state_ = s;
  reported_ = true;
  host_.state_changed(s, error);
}

void Watcher::close_client() {
  if (!client_) return;
  ImapClient* c = client_;
  client_ = nullptr;
  c->close();
}

void Watcher::connect() {
  ++session_;
  todo_.clear();
  batch_.clear();
  structures_.clear();
  more_mail_ = idle_ending_ = one_by_one_ = false;
  set_state(WatchState::Connecting);
  host_.resolve([this, g = guard()](core::Result<sockaddr_storage, std::string> r) {
    if (!current(g)) return;
    if (!r) return fail(Step::Resolve, r.error());
    addr_ = r.value();
    host_.credentials([this, g](core::Result<ImapCredentials, std::string> c) {
      if (!current(g)) return;
      if (!c) return fail(Step::Credentials, c.error());
      login(std::move(c).value());
    });
  });
}

void Watcher::login(ImapCredentials credentials) {
  ImapClient::Hooks hooks;
  hooks.exists = [this, g = guard()](uint32_t) {
    if (current(g)) on_exists();
  };
  hooks.closed = [this, g = guard()](const std::optional<ImapError>& e) {
    if (!current(g)) return;
    client_ = nullptr;  // being freed: nothing more may be asked of it
    if (e) return fail(Step::Connection, *e);
    fail(Step::Connection, "the server ended the session");
  };
  auto creds = std::make_shared<ImapCredentials>(std::move(credentials));
  client_ = ImapClient::connect(loop_, cfg_.imap, reinterpret_cast<const sockaddr*>(&addr_), cfg_.host,
                                std::move(hooks), [this, g = guard(), creds](const ImapResult<core::Ok>& r) {
                                  if (!current(g)) return;
                                  if (!r) return fail(Step::Connect, r.error());
                                  client_->login(std::move(*creds), [this, g](const ImapResult<core::Ok>& l) {
                                    if (!current(g)) return;
                                    if (!l) return fail(Step::Login, l.error());
                                    open_folder();
                                  });
                                });
}

void Watcher::open_folder() {
  auto done = [this, g = guard()](const ImapResult<MailboxInfo>& r) {
    if (!current(g)) return;
    if (!r) return fail(Step::Open, r.error());
    load_cursor(r.value());
  };
  // Read-only unless messages are to be moved: EXAMINE guarantees the watcher changes nothing.
  if (cfg_.move_to.empty())
    client_->examine(cfg_.folder, std::move(done));
  else
    client_->select(cfg_.folder, std::move(done));
}

void Watcher::load_cursor(const MailboxInfo& box) {
  host_.load_cursor([this, g = guard(), box](core::Result<Cursor, std::string> r) {
    if (!current(g)) return;
    if (!r) return fail(Step::LoadCursor, r.error());
    const Cursor& stored = r.value();
    if (stored.uid_validity != 0 && stored.uid_validity == box.uid_validity) {
      cursor_ = stored;
      return read_new();
    }
    // Nothing stored, or the UIDs were renumbered: what is in the folder now predates the watch
    // (or cannot be told apart from what was read), so reading starts with the next message.
    if (box.uid_next > 0) return begin_at(box, box.uid_next - 1);
    client_->uid_search("UID *", [this, g, box](const ImapResult<std::vector<uint32_t>>& found) {
      if (!current(g)) return;
      if (!found) return fail(Step::Search, found.error());
      const auto& uids = found.value();
      begin_at(box, uids.empty() ? 0 : *std::max_element(uids.begin(), uids.end()));
    });
  });
}

void Watcher::begin_at(const MailboxInfo& box, uint32_t last_uid) {
  cursor_ = Cursor{box.uid_validity, last_uid};
  core::log_info("imap_watch_cursor_reset",
                 {{"host", cfg_.host}, {"folder", cfg_.folder}, {"last_uid", std::to_string(last_uid)}});
  host_.save_cursor(cursor_, [this, g = guard()](bool ok) {
    if (!current(g)) return;
    if (!ok) return fail(Step::SaveCursor, "the cursor could not be saved");
    read_new();
  });
}

void Watcher::read_new() {
  set_state(WatchState::Reading);
  more_mail_ = false;
  one_by_one_ = false;
  client_->uid_search("UID " + std::to_string(cursor_.last_uid + 1) + ":*",
                      [this, g = guard()](const ImapResult<std::vector<uint32_t>>& r) {
                        if (!current(g)) return;
                        if (!r) return fail(Step::Search, r.error());
                        // "n:*" always matches the highest UID, even when it is older than n.
                        todo_.clear();
                        for (uint32_t uid : r.value())
                          if (uid > cursor_.last_uid) todo_.push_back(uid);
                        std::sort(todo_.begin(), todo_.end());
                        todo_.erase(std::unique(todo_.begin(), todo_.end()), todo_.end());
                        next_batch();
                      });
}

void Watcher::next_batch() {
  if (todo_.empty()) return reading_done();
  size_t n = std::min<size_t>(todo_.size(), one_by_one_ ? 1 : cfg_.fetch_batch);
  batch_.assign(todo_.begin(), todo_.begin() + static_cast<std::ptrdiff_t>(n));
  todo_.erase(todo_.begin(), todo_.begin() + static_cast<std::ptrdiff_t>(n));
  structures_.clear();
  at_ = 0;
  FetchItems items;
  items.flags = false;
  items.body_structure = true;
  client_->uid_fetch(uid_set(batch_), items, [this, g = guard()](const ImapResult<std::vector<FetchData>>& r) {
    if (!current(g)) return;
    if (!r) {
      if (r.error().kind != ImapErrorKind::CommandFailed) return fail(Step::Structure, r.error());
      if (batch_.size() > 1) {
        // One message the server cannot describe should not cost the others: ask one at a time.
        one_by_one_ = true;
        todo_.insert(todo_.begin(), batch_.begin(), batch_.end());
        return next_batch();
      }
      return skip(batch_.front(), describe(r.error()));
    }
    for (const auto& f : r.value())
      if (f.uid && f.body_structure) structures_.emplace_back(*f.uid, *f.body_structure);
    next_message();
  });
}

void Watcher::next_message() {
  if (at_ >= batch_.size()) return next_batch();
  uint32_t uid = batch_[at_];
  for (const auto& [u, structure] : structures_)
    if (u == uid) return fetch_message(uid, structure);
  skip(uid, "no body structure (expunged meanwhile?)");
}

void Watcher::fetch_message(uint32_t uid, const BodyPart& structure) {
  auto plan = std::make_shared<FetchPlan>(plan_fetch(structure, cfg_.plan));
  FetchItems items;
  items.flags = false;
  items.sections = plan->names();
  items.max_section_bytes = cfg_.plan.max_section_bytes;
  client_->uid_fetch(
      std::to_string(uid), std::move(items),
      [this, g = guard(), uid, plan](const ImapResult<std::vector<FetchData>>& r) {
        if (!current(g)) return;
        if (!r) {
          if (r.error().kind == ImapErrorKind::CommandFailed) return skip(uid, describe(r.error()));
          return fail(Step::Fetch, r.error());
        }
        const FetchData* data = nullptr;
        for (const auto& f : r.value())
          if (f.uid == uid && !f.sections.empty()) data = &f;
        if (!data) return skip(uid, "the server returned no sections");
        Message m = assemble_message(*plan, *data, cfg_.mime);
        Signal sig = classify(m);
        SignalKind kind = sig.kind;
        host_.signal(sig, uid, [this, g, uid, kind](bool ok) {
          if (!current(g)) return;
          if (!ok) return fail(Step::Signal, "the signal for uid " + std::to_string(uid) + " was not handled");
          if (cfg_.move_to.empty() || !moves(kind)) return handled(uid, true);
          client_->uid_move(std::to_string(uid), cfg_.move_to, [this, g, uid](const ImapResult<core::Ok>& m) {
            if (!current(g)) return;
            if (!m) {
              if (m.error().kind != ImapErrorKind::CommandFailed) return fail(Step::Move, m.error());
              // The signal is handled; a refused move leaves the message where it was, no more.
              std::string why = describe(m.error());
              core::log_warn(
                  "imap_watch_move_failed",
                  {{"host", cfg_.host}, {"uid", std::to_string(uid)}, {"folder", cfg_.move_to}, {"error", why}});
            }
            handled(uid, true);
          });
        });
      });
}

void Watcher::skip(uint32_t uid, std::string_view why) {
  core::log_warn("imap_watch_message_skipped",
                 {{"host", cfg_.host}, {"folder", cfg_.folder}, {"uid", std::to_string(uid)}, {"reason", why}});
  handled(uid, false);
}

void Watcher::handled(uint32_t uid, bool counted) {
  if (counted) ++messages_read_;
  cursor_.last_uid = std::max(cursor_.last_uid, uid);
  host_.save_cursor(cursor_, [this, g = guard()](bool ok) {
    if (!current(g)) return;
    if (!ok) return fail(Step::SaveCursor, "the cursor could not be saved");
    ++at_;
    next_message();
  });
}

void Watcher::reading_done() {
  backoff_ms_ = 0;
  batch_.clear();
  structures_.clear();
  if (more_mail_) return read_new();
  wait_for_mail();
}

void Watcher::wait_for_mail() {
  if (!client_->has_capability("IDLE")) {
    set_state(WatchState::Polling);
    timer_->start(cfg_.poll_interval_ms, [this, g = guard()] {
      if (!current(g)) return;
      // NOOP first: some servers report new mail to a session only at a command boundary.
      client_->noop([this, g](const ImapResult<core::Ok>& r) {
        if (!current(g)) return;
        if (!r) return fail(Step::Poll, r.error());
        read_new();
      });
    });
    return;
  }
  set_state(WatchState::Idle);
  idle_ending_ = false;
  client_->idle([this, g = guard()](const ImapResult<core::Ok>& r) {
    if (!current(g)) return;
    idle_ending_ = false;
    if (!r) return fail(Step::Idle, r.error());
    read_new();
  });
}

void Watcher::on_exists() {
  switch (state_) {
    case WatchState::Idle:
      if (!idle_ending_) {
        idle_ending_ = true;
        client_->stop_idle();  // IDLE's callback then reads
      }
      return;
    case WatchState::Reading:
      more_mail_ = true;
      return;
    default:
      return;  // Connecting: EXAMINE's count, read anyway; Polling: the NOOP's, read right after
  }
}

void Watcher::fail(Step step, const ImapError& e) { fail(step, describe(e), provider_limit(e.kind)); }

void Watcher::fail(Step step, std::string_view text, bool limit) {
  ++session_;  // answers still due for this connection are dropped
  close_client();
  last_error_ = std::string(step_name(step)) + ": " + std::string(text);
  backoff_ms_ = backoff_ms_ == 0 ? cfg_.backoff_min_ms : std::min(backoff_ms_ * 2, cfg_.backoff_max_ms);
  uint64_t wait = limit ? std::max(backoff_ms_, cfg_.backoff_limit_ms) : backoff_ms_;
  core::log_warn(
      "imap_watch_backoff",
      {{"host", cfg_.host}, {"folder", cfg_.folder}, {"error", last_error_}, {"retry_ms", std::to_string(wait)}});
  set_state(WatchState::Backoff, last_error_);
  timer_->start(wait, [this, g = guard()] {
    if (!current(g)) return;
    connect();
  });
}

}  // namespace deliverd::inbound
