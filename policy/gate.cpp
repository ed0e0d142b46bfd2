#include "policy/gate.h"

#include <algorithm>
#include <cmath>

#include "core/log.h"
#include "core/metrics.h"
#include "policy/mailbox_keys.h"
#include "policy/ramp.h"
#include "policy/scripts.h"
#include "policy/signals.h"
#include "queue/publisher.h"
#include "store/suppressions.h"

namespace deliverd::policy {
namespace {

constexpr int64_t kDayMs = 86'400'000;
constexpr size_t kMaxBufferedChanges = 100000;
// A pause or disable in Redis that a daemon's copy of the row still lacks after this long lost
// its PostgreSQL write; sooner, that write or its NOTIFY is merely on its way.
constexpr int64_t kCompleteAfterMs = 30'000;

core::Family<core::Counter>& decisions() {
  static auto& f = core::Registry::global().counter("deliverd_policy_decisions_total",
                                                    "Policy decisions before a send, by decision and reason.",
                                                    {"decision", "reason"});
  return f;
}
core::Family<core::Counter>& breaker_transitions() {
  static auto& f = core::Registry::global().counter("deliverd_policy_breaker_transitions_total",
                                                    "Mailbox circuit breaker transitions seen by this daemon.", {"to"});
  return f;
}
core::Family<core::Gauge>& breaker_state() {
  static auto& f = core::Registry::global().gauge(
      "deliverd_policy_breaker_state", "Last breaker state this daemon saw per mailbox: 0 closed, 1 half-open, 2 open.",
      {"account", "mailbox"});
  return f;
}
core::Family<core::Counter>& mailbox_actions() {
  static auto& f = core::Registry::global().counter(
      "deliverd_policy_mailbox_actions_total",
      "Mailboxes paused by the bounce guard or disabled after repeated AUTH failures.", {"action", "reason"});
  return f;
}
core::Family<core::Counter>& suppression_events() {
  static auto& f = core::Registry::global().counter(
      "deliverd_policy_suppression_events_total",
      "Suppression list changes applied in memory (insert, delete, truncate), reloads and hard-bounce adds.",
      {"event"});
  return f;
}
core::Family<core::Counter>& errors() {
  static auto& f = core::Registry::global().counter("deliverd_policy_errors_total",
                                                    "Policy errors (Redis, PostgreSQL, bad notifications).", {"what"});
  return f;
}

int breaker_gauge_value(Breaker state) {
  switch (state) {
    case Breaker::Open: return 2;
    case Breaker::HalfOpen: return 1;
    case Breaker::Closed: return 0;
  }
  return 0;
}

std::string ms_text(int64_t v) { return std::to_string(v); }

}  // namespace

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::Allow:
      return "allow";
    case Verdict::Suppressed:
      return "suppressed";
    case Verdict::Reject:
      return "reject";
    case Verdict::Defer:
      return "defer";
    case Verdict::Duplicate:
      return "duplicate";
    case Verdict::Erased:
      return "erased";
  }
  return "defer";
}

core::Outcome Decision::outcome() const {
  core::Outcome o;
  o.phase = core::Phase::Policy;
  o.reason = reason;
  switch (verdict) {
    case Verdict::Allow:
      o.status = core::Status::Delivered;  // not an outcome: the send goes ahead
      break;
    case Verdict::Duplicate:
      o.status = core::Status::Delivered;  // the delivery's own words say when (daemon/delivery.cpp)
      o.reason = core::Reason::Duplicate;
      break;
    case Verdict::Erased:
      o.status = core::Status::Rejected;
      o.reason = core::Reason::AccountErased;
      break;
    case Verdict::Suppressed:
      o.status = core::Status::Suppressed;
      o.detail = "suppressed";
      break;
    case Verdict::Reject: {
      o.status = core::Status::Rejected;
      std::string r(core::to_string(reason));
      std::replace(r.begin(), r.end(), '_', ' ');
      o.detail = "rejected: " + r;
      break;
    }
    case Verdict::Defer: {
      o.status = core::Status::Deferred;
      std::string r(core::to_string(reason));
      std::replace(r.begin(), r.end(), '_', ' ');
      if (reason == core::Reason::RampUp) r = "ramp-up";
      const std::string why = detail_text();
      o.detail = "deferred: " + r + (why.empty() ? "" : " (" + why + ")") + " until " + std::to_string(until_ms);
      break;
    }
  }
  return o;
}

Gate::Gate(uv_loop_t* loop, queue::RedisClient& redis, store::PgConnection& pg, PolicyConfig cfg,
           std::function<int64_t()> now_ms, store::AddressHasher addresses)
    : loop_(loop),
      redis_(redis),
      pg_(pg),
      cfg_(std::move(cfg)),
      now_ms_(std::move(now_ms)),
      addresses_(std::move(addresses)),
      reload_timer_(loop),
      soon_timer_(loop),
      zones_(ZoneTable::load(cfg_.zoneinfo_dir)),
      rng_(std::random_device{}()) {
  core::Registry::global().gauge_fn("deliverd_policy_suppressions", "Suppressions held in memory (all accounts).",
                                    [alive = alive_.token(), this] {
                                      return alive ? static_cast<double>(set_.size()) : 0.0;
                                    });
}

