#pragma once
// The sending-policy gate: one per daemon. Before a send, admit() answers Allow, Suppressed,
// Reject or Defer(until); after an attempt, learn() feeds the breaker, the bounce guard and the
// suppression list. Limits and breaker state live in Redis (atomic Lua, the time an argument),
// so every daemon of the fleet enforces one limit; the suppression list is held in memory and
// kept current through PostgreSQL LISTEN/NOTIFY.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/lifetime.h"
#include "core/names.h"
#include "core/outcome.h"
#include "core/result.h"
#include "core/timer.h"
#include "policy/policy_config.h"
#include "policy/signals.h"
#include "policy/suppression_set.h"
#include "policy/time_zone.h"
#include "queue/redis_client.h"
#include "store/address_hash.h"
#include "store/mailboxes.h"
#include "store/pg_connection.h"

namespace deliverd::policy {

// Duplicate: the job's idempotency marker says it was delivered already (AdmitRequest::done_key).
// Erased: the account's erasure marker is set (AdmitRequest::erased_key).
enum class Verdict { Allow, Suppressed, Reject, Defer, Duplicate, Erased };
std::string_view to_string(Verdict v);

// The finer cause of a decision, as the admit script names it (policy/scripts.cpp).
enum class Detail : uint8_t {
  None,
  DailyLimit,
  MinGap,
  PerHour,
  PerMinute,
  Probe,          // allowed as the half-open breaker's one probe
  ProbeInFlight,  // half-open and the probe has not ended yet
  Open,           // the breaker is open
  Connections,    // the destination's connection limit
  NotLoaded,      // the suppression list is not in memory yet
  WindowNeverOpens,
  RedisFailed,  // the script call failed: Decision::error says how
};

inline constexpr core::Named<Detail> kDetailNames[] = {
    {Detail::None, ""},
    {Detail::DailyLimit, "daily_limit"},
    {Detail::MinGap, "min_gap"},
    {Detail::PerHour, "per_hour"},
    {Detail::PerMinute, "per_minute"},
    {Detail::Probe, "probe"},
    {Detail::ProbeInFlight, "probe_in_flight"},
    {Detail::Open, "open"},
    {Detail::Connections, "connections"},
    {Detail::NotLoaded, "suppression list not loaded"},
    {Detail::WindowNeverOpens, "the window never opens"},
    {Detail::RedisFailed, "redis_failed"},
};
static_assert(core::in_order(kDetailNames));

constexpr std::string_view to_string(Detail d) { return core::name_in(kDetailNames, d); }
constexpr std::optional<Detail> detail_from_name(std::string_view n) { return core::value_in(kDetailNames, n); }

// A mailbox's circuit breaker, as the scripts keep it in Redis.
enum class Breaker : uint8_t { Closed, HalfOpen, Open };
inline constexpr core::Named<Breaker> kBreakerNames[] = {
    {Breaker::Closed, "closed"}, {Breaker::HalfOpen, "half_open"}, {Breaker::Open, "open"}};
static_assert(core::in_order(kBreakerNames));
constexpr std::string_view to_string(Breaker b) { return core::name_in(kBreakerNames, b); }
constexpr std::optional<Breaker> breaker_from_name(std::string_view n) { return core::value_in(kBreakerNames, n); }

struct Decision {
  Verdict verdict = Verdict::Defer;
  int64_t until_ms = 0;  // Defer: when to try again (the retry set's due time)
  // Allow: Ok; Suppressed: Suppressed; Reject: MailboxDisabled; Defer: RampUp, BreakerOpen,
  // DestinationThrottle, OutsideWindow, MailboxPaused, PolicyUnavailable.
  core::Reason reason = core::Reason::None;
  Detail detail = Detail::None;
  std::string error;  // Detail::RedisFailed: the error Redis gave
  // Duplicate: when the job was delivered (epoch ms; 0 when the marker holds no time).
  int64_t delivered_ms = 0;
  // MX mode with a connection limit: the slot to give back (learn() or release() does).
  std::string lease, lease_domain;
  // The admit script read AdmitRequest::erased_key and it was not set (a decision taken without
  // the script did not read it).
  bool erased_checked = false;

