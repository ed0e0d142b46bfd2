#include "daemon/inbound_watchers.h"

#include <algorithm>

#include "core/address.h"
#include "core/log.h"
#include "core/metrics.h"
#include "daemon/mailbox_directory.h"
#include "daemon/oauth_tokens.h"
#include "daemon/result_event.h"
#include "dns/address_policy.h"
#include "dns/resolver.h"
#include "inbound/watcher.h"
#include "policy/gate.h"
#include "queue/lease.h"
#include "queue/publisher.h"
#include "queue/redis_client.h"
#include "store/address_hash.h"
#include "store/delivery_events.h"
#include "store/inbound_watch.h"
#include "store/pg_connection.h"

namespace deliverd::daemon {
namespace {

core::Family<core::Counter>& signals_total() {
  static auto& f = core::Registry::global().counter(
      "deliverd_inbound_signals_total", "Signals read from sending mailboxes, by event and whether a sent message matched",
      {"event", "matched"});
  return f;
}
core::Family<core::Counter>& messages_total() {
  static auto& f = core::Registry::global().counter("deliverd_inbound_messages_total",
                                                    "Messages read from sending mailboxes, by class", {"class"});
  return f;
}
core::Family<core::Counter>& errors_total() {
  static auto& f = core::Registry::global().counter("deliverd_inbound_errors_total",
                                                    "Inbound watcher errors, by step", {"step"});
  return f;
}
core::Family<core::Gauge>& watchers_gauge() {
  static auto& f = core::Registry::global().gauge("deliverd_inbound_watchers",
                                                  "Inbox watchers this daemon holds, by state", {"state"});
  return f;
}

// The step a watcher's error names ("login: …", "connect: …"), for the errors metric.
std::string step_of(std::string_view error) {
  const size_t colon = error.find(':');
  std::string step(error.substr(0, colon == std::string_view::npos ? 0 : colon));
  if (step.empty() || step.size() > 20 || step.find(' ') != std::string::npos) return "other";
  return step;
}

bool watchable(const store::Mailbox& m) { return !m.imap.host.empty() && !m.disabled; }

}  // namespace

// One watched mailbox: the watcher and what it asks of the daemon.
class InboundWatchers::Watch final : public inbound::WatcherHost {
 public:
  Watch(InboundWatchers& owner, const store::Mailbox& m) : owner_(owner), mailbox_(m) {
    const auto& cfg = owner.cfg_;
    inbound::WatcherConfig wc;
    wc.host = m.imap.host;
    wc.port = static_cast<uint16_t>(m.imap.port);
    wc.imap.security = m.imap.port == 993 ? core::Security::Tls : core::Security::StartTls;
    wc.imap.tls = owner.parts_.tls;
    wc.move_to = cfg.move_to;
    wc.poll_interval_ms = static_cast<uint64_t>(cfg.poll_interval_ms);
    wc.plan.max_section_bytes = static_cast<uint32_t>(cfg.max_fetch_bytes);
    wc.mime.max_part_bytes = static_cast<size_t>(cfg.max_fetch_bytes);
    watcher_ = std::make_unique<inbound::Watcher>(owner.parts_.loop, std::move(wc), *this);
  }
  ~Watch() override { watcher_.reset(); }

  void start() { watcher_->start(); }
  void stop() { watcher_->stop(); }
  const store::Mailbox& mailbox() const { return mailbox_; }
  inbound::WatchState state() const { return state_; }

  // WatcherHost
  void resolve(std::function<void(core::Result<sockaddr_storage, std::string>)> done) override {
    const int port = mailbox_.imap.port;
    if (!dns::port_allowed(port) || (port != 143 && port != 993))
      return done(core::Err("port " + std::to_string(port) + " is not an IMAP port deliverd may use"));
    owner_.parts_.resolver->resolve_host(
        mailbox_.imap.host, [port, alive = alive_.token(), done = std::move(done)](const dns::ResolvedHost& r) {
          if (!alive) return;
          if (r.allowed.empty()) {
            std::string why = r.error != dns::Code::None ? std::string(dns::to_string(r.error)) : "no address";
            if (!r.refused.empty()) why = "refused " + r.refused.front().first + ": " + r.refused.front().second;
            return done(core::Err("resolve: " + r.host + ": " + why));
          }
          done(dns::with_port(r.allowed.front(), port));
        });
  }