Gate::~Gate() { close(); }

void Gate::close() {
  if (closed_) return;
  closed_ = true;
  alive_.end();
  reload_timer_.reset();
  soon_timer_.reset();
  soon_.clear();
  pg_.set_notify_handler({});
  pg_.set_lost_handler({});
}

std::string Gate::key(const std::string& account, const std::string& mailbox_id, std::string_view what) const {
  return mailbox_key(cfg_.redis_prefix, account, mailbox_id, what);
}

int64_t Gate::rand_upto(int64_t max_inclusive) {
  if (max_inclusive <= 0) return 0;
  return std::uniform_int_distribution<int64_t>(0, max_inclusive)(rng_);
}

const TimeZone& Gate::zone(const std::string& name) {
  if (const TimeZone* z = zones_ ? zones_->find(name) : nullptr) return *z;
  // A mailbox with an unknown zone keeps sending on UTC days rather than not at all.
  static const TimeZone utc = TimeZone::utc();
  if (unknown_zones_.size() < 1000 && unknown_zones_.insert(name).second) {
    core::log_warn("policy_timezone_unknown",
                   {{"timezone", name}, {"dir", cfg_.zoneinfo_dir}, {"note", "its days are UTC days"}});
    errors().with({"timezone"}).inc();
  }
  return utc;
}

namespace {

struct ZoneReload {
  uv_work_t work{};
  std::string dir;
  std::shared_ptr<const ZoneTable> table;
  core::Lifetime::Token alive;
  std::function<void(std::shared_ptr<const ZoneTable>)> apply;
};

}  // namespace

void Gate::reload_zones(std::function<void()> done) {
  if (closed_) return;
  auto* job = new ZoneReload;
  job->work.data = job;
  job->dir = cfg_.zoneinfo_dir;
  job->alive = alive_.token();
  job->apply = [this, done = std::move(done)](std::shared_ptr<const ZoneTable> t) {
    core::log_info("policy_timezones_loaded", {{"zones", std::to_string(t->size())}, {"dir", t->dir()}});
    zones_ = std::move(t);
    unknown_zones_.clear();
    if (done) done();
  };
  uv_queue_work(
      loop_, &job->work,
      [](uv_work_t* w) {
        auto* j = static_cast<ZoneReload*>(w->data);
        j->table = ZoneTable::load(j->dir);
      },
      [](uv_work_t* w, int status) {
        std::unique_ptr<ZoneReload> j(static_cast<ZoneReload*>(w->data));
        if (status == 0 && j->alive) j->apply(std::move(j->table));
      });
}

bool Gate::is_suppressed(std::string_view account, std::string_view address) const {
  // Nothing listed (a fresh install): no hashing at all.
  if (set_.size() == 0) return false;
  return set_.contains_any(account, addresses_.candidates(address));
}

// ---- suppression list ----------------------------------------------------------------------

void Gate::start(std::function<void(core::Result<core::Ok, std::string>)> cb) {
  start_cb_ = std::move(cb);
  pg_.set_notify_handler(
      [this](const std::string& channel, const std::string& payload) { on_notify(channel, payload); });
  pg_.set_lost_handler([this](const std::string& error) {
    // Notifications sent while we were away are lost: reload all once the connection is back.
    core::log_warn("policy_suppressions_connection_lost", {{"error", error}});
    schedule_reload();
  });
  load_suppressions();
}

void Gate::load_suppressions() {
  if (closed_) return;
  if (loading_) {
    reload_again_ = true;
    return;
  }
  loading_ = true;
  reload_again_ = false;
  buffered_.clear();
  auto alive = alive_.token();
  // LISTEN before the first page: a change that commits while the pages are read is buffered
  // and replayed on top of them, so nothing falls between the two.
  pg_.query("LISTEN " + std::string(store::kSuppressionChannel), {}, [this, alive](const store::PgResult& r) {
    if (!alive) return;
    if (!r.ok) {
      loading_ = false;
      errors().with({"suppression_load"}).inc();
      core::log_warn("policy_suppressions_listen_failed", {{"error", r.error}});
      if (start_cb_) std::exchange(start_cb_, {})(core::Err("cannot LISTEN: " + r.error));
      return schedule_reload();
    }
    next_set_ = std::make_unique<SuppressionSet>();
    load_suppression_page(std::nullopt);
  });
}

// Rows per page: one page's decoding and insertion holds the loop for a few milliseconds (at
// 20,000, a third of the pages of a ten-million-row list held it over 10 ms; bench/fleet_load).
constexpr size_t kSuppressionPageRows = 5000;