  bool allowed() const { return verdict == Verdict::Allow; }
  // The text of the detail for logs and outcomes ("" when none).
  std::string detail_text() const { return detail == Detail::RedisFailed ? error : std::string(to_string(detail)); }
  // The outcome a stopped job ends with (phase "policy"): suppressed / rejected / deferred.
  core::Outcome outcome() const;
};

struct AdmitRequest {
  std::string account;
  const store::Mailbox& mailbox;  // with its policy overrides; read during admit() only
  std::string to_email;
  std::string mx_domain;  // MX mode: the recipient's domain for the destination throttle; "" otherwise
  // The job's idempotency marker (queue::Publisher::done_key), checked before anything else: a
  // marked job is answered Duplicate whatever the policy would say, and takes no slot. When Redis
  // cannot be asked the answer is Defer / PolicyUnavailable / RedisFailed — never "not done".
  // "" = no marker to check.
  std::string done_key;
  // The account's erasure marker (queue::AccountEraser::marker_key), read by the admit script
  // first of all: set, the answer is Erased and nothing is read or written. Folded into the
  // script so that the common path has no EXISTS of its own. "" = not read.
  std::string erased_key = {};
};

// A learn() prepared for one outcome: what the learn script (policy/scripts.cpp kLearn) gets,
// and what to do with its answer (metrics, logs, the pause or disable in PostgreSQL). The
// in-memory suppression of a hard bounce and the lease release are done when it is prepared, so
// the call may run alone (Gate::learn) or inside a script that also publishes the outcome
// (daemon/: one EVALSHA for learn and publish); answer runs at most once per prepared call.
struct LearnCall {
  queue::ScriptCall script;
  std::function<void(const queue::RedisReply&)> answer;
};

struct LearnResult {
  bool ok = true;
  std::string error;
  Breaker breaker_state = Breaker::Closed;
  int64_t open_until_ms = 0;
  int trips = 0, auth_failures = 0;
  int window_sends = 0, window_bounces = 0;
  bool paused_now = false, disabled_now = false, suppressed_now = false;
};

class Gate {
 public:
  using DecisionCallback = std::function<void(const Decision&)>;

  // pg should be a connection of the gate's own: it sets that connection's notify and lost
  // handlers and LISTENs on it. redis and pg must outlive the gate (or close() it first).
  // addresses hashes recipients as the suppression rows are keyed (the daemon's secret key).
  Gate(uv_loop_t* loop, queue::RedisClient& redis, store::PgConnection& pg, PolicyConfig cfg,
       std::function<int64_t()> now_ms, store::AddressHasher addresses);
  ~Gate();
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  // LISTENs for suppression changes and loads the list into memory; cb runs once, after the
  // first load (or its error; loading is then retried in the background). Until a load has
  // succeeded, admit() defers with "policy_unavailable": an unchecked send could mail an
  // address that opted out.
  void start(std::function<void(core::Result<core::Ok, std::string>)> cb);

  // One daemon's event loops hold the suppression list once: the primary loop's gate LISTENs
  // and loads, and feeds the other loops' gates (daemon/app.cpp), which follow instead of
  // start(). loaded runs after each complete load (list.share() gives a follower its set);
  // changed runs for each change notified after it. Both run on this gate's loop.
  struct SuppressionFeed {
    std::function<void(SuppressionSet& list)> loaded;
    std::function<void(const SuppressionSet::Change&)> changed;
  };
  void feed_suppressions(SuppressionFeed feed) { feed_ = std::move(feed); }
  // A follower's side: a complete list replaces the one held (until the first, admit() defers
  // as before a load), and then each change. An address this gate suppresses itself is in its
  // list at once and comes back from the primary through its row's NOTIFY; a complete list that
  // arrives between the two (a reload: start, TRUNCATE, a lost connection) drops it until that
  // NOTIFY, a moment judged too rare for a protocol of its own.
  void follow_suppressions(SuppressionSet list);
  void follow_suppression_change(const SuppressionSet::Change& c);