  void credentials(std::function<void(core::Result<inbound::ImapCredentials, std::string>)> done) override {
    const auto& imap = mailbox_.imap;
    const std::string user = imap.username.empty() ? mailbox_.email : imap.username;
    if (!imap.password.empty()) return done(inbound::ImapCredentials::with_password(user, imap.password));
    if (!mailbox_.oauth_provider.empty() && owner_.parts_.oauth) {
      return owner_.parts_.oauth->token(
          mailbox_, [user, alive = alive_.token(), done = std::move(done)](core::Result<std::string, oauth::TokenFailure> t) {
            if (!alive) return;
            if (!t) return done(core::Err("oauth: " + std::string(oauth::to_string(t.error().kind)) + ": " + t.error().detail));
            done(inbound::ImapCredentials::with_token(user, *t));
          });
    }
    if (!mailbox_.oauth_token.empty()) return done(inbound::ImapCredentials::with_token(user, mailbox_.oauth_token));
    done(core::Err(std::string("credentials: the mailbox has no IMAP password and no OAuth grant")));
  }

  void load_cursor(std::function<void(core::Result<inbound::Cursor, std::string>)> done) override {
    store::load_watch(*owner_.parts_.pg, mailbox_.account, mailbox_.id,
                      [alive = alive_.token(), done = std::move(done)](
                          core::Result<std::optional<store::WatchRow>, std::string> r) {
                        if (!alive) return;
                        if (!r) return done(core::Err("cursor: " + r.error()));
                        inbound::Cursor c;
                        if (*r) c = {(*r)->uid_validity, (*r)->last_uid};
                        done(c);
                      });
  }

  void save_cursor(inbound::Cursor c, std::function<void(bool ok)> done) override {
    store::save_watch_cursor(*owner_.parts_.pg, mailbox_.account, mailbox_.id, c.uid_validity, c.last_uid,
                             [alive = alive_.token(), done = std::move(done)](core::Result<core::Ok, std::string> r) {
                               if (!alive) return;
                               if (!r) core::log_warn("inbound_cursor_save_failed", {{"error", r.error()}});
                               done(r.ok());
                             });
  }

  void signal(const inbound::Signal& s, uint32_t uid, std::function<void(bool ok)> done) override {
    messages_total().with({std::string(inbound::to_string(s.kind))}).inc();
    if (!s.error.empty())
      core::log_info("inbound_report_unreadable", {{"mailbox", mailbox_.id}, {"uid", std::to_string(uid)}, {"error", s.error}});
    if (s.kind == inbound::SignalKind::Ignored) return done(true);
    // One event per recipient the signal names (a DSN may report several); a reply or complaint
    // names the one it came from.
    auto recipients = std::make_shared<std::vector<inbound::SignalRecipient>>(s.recipients);
    if (recipients->empty()) {
      inbound::SignalRecipient from;
      from.address = s.from;
      recipients->push_back(std::move(from));
    }
    auto sig = std::make_shared<inbound::Signal>(s);
    next_recipient(sig, recipients, 0, uid, true, std::move(done));
  }

  void state_changed(inbound::WatchState s, std::string_view error) override {
    state_ = s;
    if (!error.empty()) {
      errors_total().with({step_of(error)}).inc();
      core::log_warn("inbound_watch_error", {{"mailbox", mailbox_.id}, {"error", std::string(error)}});
    }
    owner_.update_gauge();
    // A stopped watch says nothing: another daemon may hold the mailbox by now.
    if (s == inbound::WatchState::Stopped) return;
    store::save_watch_state(*owner_.parts_.pg, mailbox_.account, mailbox_.id, std::string(inbound::to_string(s)),
                            std::string(error), owner_.parts_.owner, [](core::Result<core::Ok, std::string> r) {
                              if (!r) core::log_debug("inbound_state_save_failed", {{"error", r.error()}});
                            });
  }