void Gate::load_suppression_page(std::optional<std::pair<std::string, std::string>> after) {
  store::load_suppression_page(pg_, after, kSuppressionPageRows, [this, alive = alive_.token()](auto rows) {
    if (!alive) return;
    if (!rows) return suppression_load_failed(rows.error());
    for (const auto& [account, hash] : *rows) next_set_->append_sorted(account, hash);
    if (next_set_->size() > cfg_.max_suppressions)
      return suppression_load_failed("more than " + std::to_string(cfg_.max_suppressions) +
                                     " suppressions (raise the bound)");
    if (rows->size() < kSuppressionPageRows) return suppression_load_done();
    load_suppression_page(std::move(rows->back()));
  });
}

void Gate::suppression_load_failed(const std::string& error) {
  loading_ = false;
  next_set_.reset();
  errors().with({"suppression_load"}).inc();
  core::log_warn("policy_suppressions_load_failed", {{"error", error}});
  if (start_cb_) std::exchange(start_cb_, {})(core::Err(error));
  schedule_reload();
}

void Gate::suppression_load_done() {
  loading_ = false;
  set_ = std::move(*next_set_);
  next_set_.reset();
  bool truncated = false;
  for (const auto& c : buffered_) {
    if (c.op == SuppressionSet::Op::Truncate) truncated = true;
    set_.apply(c);
  }
  buffered_.clear();
  loaded_ = true;
  reload_failures_ = 0;
  suppression_events().with({"reload"}).inc();
  core::log_info("policy_suppressions_loaded", {{"count", std::to_string(set_.size())}});
  if (feed_.loaded) feed_.loaded(set_);
  if (start_cb_) std::exchange(start_cb_, {})(core::Ok{});
  if (truncated || reload_again_) load_suppressions();
}

void Gate::schedule_reload() {
  if (closed_) return;
  int shift = std::min(reload_failures_++, 5);
  uint64_t delay = static_cast<uint64_t>(cfg_.reload_backoff_ms) << shift;  // 1 s … 32 s
  reload_timer_->start(delay, [this] { load_suppressions(); });
}

void Gate::on_notify(const std::string& channel, const std::string& payload) {
  if (channel != store::kSuppressionChannel) return;
  SuppressionSet::Change c;
  if (!SuppressionSet::parse_notification(payload, c)) {
    errors().with({"notification"}).inc();
    core::log_warn("policy_bad_notification", {{"payload", payload.substr(0, 100)}});
    return;
  }
  static const char* kNames[] = {"insert", "delete", "truncate"};
  suppression_events().with({kNames[static_cast<int>(c.op)]}).inc();
  if (loading_) {
    if (buffered_.size() < kMaxBufferedChanges)
      buffered_.push_back(std::move(c));
    else
      reload_again_ = true;  // too many to replay: take a fresh snapshot afterwards
    return;
  }
  set_.apply(c);
  if (feed_.changed) feed_.changed(c);
  if (c.op == SuppressionSet::Op::Truncate) load_suppressions();
}

void Gate::follow_suppressions(SuppressionSet list) {
  if (closed_) return;
  set_ = std::move(list);
  loaded_ = true;
}

void Gate::follow_suppression_change(const SuppressionSet::Change& c) {
  if (!closed_) set_.apply(c);
}

// ---- admit ---------------------------------------------------------------------------------

void Gate::finish(DecisionCallback& cb, const Decision& d, const std::string& mailbox_id) {
  // A duplicate is no policy decision (it has a counter of its own: deliverd_duplicates_skipped_total).
  if (d.verdict == Verdict::Duplicate) return cb(d);
  decisions().with({std::string(to_string(d.verdict)), std::string(core::to_string(d.reason))}).inc();
  if (d.verdict != Verdict::Allow)
    core::log_debug("policy_decision", {{"mailbox", mailbox_id},
                                        {"decision", to_string(d.verdict)},
                                        {"reason", core::to_string(d.reason)},
                                        {"detail", d.detail_text()},
                                        {"until_ms", ms_text(d.until_ms)}});
  cb(d);
}

// Never calls back from inside admit(): the caller may not expect re-entry.
void Gate::answer_later(DecisionCallback cb, const Decision& d, const std::string& mailbox_id) {
  soon_.push_back([this, id = mailbox_id, cb = std::move(cb), d]() mutable { finish(cb, d, id); });
  if (soon_.size() == 1)
    soon_timer_->start(0, [this] {
      auto fns = std::move(soon_);
      soon_.clear();
      for (auto& fn : fns) {
        if (closed_) return;
        fn();
      }
    });
}