  // Suppression (memory), disabled/paused, sending window, then one Lua call: breaker, ramp-up
  // slot (taken when granted), destination throttle. cb runs later, on the loop, exactly once
  // (unless close() came first).
  void admit(const AdmitRequest& req, DecisionCallback cb);

  // After an attempt. admitted (optional) releases its destination lease. done (optional) gets
  // what changed, once the Redis and PostgreSQL updates were issued.
  void learn(const store::Mailbox& mailbox, const std::string& to_email, const core::Outcome& outcome,
             const Decision* admitted = nullptr, std::function<void(const LearnResult&)> done = {});
  // learn() in two steps: prepare (suppression, lease release), then the script, run by
  // run_learn() or composed into another script whose answer is given to call.answer. After
  // close() the prepared answer does nothing.
  LearnCall prepare_learn(const store::Mailbox& mailbox, const std::string& to_email, const core::Outcome& outcome,
                          const Decision* admitted = nullptr, std::function<void(const LearnResult&)> done = {});
  void run_learn(LearnCall call);
  // A hard bounce that came back by mail after the server's 250 (inbound/): the address is
  // suppressed (source "bounce_async") and the bounce counts in the bounce guard as the send's
  // own would have: the send recorded as "not a bounce" becomes one, and three in the window
  // pause the mailbox as they would at send time. The breaker is not touched: it judges the
  // mailbox's server, which did its part.
  void learn_late_bounce(const store::Mailbox& mailbox, const std::string& to_email,
                         std::function<void(const LearnResult&)> done = {});
  // Puts an address on the account's suppression list: in this daemon's memory at once (its next
  // admit refuses it), then the row, whose NOTIFY reaches the fleet. Whether it is newly
  // suppressed here.
  bool suppress(const std::string& account, const std::string& to_email, const std::string& reason,
                const std::string& source);
  // Gives back a destination connection slot without an outcome (the job was dropped).
  void release(const Decision& admitted);

  // The one way a mailbox's sending state changes, whoever changes it: the admin API (pause,
  // resume, breaker reset), the bounce guard and the AUTH-failure disable (both from learn()).
  // Redis is written first, then PostgreSQL: every admit refuses when either says paused or
  // disabled, so a crash between the two leaves a pause in force (an admit that meets a pause
  // PostgreSQL lacks writes it there, so it shows in the API) and a resume undone (still paused
  // in PostgreSQL, where the API shows it; resuming again finishes it) — never a mailbox blocked
  // where no one can see it. Every daemon reads the shared Redis state at its next admit and the
  // row through NOTIFY, so a resumed mailbox sends again at once on each. cb gets Done, NoMailbox,
  // or Refused (a tenant lifting a pause that is not its own, or a disabled mailbox), or an error.
  using ChangeCallback = std::function<void(core::Result<store::ChangeAnswer, std::string>)>;
  // The mailbox got a new OAuth grant (its row is no longer disabled): the Redis half of a
  // disable for a revoked grant goes too. Any other disable or pause stays.
  void lift_revoked(const std::string& account, const std::string& mailbox_id);

  // `reason` names why a Disable happens (store_mailbox_change: "auth_failures" when empty).
  void set_state(const std::string& account, const std::string& mailbox_id, store::MailboxChange change,
                 store::PausedBy by, ChangeCallback cb, std::string reason = {});

  // What the admin API shows for a mailbox: sends today (its local day), today's ramp-up limit,
  // breaker state (closed | open | half_open). -1 / "" when Redis could not be asked.
  struct MailboxStatus {
    int64_t sent_today = -1, limit_today = -1;
    std::string breaker;
  };
  void mailbox_status(const store::Mailbox& mailbox, std::function<void(const MailboxStatus&)> cb);

  // Reload: new limits apply from the next admit (counters in Redis are kept). The Redis key
  // prefix and the suppression bound stay as they were at start.
  void reconfigure(PolicyConfig cfg);

  bool is_suppressed(std::string_view account, std::string_view address) const;
  bool ready() const { return loaded_; }
  size_t suppression_count() const { return set_.size(); }