 private:
  void next_recipient(std::shared_ptr<inbound::Signal> sig, std::shared_ptr<std::vector<inbound::SignalRecipient>> rs,
                      size_t i, uint32_t uid, bool all_ok, std::function<void(bool)> done) {
    if (i == rs->size()) return done(all_ok);
    const inbound::SignalRecipient& about = (*rs)[i];
    std::string recipient;
    if (auto a = core::parse_address(about.address)) recipient = a->str();
    else recipient = about.address;
    const int64_t window_s = owner_.cfg_.correlation_window_ms / 1000;
    store::find_sent_message(
        *owner_.parts_.pg, *owner_.parts_.addresses, mailbox_.account, mailbox_.id, sig->referenced_ids, recipient,
        window_s,
        [this, alive = alive_.token(), sig, rs, i, uid, all_ok, done = std::move(done)](
            core::Result<std::optional<store::SentMessage>, std::string> r) mutable {
          if (!alive) return;
          if (!r) {
            core::log_warn("inbound_correlation_failed", {{"mailbox", mailbox_.id}, {"error", r.error()}});
            return done(false);  // PostgreSQL is away: read this message again later
          }
          const std::string event(inbound::to_string(sig->kind));
          if (!*r) {
            signals_total().with({event, "no"}).inc();
            core::log_info("inbound_signal_unmatched",
                           {{"mailbox", mailbox_.id}, {"event", event}, {"uid", std::to_string(uid)}, {"rule", std::string(sig->rule)}});
            return next_recipient(sig, rs, i + 1, uid, all_ok, std::move(done));
          }
          signals_total().with({event, "yes"}).inc();
          act(*sig, (*rs)[i], **r);
          SignalEventContext ctx{(*r)->job_id, mailbox_.account, mailbox_.id, (*r)->recipient, (*r)->by_message_id,
                                 owner_.parts_.now_ms()};
          owner_.parts_.publisher->publish(
              signal_event(ctx, *sig, &(*rs)[i]),
              [this, alive = alive_.token(), sig, rs, i, uid, all_ok, done = std::move(done)](bool ok) mutable {
                if (!alive) return;
                if (!ok) core::log_warn("inbound_publish_failed", {{"mailbox", mailbox_.id}});
                next_recipient(sig, rs, i + 1, uid, all_ok && ok, std::move(done));
              });
        });
  }

  // The effect of a matched signal on the policy.
  void act(const inbound::Signal& s, const inbound::SignalRecipient& about, const store::SentMessage& sent) {
    policy::Gate* gate = owner_.parts_.gate;
    if (!gate) return;
    const std::string& to = sent.recipient;
    switch (s.kind) {
      case inbound::SignalKind::Bounce: {
        core::Outcome o;
        o.status = core::Status::Bounced;
        o.reply.code = about.status.starts_with("4") ? 450 : 550;
        o.reply.enhanced = about.status;
        o.reply.text = about.diagnostic;
        if (!policy::is_hard_bounce(o)) return;
        gate->learn_late_bounce(mailbox_, to, [id = mailbox_.id, to](const policy::LearnResult& res) {
          core::log_info("inbound_hard_bounce", {{"mailbox", id},
                                                 {"suppressed_now", res.suppressed_now ? "yes" : "no"},
                                                 {"paused_now", res.paused_now ? "yes" : "no"}});
        });
        return;
      }
      case inbound::SignalKind::Complaint:
        gate->suppress(mailbox_.account, to, "complaint", "complaint");
        return;
      case inbound::SignalKind::Reply:
        if (owner_.cfg_.suppress_on_reply) gate->suppress(mailbox_.account, to, "replied", "reply");
        return;
      default:
        return;
    }
  }