// What is decided without Redis: disabled, paused, the list not loaded, suppressed, outside the
// sending window.
std::optional<Decision> Gate::local_decision(const AdmitRequest& req, const MailboxPolicy& p, int64_t now) {
  const store::Mailbox& m = req.mailbox;
  Decision d;
  if (m.disabled) {
    d.verdict = Verdict::Reject;
    // A revoked grant is named: the user must connect the mailbox again, not wait for an operator.
    d.reason = m.disabled_reason == "oauth_revoked" ? core::Reason::OauthRevoked : core::Reason::MailboxDisabled;
    return d;
  }
  if (m.paused) {
    d.until_ms = now + cfg_.paused_retry_s * 1000LL + rand_upto(cfg_.defer_spread_ms);
    d.reason = core::Reason::MailboxPaused;
    return d;
  }
  if (!loaded_) {
    d.until_ms = now + cfg_.unavailable_retry_ms + rand_upto(cfg_.defer_spread_ms / 10);
    d.reason = core::Reason::PolicyUnavailable;
    d.detail = Detail::NotLoaded;
    return d;
  }
  if (set_.size() > 0) {  // a few HMACs per recipient, only when something is listed
    const std::vector<std::string> hashes = addresses_.candidates(req.to_email);
    if (set_.contains_any(req.account, hashes) || (req.account != m.account && set_.contains_any(m.account, hashes))) {
      d.verdict = Verdict::Suppressed;
      d.reason = core::Reason::Suppressed;
      return d;
    }
  }
  SendWindow w{p.window_days, p.window_start_hour, p.window_end_hour};
  int64_t open = next_window_open_ms(zone(p.timezone), w, now);
  if (open != now) {
    d.reason = core::Reason::OutsideWindow;
    d.detail = open < 0 ? Detail::WindowNeverOpens : Detail::None;
    d.until_ms = (open < 0 ? now + kDayMs : open) + rand_upto(cfg_.defer_spread_ms);
    return d;
  }
  return std::nullopt;
}

// The admit script's keys and arguments, in the order policy/scripts.cpp documents.
std::vector<std::string> Gate::admit_argv(const AdmitRequest& req, const MailboxPolicy& p, int64_t now,
                                          bool destination, const std::string& lease) {
  const store::Mailbox& m = req.mailbox;
  const TimeZone& tz = zone(p.timezone);
  const LocalDay today = local_day(tz, now);
  std::string day_ends = ms_text(today.end_ms);
  for (int k = 2; k <= cfg_.reservation_days; ++k) day_ends += "," + ms_text(local_day_start_ms(tz, today.day + k));
  const int64_t gap_ms = p.min_gap_s * 1000LL, jitter_max = p.jitter_s * 1000LL;
  std::string dst_prefix = cfg_.redis_prefix + "dst:" + (destination ? req.mx_domain : std::string("-"));
  return {"11",
          key(m.account, m.id, "state"),
          key(m.account, m.id, "day:" + std::to_string(today.day)),
          // Microsecond arrival times: not the millisecond keys of earlier releases, which a
          // rolling upgrade still writes.
          key(m.account, m.id, "gcra_us:h"),
          key(m.account, m.id, "gcra_us:m"),
          key(m.account, m.id, "next"),
          key(m.account, m.id, "resv"),
          key(m.account, m.id, "warmup"),
          dst_prefix + ":gcra_us",
          dst_prefix + ":conn",
          req.done_key.empty() ? key(m.account, m.id, "state") : req.done_key,
          req.erased_key.empty() ? key(m.account, m.id, "state") : req.erased_key,
          ms_text(now),
          std::to_string(today.day),
          day_ends,
          std::to_string(p.ramp_start),
          std::to_string(p.ramp_step),
          std::to_string(p.ramp_max),
          p.warmup_day ? std::to_string(*p.warmup_day) : std::string(),
          std::to_string(p.per_hour),
          std::to_string(p.per_minute),
          ms_text(gap_ms),
          ms_text(rand_upto(jitter_max)),
          ms_text(jitter_max),
          ms_text(cfg_.probe_timeout_s * 1000LL),
          ms_text(cfg_.paused_retry_s * 1000LL),
          ms_text(rand_upto(cfg_.defer_spread_ms)),
          std::to_string(destination ? cfg_.destination_per_minute : 0),
          std::to_string(destination ? cfg_.destination_max_connections : 0),
          ms_text(cfg_.destination_lease_s * 1000LL),
          lease.empty() ? std::string("-") : lease,
          ms_text(cfg_.destination_retry_ms),
          ms_text(3 * kDayMs),
          req.done_key.empty() ? "0" : "1",
          req.erased_key.empty() ? "0" : "1"};
}

// The script's answer {verdict, until, reason, detail}; a failed call defers as "policy_unavailable".
// Redis could not answer (an error or a reply of the wrong shape): defer, never "allowed" or
// "not delivered"; retried after unavailable_retry_ms, spread a little.
Decision Gate::redis_failed(const queue::RedisReply& r, int64_t now) {
  errors().with({"redis"}).inc();
  Decision d;
  d.until_ms = now + cfg_.unavailable_retry_ms + rand_upto(cfg_.defer_spread_ms / 10);
  d.reason = core::Reason::PolicyUnavailable;
  d.detail = Detail::RedisFailed;
  d.error = r.is_error() ? r.str : "unexpected reply";
  return d;
}