  // The zones of [policy] zoneinfo_dir are read when the gate is made (start-up); this reads
  // them again off the loop (a worker thread) and swaps the new table in when it is done, so a
  // mailbox's first send in a zone never waits for the disk. done (optional) runs after the swap.
  void reload_zones(std::function<void()> done = {});
  size_t zone_count() const { return zones_ ? zones_->size() : 0; }

  // Idempotent; no callback runs after it.
  void close();

 private:
  void load_suppressions();
  void load_suppression_page(std::optional<std::pair<std::string, std::string>> after);
  void suppression_load_failed(const std::string& error);
  void suppression_load_done();
  void schedule_reload();
  void on_notify(const std::string& channel, const std::string& payload);
  void finish(DecisionCallback& cb, const Decision& d, const std::string& mailbox_id);
  void answer_later(DecisionCallback cb, const Decision& d, const std::string& mailbox_id);
  std::optional<Decision> local_decision(const AdmitRequest& req, const MailboxPolicy& p, int64_t now);
  std::vector<std::string> admit_argv(const AdmitRequest& req, const MailboxPolicy& p, int64_t now, bool destination,
                                      const std::string& lease);
  Decision decode_admit(const queue::RedisReply& r, const std::string& mailbox_id, int64_t now);
  Decision redis_failed(const queue::RedisReply& r, int64_t now);
  static Decision duplicate(const std::string& marker);
  queue::ScriptCall learn_call(const store::Mailbox& m, const core::Outcome& o, Signal sig, bool hard);
  void admit_script(const AdmitRequest& req, const MailboxPolicy& p, int64_t now, DecisionCallback cb);
  // A decision taken without the policy script (local_decision) for a job whose marker must still
  // be read: the marker's answer comes first.
  void check_marker_then(const std::string& done_key, const Decision& local, const std::string& mailbox_id,
                         int64_t now, DecisionCallback cb);
  void apply_learned(const queue::RedisReply& r, const std::string& account, const std::string& id,
                     LearnResult& res);
  // The PostgreSQL half of set_state (the learn script does the Redis half of the daemon's own).
  void store_state(const std::string& account, const std::string& mailbox_id, store::MailboxChange change,
                   store::PausedBy by, ChangeCallback cb, const std::string& reason = {});
  // An admit met a pause or disable in Redis that this daemon's copy of the row lacks: the
  // PostgreSQL half is in flight or was lost in a crash; writing it again is harmless.
  void complete_state(const std::string& account, const std::string& mailbox_id, store::MailboxChange change,
                      store::PausedBy by, const std::string& reason = {});
  const TimeZone& zone(const std::string& name);
  int64_t rand_upto(int64_t max_inclusive);
  std::string key(const std::string& account, const std::string& mailbox_id, std::string_view what) const;

  uv_loop_t* loop_;  // zone reloads run on its worker threads
  queue::RedisClient& redis_;
  store::PgConnection& pg_;
  PolicyConfig cfg_;
  std::function<int64_t()> now_ms_;
  store::AddressHasher addresses_;
  core::Lifetime alive_;  // Redis and PostgreSQL answers may arrive after close()
  bool closed_ = false;

  SuppressionSet set_;
  // The list being loaded page by page; it replaces set_ once complete, so checks keep using the
  // last complete list meanwhile.
  std::unique_ptr<SuppressionSet> next_set_;
  bool loaded_ = false, loading_ = false, reload_again_ = false;
  std::vector<SuppressionSet::Change> buffered_;  // notifications that arrived during a load
  SuppressionFeed feed_;
  std::function<void(core::Result<core::Ok, std::string>)> start_cb_;
  core::TimerHandle reload_timer_;
  core::TimerHandle soon_timer_;  // answers decided without Redis, on the next loop turn
  std::vector<std::function<void()>> soon_;
  int reload_failures_ = 0;

  std::shared_ptr<const ZoneTable> zones_;
  std::set<std::string> unknown_zones_;  // named by a mailbox but not in the table (logged once)
  std::mt19937_64 rng_;
  uint64_t lease_seq_ = 0;
  std::set<store::MailboxRef> completing_;  // complete_state() writes in flight
};

}  // namespace deliverd::policy