  InboundWatchers& owner_;
  store::Mailbox mailbox_;
  inbound::WatchState state_ = inbound::WatchState::Connecting;
  std::unique_ptr<inbound::Watcher> watcher_;
  core::Lifetime alive_;
};

InboundWatchers::InboundWatchers(InboundParts parts, Config::Inbound cfg)
    : parts_(std::move(parts)), cfg_(std::move(cfg)), timer_(parts_.loop) {}

InboundWatchers::~InboundWatchers() {
  alive_.end();
  watches_.clear();
}

void InboundWatchers::start() {
  if (stopped_ || !cfg_.enabled) return;
  const uint64_t every = static_cast<uint64_t>(std::max<int64_t>(1000, cfg_.lease_ms / 3));
  timer_->start_repeating(every, [this] { scan(); });
  scan();
}

void InboundWatchers::mailbox_changed(const store::MailboxRef& ref) {
  if (stopped_) return;
  auto it = watches_.find(ref);
  if (it == watches_.end()) return;
  const store::Mailbox* m = parts_.mailboxes->find(ref.account, ref.id);
  // Same settings (a pause, a counter): the watcher goes on. Other settings: a new watcher with them.
  if (m && watchable(*m) && m->imap == it->second->mailbox().imap && m->email == it->second->mailbox().email &&
      m->oauth_provider == it->second->mailbox().oauth_provider)
    return;
  drop(ref, m == nullptr || !watchable(*m));
  if (m && watchable(*m)) hold(ref, *m);
}

void InboundWatchers::reconfigure(Config::Inbound cfg, std::shared_ptr<core::TlsContext> tls) {
  const bool restart = cfg.move_to != cfg_.move_to || cfg.poll_interval_ms != cfg_.poll_interval_ms ||
                       cfg.max_fetch_bytes != cfg_.max_fetch_bytes || cfg.enabled != cfg_.enabled;
  // New trust applies to the next connection each watcher makes: a reload builds a new context
  // every time, and restarting every watcher for it would read nothing new.
  cfg_ = std::move(cfg);
  parts_.tls = std::move(tls);
  if (stopped_) return;
  if (restart || !cfg_.enabled) {
    std::vector<store::MailboxRef> held;
    for (auto& [ref, w] : watches_) held.push_back(ref);
    for (auto& ref : held) drop(ref, !cfg_.enabled);
  }
  timer_->stop();
  start();
}

void InboundWatchers::stop() {
  if (stopped_) return;
  stopped_ = true;
  timer_->stop();
  std::vector<store::MailboxRef> held;
  for (auto& [ref, w] : watches_) held.push_back(ref);
  for (auto& ref : held) drop(ref, true);
}

// Each pass: renew the leases held (a lease lost to another daemon drops its watcher), take free
// ones while below max_watchers, drop watches whose mailbox went or lost its IMAP settings.
void InboundWatchers::scan() {
  if (stopped_ || !parts_.redis || !parts_.redis->connected()) return;
  std::vector<store::MailboxRef> gone;
  for (auto& [ref, w] : watches_) {
    const store::Mailbox* m = parts_.mailboxes->find(ref.account, ref.id);
    if (!m || !watchable(*m)) gone.push_back(ref);
  }
  for (auto& ref : gone) drop(ref, true);
  for (const auto& ref : parts_.mailboxes->refs()) {
    const store::Mailbox* m = parts_.mailboxes->find(ref.account, ref.id);
    if (!m || !watchable(*m) || asking_.count(ref)) continue;
    const bool held = watches_.count(ref) > 0;
    if (!held && watches_.size() + asking_.size() >= static_cast<size_t>(cfg_.max_watchers)) continue;
    asking_[ref] = true;
    parts_.redis->eval(queue::kTakeLease, {"1", parts_.lease_prefix + ref.key(), parts_.owner, std::to_string(cfg_.lease_ms)},
                       [this, alive = alive_.token(), ref](const queue::RedisReply& r) {
                         if (!alive) return;
                         asking_.erase(ref);
                         if (stopped_) return;
                         if (r.is_error()) return errors_total().with({"lease"}).inc();
                         const bool ours = r.type == queue::RedisReply::Type::Integer && r.integer == 1;
                         const bool held = watches_.count(ref) > 0;
                         if (!ours) {
                           if (held) {
                             core::log_warn("inbound_lease_lost", {{"mailbox", ref.id}});
                             drop(ref, false);
                           }
                           return;
                         }
                         if (held) return;
                         const store::Mailbox* m = parts_.mailboxes->find(ref.account, ref.id);
                         if (!m || !watchable(*m)) return drop(ref, true);
                         hold(ref, *m);
                       });
  }
}

void InboundWatchers::hold(const store::MailboxRef& ref, const store::Mailbox& m) {
  auto w = std::make_unique<Watch>(*this, m);
  Watch* raw = w.get();
  watches_[ref] = std::move(w);
  core::log_info("inbound_watch_started", {{"mailbox", ref.id}, {"host", m.imap.host}});
  update_gauge();
  raw->start();
}

void InboundWatchers::drop(const store::MailboxRef& ref, bool release) {
  auto it = watches_.find(ref);
  if (it != watches_.end()) {
    it->second->stop();
    watches_.erase(it);
    core::log_info("inbound_watch_stopped", {{"mailbox", ref.id}});
  }
  if (release && parts_.redis)
    parts_.redis->eval(queue::kReleaseLease, {"1", parts_.lease_prefix + ref.key(), parts_.owner},
                       [](const queue::RedisReply&) {});
  update_gauge();
}

void InboundWatchers::update_gauge() {
  std::map<inbound::WatchState, int> n;
  for (auto& [ref, w] : watches_) n[w->state()]++;
  for (auto s : inbound::kAllWatchStates)
    watchers_gauge().with({std::string(inbound::to_string(s))}).set(static_cast<double>(n[s]));
}

}  // namespace deliverd::daemon