// The job's idempotency marker exists: delivered before, at the time the marker holds.
Decision Gate::duplicate(const std::string& marker) {
  Decision d;
  d.verdict = Verdict::Duplicate;
  d.reason = core::Reason::Duplicate;
  d.delivered_ms = queue::Publisher::marker_time(marker);
  return d;
}

Decision Gate::decode_admit(const queue::RedisReply& r, const std::string& mailbox_id, int64_t now) {
  Decision d;
  if (r.type != queue::RedisReply::Type::Array || r.elements.size() < 4 ||
      r.elements[0].type != queue::RedisReply::Type::Integer) {
    core::log_warn("policy_admit_failed",
                   {{"mailbox", mailbox_id}, {"error", r.is_error() ? r.str : "unexpected reply"}});
    return redis_failed(r, now);
  }
  const long long verdict = r.elements[0].integer;
  if (verdict == 4) {
    d.verdict = Verdict::Erased;
    d.reason = core::Reason::AccountErased;
    return d;
  }
  if (verdict == 3) return duplicate(r.elements[3].str);
  d.until_ms = r.elements[1].integer;
  // The script's names come back as text: read through the tables, like any text coming in.
  d.reason = core::reason_from_name(r.elements[2].str).value_or(core::Reason::PolicyUnavailable);
  d.detail = detail_from_name(r.elements[3].str).value_or(Detail::None);
  d.verdict = verdict == 1 ? Verdict::Allow : verdict == 2 ? Verdict::Reject : Verdict::Defer;
  if (d.verdict == Verdict::Allow) d.until_ms = 0;
  return d;
}

void Gate::admit(const AdmitRequest& req, DecisionCallback cb) {
  if (closed_) return;
  const int64_t now = now_ms_();
  const MailboxPolicy p = effective_policy(cfg_, req.mailbox);
  if (auto d = local_decision(req, p, now)) {
    if (!req.done_key.empty()) return check_marker_then(req.done_key, *d, req.mailbox.id, now, std::move(cb));
    return answer_later(std::move(cb), *d, req.mailbox.id);
  }
  admit_script(req, p, now, std::move(cb));
}

// The marker used to be read before the policy: a delivered job stopped by a pause, the list or
// the window is still answered as the duplicate it is. One GET, on this less travelled path only.
void Gate::check_marker_then(const std::string& done_key, const Decision& local, const std::string& mailbox_id,
                             int64_t now, DecisionCallback cb) {
  redis_.command({"GET", done_key}, [this, alive = alive_.token(), local, mailbox_id, now,
                                     cb = std::move(cb)](const queue::RedisReply& r) mutable {
    if (!alive) return;
    if (r.type == queue::RedisReply::Type::Nil) return finish(cb, local, mailbox_id);
    finish(cb, r.type == queue::RedisReply::Type::String ? duplicate(r.str) : redis_failed(r, now), mailbox_id);
  });
}

void Gate::admit_script(const AdmitRequest& req, const MailboxPolicy& p, int64_t now, DecisionCallback cb) {
  // Breaker, ramp-up slot and destination throttle: one script, so the fleet shares one limit.
  const bool dest = !req.mx_domain.empty() && (cfg_.destination_max_connections > 0 || cfg_.destination_per_minute > 0);
  std::string lease = dest && cfg_.destination_max_connections > 0
                          ? std::to_string(now) + "-" + std::to_string(++lease_seq_) + "-" + std::to_string(rng_())
                          : std::string();
  redis_.eval(scripts::kAdmit, admit_argv(req, p, now, dest, lease),
              [this, alive = alive_.token(), account = req.mailbox.account, id = req.mailbox.id, now, lease, domain = req.mx_domain,
               erased_read = !req.erased_key.empty(), cb = std::move(cb)](const queue::RedisReply& r) mutable {
                if (!alive) return;
                Decision d = decode_admit(r, id, now);
                d.erased_checked = erased_read && d.detail != Detail::RedisFailed && d.verdict != Verdict::Erased;
                // local_decision() let it through, so this daemon's row is neither paused nor
                // disabled: the Redis half of a change is ahead of PostgreSQL. Past the time its
                // own PostgreSQL write and NOTIFY take, that write was lost (a crash between the
                // two): write it again, so the API shows the pause and a resume can lift it.
                const bool stale = r.elements.size() > 5 && r.elements[5].type == queue::RedisReply::Type::Integer &&
                                   now - r.elements[5].integer >= kCompleteAfterMs;
                if (stale && d.reason == core::Reason::MailboxPaused)
                  complete_state(account, id, store::MailboxChange::Pause,
                                 store::paused_by_from_name(r.elements[4].str).value_or(store::PausedBy::Daemon));
                else if (stale && (d.reason == core::Reason::MailboxDisabled || d.reason == core::Reason::OauthRevoked))
                  complete_state(account, id, store::MailboxChange::Disable, store::PausedBy::Daemon,
                                 d.reason == core::Reason::OauthRevoked ? "oauth_revoked" : "");
                if (d.verdict == Verdict::Allow) {
                  if (!lease.empty()) {
                    d.lease = lease;
                    d.lease_domain = domain;
                  }
                  if (d.detail == Detail::Probe) {
                    breaker_transitions().with({"half_open"}).inc();
                    breaker_state().with({account, id}).set(1);
                  }
                }
                finish(cb, d, id);
              });
}

// ---- learn ---------------------------------------------------------------------------------

void Gate::release(const Decision& admitted) {
  if (closed_ || admitted.lease.empty()) return;
  redis_.eval(scripts::kRelease, {"1",
                  cfg_.redis_prefix + "dst:" + admitted.lease_domain + ":conn", admitted.lease},
                 [](const queue::RedisReply& r) {
                   if (r.is_error()) errors().with({"redis"}).inc();
                 });
}

bool Gate::suppress(const std::string& account, const std::string& to_email, const std::string& reason,
                    const std::string& source) {
  const std::string key = addresses_.key(to_email);
  if (key.empty()) return false;
  const bool fresh = !set_.contains_any(account, addresses_.candidates(to_email));
  set_.insert(account, key);
  suppression_events().with({reason}).inc();
  store::add_suppression(pg_, addresses_, {account, to_email, reason, source}, [](core::Result<bool, std::string> r) {
    if (!r) {
      errors().with({"suppression_add"}).inc();
      core::log_warn("policy_suppression_add_failed", {{"error", r.error()}});
    }
  });
  return fresh;
}

// The learn script's keys and arguments, in the order policy/scripts.cpp documents.
queue::ScriptCall Gate::learn_call(const store::Mailbox& m, const core::Outcome& o, Signal sig, bool hard) {
  std::string durations;
  for (int mins : cfg_.breaker_open_minutes) {
    if (!durations.empty()) durations += ",";
    durations += std::to_string(mins * 60000LL);
  }
  const int pause_at = std::max(1, static_cast<int>(std::ceil(cfg_.bounce_rate * cfg_.bounce_window - 1e-9)));
  queue::ScriptCall c;
  c.keys = {key(m.account, m.id, "state"), key(m.account, m.id, "sends")};
  c.args = {ms_text(now_ms_()),
            std::string(to_string(sig)),
            std::to_string(cfg_.breaker_failures),
            durations,
            ms_text(cfg_.quota_open_minutes * 60000LL),
            std::to_string(cfg_.auth_disable_after),
            counts_as_send(o) ? "1" : "0",
            hard ? "1" : "0",
            std::to_string(cfg_.bounce_window),
            std::to_string(pause_at),
            ms_text(30 * kDayMs)};
  return c;
}

// The script's answer, and what follows from it: metrics, logs, the pause or disable in
// PostgreSQL.
void Gate::apply_learned(const queue::RedisReply& r, const std::string& account, const std::string& id,
                         LearnResult& res) {
  if (r.type != queue::RedisReply::Type::Array || r.elements.size() < 9) {
    errors().with({"redis"}).inc();
    res.ok = false;
    res.error = r.is_error() ? r.str : "unexpected reply";
    core::log_warn("policy_learn_failed", {{"mailbox", id}, {"error", res.error}});
    return;
  }
  res.breaker_state = breaker_from_name(r.elements[0].str).value_or(Breaker::Closed);
  res.open_until_ms = r.elements[1].integer;
  res.trips = static_cast<int>(r.elements[2].integer);
  res.auth_failures = static_cast<int>(r.elements[3].integer);
  res.window_sends = static_cast<int>(r.elements[4].integer);
  res.window_bounces = static_cast<int>(r.elements[5].integer);
  const std::optional<Breaker> changed = breaker_from_name(r.elements[6].str);  // "" = no transition
  res.disabled_now = r.elements[7].integer == 1;
  res.paused_now = r.elements[8].integer == 1;
  breaker_state().with({account, id}).set(breaker_gauge_value(res.breaker_state));
  if (changed) {
    breaker_transitions().with({std::string(to_string(*changed))}).inc();
    core::log_info(*changed == Breaker::Open ? "breaker_opened" : "breaker_closed",
                   {{"mailbox", id}, {"trips", std::to_string(res.trips)}, {"open_until_ms", ms_text(res.open_until_ms)}});
  }
  if (res.paused_now) {
    mailbox_actions().with({"paused", "bounce_guard"}).inc();
    core::log_warn("mailbox_paused", {{"mailbox", id},
                                      {"reason", "bounce_guard"},
                                      {"hard_bounces", std::to_string(res.window_bounces)},
                                      {"window", std::to_string(cfg_.bounce_window)}});
    store_state(account, id, store::MailboxChange::Pause, store::PausedBy::Daemon,
                [id](core::Result<store::ChangeAnswer, std::string> u) {
                  if (!u) core::log_error("mailbox_pause_store_failed", {{"mailbox", id}, {"error", u.error()}});
                });
  }
  if (res.disabled_now) {
    mailbox_actions().with({"disabled", "auth_failures"}).inc();
    core::log_warn("mailbox_disabled",
                   {{"mailbox", id}, {"reason", "auth_failures"}, {"count", std::to_string(res.auth_failures)}});
    store_state(account, id, store::MailboxChange::Disable, store::PausedBy::Daemon,
                [id](core::Result<store::ChangeAnswer, std::string> u) {
                  if (!u) core::log_error("mailbox_disable_store_failed", {{"mailbox", id}, {"error", u.error()}});
                });
  }
}

void Gate::learn(const store::Mailbox& m, const std::string& to_email, const core::Outcome& o, const Decision* admitted,
                 std::function<void(const LearnResult&)> done) {
  if (closed_) return;
  run_learn(prepare_learn(m, to_email, o, admitted, std::move(done)));
}

LearnCall Gate::prepare_learn(const store::Mailbox& m, const std::string& to_email, const core::Outcome& o,
                              const Decision* admitted, std::function<void(const LearnResult&)> done) {
  LearnCall call;
  if (closed_) {
    call.answer = [](const queue::RedisReply&) {};
    return call;
  }
  if (admitted) release(*admitted);
  const Signal sig = breaker_signal(o);
  const bool hard = is_hard_bounce(o);
  LearnResult base;
  if (hard) base.suppressed_now = suppress(m.account, to_email, "hard_bounce", "bounce");
  call.script = learn_call(m, o, sig, hard);
  call.answer = [this, alive = alive_.token(), account = m.account, id = m.id, base,
                 done = std::move(done)](const queue::RedisReply& r) {
    if (!alive) return;
    LearnResult res = base;
    apply_learned(r, account, id, res);
    if (done) done(res);
  };
  return call;
}

void Gate::run_learn(LearnCall call) {
  if (closed_ || call.script.keys.empty()) return;
  redis_.eval(scripts::kLearn, call.script.eval_args(),
              [answer = std::move(call.answer)](const queue::RedisReply& r) { answer(r); });
}

void Gate::learn_late_bounce(const store::Mailbox& m, const std::string& to_email,
                             std::function<void(const LearnResult&)> done) {
  if (closed_) return;
  LearnResult base;
  base.suppressed_now = suppress(m.account, to_email, "hard_bounce", "bounce_async");
  const int pause_at = std::max(1, static_cast<int>(std::ceil(cfg_.bounce_rate * cfg_.bounce_window - 1e-9)));
  redis_.eval(scripts::kLearnLateBounce,
              {"2", key(m.account, m.id, "state"), key(m.account, m.id, "sends"), ms_text(now_ms_()),
               std::to_string(cfg_.bounce_window), std::to_string(pause_at), ms_text(30 * kDayMs)},
              [this, alive = alive_.token(), account = m.account, id = m.id, base,
               done = std::move(done)](const queue::RedisReply& r) mutable {
                if (!alive) return;
                LearnResult res = base;
                apply_learned(r, account, id, res);
                if (done) done(res);
              });
}

namespace {

// The change as the Redis script and the logs name it.
constexpr core::Named<store::MailboxChange> kChangeNames[] = {{store::MailboxChange::Pause, "pause"},
                                                              {store::MailboxChange::Resume, "resume"},
                                                              {store::MailboxChange::Disable, "disable"},
                                                              {store::MailboxChange::ResetBreaker, "reset_breaker"}};
static_assert(core::in_order(kChangeNames));
constexpr std::string_view change_name(store::MailboxChange c) { return core::name_in(kChangeNames, c); }

}  // namespace

void Gate::set_state(const std::string& account, const std::string& mailbox_id, store::MailboxChange change,
                     store::PausedBy by, ChangeCallback cb, std::string reason) {
  if (closed_) return;
  std::string disable_reason = change == store::MailboxChange::Disable ? reason : "";
  redis_.eval(
      scripts::kSetState,
      {"2", key(account, mailbox_id, "state"), key(account, mailbox_id, "sends"), std::string(change_name(change)),
       std::string(store::to_string(by)), ms_text(now_ms_()), disable_reason},
      [this, alive = alive_.token(), account, mailbox_id, change, by, cb = std::move(cb),
       reason = std::move(reason)](const queue::RedisReply& r) mutable {
        if (!alive) return;
        if (r.type != queue::RedisReply::Type::Array || r.elements.empty() ||
            r.elements[0].type != queue::RedisReply::Type::Integer) {
          errors().with({"redis"}).inc();
          return cb(core::Err("cannot change the mailbox in Redis: " + (r.is_error() ? r.str : "unexpected reply")));
        }
        if (r.elements[0].integer != 1) {
          core::log_info("mailbox_change_refused",
                         {{"mailbox", mailbox_id},
                          {"change", change_name(change)},
                          {"by", store::to_string(by)},
                          {"held", r.elements.size() > 1 ? r.elements[1].str : std::string()}});
          return cb(store::ChangeAnswer::Refused);
        }
        store_state(account, mailbox_id, change, by, std::move(cb), reason);
      });
}

void Gate::lift_revoked(const std::string& account, const std::string& mailbox_id) {
  if (closed_) return;
  redis_.eval(scripts::kLiftRevoked, {"1", key(account, mailbox_id, "state")},
              [mailbox_id](const queue::RedisReply& r) {
                if (r.type == queue::RedisReply::Type::Integer && r.integer == 1)
                  core::log_info("mailbox_reconnected", {{"mailbox", mailbox_id}, {"lifted", "oauth_revoked"}});
                else if (r.is_error())
                  core::log_warn("mailbox_reconnect_failed", {{"mailbox", mailbox_id}, {"error", r.str}});
              });
}

void Gate::store_state(const std::string& account, const std::string& mailbox_id, store::MailboxChange change,
                       store::PausedBy by, ChangeCallback cb, const std::string& reason) {
  using C = store::MailboxChange;
  store::store_mailbox_change(
      pg_, account, mailbox_id, change, by,
      [alive = alive_.token(), account, mailbox_id, change, by,
       cb = std::move(cb)](core::Result<store::ChangeAnswer, std::string> r) {
        if (!alive) return;
        const bool lifts = change == C::Resume || change == C::ResetBreaker;
        if (r && *r == store::ChangeAnswer::Done) {
          if (change == C::ResetBreaker) breaker_state().with({account, mailbox_id}).set(0);
          core::log_info(lifts                ? "mailbox_resumed"
                         : change == C::Pause ? "mailbox_pause_stored"
                                              : "mailbox_disable_stored",
                         {{"mailbox", mailbox_id}, {"change", change_name(change)}, {"by", store::to_string(by)}});
        }
        cb(std::move(r));
      },
      reason);
}

void Gate::complete_state(const std::string& account, const std::string& mailbox_id, store::MailboxChange change,
                          store::PausedBy by, const std::string& reason) {
  store::MailboxRef ref{account, mailbox_id};
  if (!completing_.insert(ref).second) return;
  core::log_debug("mailbox_state_completed", {{"mailbox", mailbox_id}, {"change", change_name(change)}});
  store_state(account, mailbox_id, change, by, [this, ref](core::Result<store::ChangeAnswer, std::string> r) {
    completing_.erase(ref);
    if (!r) {
      errors().with({"mailbox_state"}).inc();
      core::log_warn("mailbox_state_store_failed", {{"mailbox", ref.id}, {"error", r.error()}});
    }
  }, reason);
}

}  // namespace deliverd::policy

namespace deliverd::policy {

void Gate::mailbox_status(const store::Mailbox& m, std::function<void(const MailboxStatus&)> cb) {
  const int64_t now = now_ms_();
  const MailboxPolicy p = effective_policy(cfg_, m);
  const LocalDay today = local_day(zone(p.timezone), now);
  // One read-only script: the day counter, warm-up day 0 (when not configured) and the breaker.
  static const queue::LuaScript kStatus{R"lua(
local st = redis.call('HMGET', KEYS[3], 'state', 'open_until')
return {redis.call('GET', KEYS[1]) or '0', redis.call('GET', KEYS[2]) or '', st[1] or 'closed'}
)lua"};
  redis_.eval(kStatus, {"3", key(m.account, m.id, "day:" + std::to_string(today.day)), key(m.account, m.id, "warmup"),
                  key(m.account, m.id, "state")},
                 [p, today, cb = std::move(cb)](const queue::RedisReply& r) {
                   MailboxStatus s;
                   if (r.type == queue::RedisReply::Type::Array && r.elements.size() == 3) {
                     s.sent_today = std::atoll(r.elements[0].str.c_str());
                     int64_t day0 = p.warmup_day ? *p.warmup_day
                                    : r.elements[1].str.empty() ? today.day
                                                                : std::atoll(r.elements[1].str.c_str());
                     s.limit_today = day_limit(p.ramp_start, p.ramp_step, p.ramp_max, std::max<int64_t>(0, today.day - day0));
                     s.breaker = r.elements[2].str;
                   }
                   cb(s);
                 });
}

void Gate::reconfigure(PolicyConfig cfg) {
  cfg.redis_prefix = cfg_.redis_prefix;
  cfg.max_suppressions = cfg_.max_suppressions;
  cfg_ = std::move(cfg);
}

}  // namespace deliverd::policy
