#include "daemon/delivery.h"

#include <charconv>
#include <random>

#include "core/ascii.h"
#include "core/deflate.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/utf8.h"
#include "daemon/message_builder.h"
#include "daemon/result_event.h"
#include "smtp/composer.h"

namespace deliverd::daemon {
namespace {

struct Metrics {
  core::Family<core::Counter>& outcomes;
  core::Family<core::Counter>& dead_letters;
  core::Family<core::Counter>& tls_deliveries;
  core::Counter& duplicates;
  core::Counter& redis_write_retries;
  core::Histogram& duration;
  static Metrics& get() {
    auto& r = core::Registry::global();
    static Metrics m{
        r.counter("deliverd_outcomes_total", "Final and deferred outcomes of delivery attempts, by status and reason",
                  {"status", "reason"}),
        r.counter("deliverd_dead_letters_total", "Jobs that could not be parsed or validated", {}),
        r.counter("deliverd_tls_deliveries_total",
                  "Messages delivered, by the TLS policy that applied and how the message travelled",
                  {"policy", "tls"}),
        r.counter("deliverd_duplicates_skipped_total",
                  "Jobs not sent because their idempotency marker showed them delivered already")
            .get(),
        r.counter("deliverd_redis_write_retries_total",
                  "Outcome, retry-set and ack writes retried because Redis could not take them")
            .get(),
        r.histogram("deliverd_delivery_duration_seconds", "Time from taking a job to its outcome",
                    {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300})
            .get(),
    };
    return m;
  }
};

core::Outcome policy_outcome(core::Status status, core::Reason reason, std::string detail) {
  core::Outcome o;
  o.status = status;
  o.phase = core::Phase::Policy;
  o.reason = reason;
  o.detail = std::move(detail);
  return o;
}

bool parse_positive(const std::string* text, int64_t& out) {
  if (!text) return true;  // absent: keep the default
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), out);
  return ec == std::errc() && end == text->data() + text->size() && out > 0;
}

// The "tls" label of deliverd_tls_deliveries_total: a fixed set, so that versions below TLS 1.2
// (taken only opportunistically) show without a label per version string.
std::string_view tls_label(const core::Outcome& o) {
  if (o.tls_version.empty()) return o.tls_fallback == core::TlsFallback::None ? "plaintext" : "fallback";
  return o.tls_version == "TLSv1.2" || o.tls_version == "TLSv1.3" ? "tls" : "legacy_tls";
}

constexpr uint64_t kBackoffMinMs = 100;
// Of a job too large to take, this much goes to the dead letters (enough to tell which it was).
constexpr size_t kKeptJobBytes = 4096;
constexpr uint64_t kBackoffMaxMs = 5000;

}  // namespace

Delivery::Delivery(DeliveryServices& services, queue::StreamEntry entry, std::optional<queue::Job> job)
    : services_(services), entry_(std::move(entry)), started_(services.uptime_ms()), read_(job.has_value()) {
  if (job) job_ = std::move(*job);
  Metrics::get();
}

void Delivery::abort() {
  aborted_ = true;
  if (resolve_id_) {
    services_.cancel_resolve(resolve_id_);
    resolve_id_ = 0;
    return done(policy_outcome(core::Status::Deferred, core::Reason::Aborted, "the daemon stopped before the name was resolved"));
  }
  // Pooled sessions are not owned by one delivery: past the drain bound all of them end
  // (deferred, "aborted") and each delivery then publishes its outcome as usual.
  if (sending_) services_.abort_sends();
  if (pending_write_) {
    backoff_.reset();
    pending_write_ = nullptr;
    release();
  }
}

bool Delivery::read_retry_fields(std::string& error) {
  int64_t attempt = 1;
  first_seen_ms_ = queue::entry_id_ms(entry_.id);
  if (!parse_positive(entry_.field("attempt"), attempt) || attempt > 1000) {
    error = "stream field \"attempt\" is not a positive number";
    return false;
  }
  if (!parse_positive(entry_.field("first_seen"), first_seen_ms_)) {
    error = "stream field \"first_seen\" is not a positive number";
    return false;
  }
  attempt_ = static_cast<int>(attempt);
  if (const std::string* code = entry_.field("last_code")) {
    int64_t value = 0;
    if (!parse_positive(code, value) || value < 200 || value > 599) {
      error = "stream field \"last_code\" is not an SMTP reply code";
      return false;
    }
    last_reply_.code = static_cast<int>(value);
    if (const std::string* enhanced = entry_.field("last_enhanced")) last_reply_.enhanced = *enhanced;
    if (const std::string* text = entry_.field("last_text")) last_reply_.text = core::unescape_utf8_lossless(*text);
  }
  return true;
}

// A job can reach its end while it waits in the retry set; its final outcome still carries the
// reply that made it wait, so the producer learns why it never went out.
core::Outcome Delivery::ended_while_waiting(core::Reason reason, std::string detail) const {
  core::Outcome o = policy_outcome(core::Status::Expired, reason, std::move(detail));
  if (last_reply_.code) {
    o.reply = last_reply_;
    o.detail += "; last attempt: " + std::to_string(last_reply_.code) +
                (last_reply_.enhanced.empty() ? "" : " " + last_reply_.enhanced) + " " + last_reply_.text;
  }
  return o;
}

void Delivery::start() {
  payload_ = entry_.field("job");
  if (entry_.deliveries > kMaxDeliveries)
    return dead_letter("deliverd took this entry " + std::to_string(entry_.deliveries) +
                       " times without finishing it (the daemon crashed or failed while processing it)");
  if (entry_.bytes > services_.max_job_bytes())
    return dead_letter("job: the entry is " + std::to_string(entry_.bytes) + " bytes, larger than [redis] max_job_bytes (" +
                           std::to_string(services_.max_job_bytes()) + "); only its first " +
                           std::to_string(kKeptJobBytes) + " bytes are kept here",
                       kKeptJobBytes);
  if (!payload_) {
    // A promoted retry whose text the retry set kept compressed (queue/scheduler.h).
    const std::string* packed = entry_.field("job_z");
    if (!packed) return dead_letter("missing stream field \"job\"");
    auto text = core::inflate_raw(*packed, services_.max_job_bytes());
    if (!text) return dead_letter("stream field \"job_z\": " + text.error());
    inflated_ = std::move(text.value());
    payload_ = &inflated_;
  }
  if (!read_) {
    auto parsed = queue::parse_job(*payload_);
    if (!parsed) return dead_letter(parsed.error().to_string());
    job_ = std::move(parsed).value();
  }
  if (std::string error; !read_retry_fields(error)) return dead_letter(error);
  schedule_or_send();
}

void Delivery::check_erased(std::function<void()> next) {
  services_.is_erased(job_.account, [this, next = std::move(next)](core::Result<bool, std::string> r) {
    if (!r) {
      if (aborted_) return release();
      return after_backoff([this, next] { check_erased(next); });
    }
    if (*r) return erased();
    erased_checked_ = true;
    next();
  });
}

void Delivery::erased() {
  if (admitted_) {
    // Nothing is learnt from it: a bounce would list the address again, in the clear.
    services_.release(*admitted_);
    admitted_.reset();
  }
  job_.to_email.clear();
  last_reply_ = {};
  publish(policy_outcome(core::Status::Rejected, core::Reason::AccountErased,
                         "the account was erased; nothing of this job is kept"));
}

void Delivery::schedule_or_send() {
  const int64_t now = services_.now_ms();
  if (job_.expires_at_ms && job_.expires_at_ms <= now)
    return done(ended_while_waiting(core::Reason::Expired, "expires_at has passed"));
  if (job_.not_before_ms > now) {
    // Its first attempt is in the future: the job waits in the retry set, not in memory, and
    // its max age counts from then.
    first_seen_ms_ = std::max(first_seen_ms_, job_.not_before_ms);
    return postpone(job_.not_before_ms, nullptr);
  }
  if (now - first_seen_ms_ >= services_.retry_policy().max_age_ms)
    return done(ended_while_waiting(core::Reason::MaxAge, "the job is older than [retry] max_age"));

  find_mailbox(false);
}

// A job may name a mailbox created a moment ago (the platform adds it, then queues its first
// job): before refusing an unknown mailbox, the list is read once more.
void Delivery::find_mailbox(bool refreshed) {
  auto mbx = services_.find_mailbox(job_.account, job_.mailbox);
  if (!mbx && !refreshed) {
    return services_.refresh_mailbox(store::MailboxRef{job_.account, job_.mailbox}, [this] {
      if (aborted_) return release();
      find_mailbox(true);
    });
  }
  if (!mbx || mbx->account != job_.account)
    return done(policy_outcome(core::Status::Rejected, core::Reason::UnknownMailbox,
                               "mailbox " + job_.mailbox + " is not registered for account " + job_.account));
  mailbox_ = std::move(mbx);
  if (!dns::port_allowed(mailbox_->smtp_port))
    return done(policy_outcome(core::Status::Rejected, core::Reason::PortRefused,
                               "port " + std::to_string(mailbox_->smtp_port) + " is not a mail port"));
  admit();
}

// The policy gate (policy/gate.h): idempotency marker, suppression list (in memory, kept current
// by NOTIFY), paused or disabled mailbox, breaker, ramp-up slot, destination throttle. A job that
// may not go now waits in the retry set until its slot without using up an attempt; so does one
// whose marker could not be read (Redis away: policy_unavailable), which is never taken as "not
// delivered".
//
// The marker, keyed by (account, job id), is read by the admit script before anything else: an
// entry redelivered after a crash, or a producer's duplicate of a delivered job, is not sent
// again; it gets a result event of its own (delivered, reason "duplicate", with the time of the
// first delivery), so a producer waiting for one never waits forever. Another account's job with
// the same id is a job of its own.
void Delivery::admit() {
  std::string mx_domain;
  if (mailbox_->mode == store::Mode::Mx) mx_domain = job_.to_email.substr(job_.to_email.rfind('@') + 1);
  services_.admit({job_.account, *mailbox_, job_.to_email, mx_domain, services_.done_key(job_.account, job_.id),
                   services_.erased_key(job_.account)},
                  [this](const policy::Decision& d) {
    if (d.erased_checked) erased_checked_ = true;
    switch (d.verdict) {
      case policy::Verdict::Erased:
        return erased();
      case policy::Verdict::Duplicate:
        return duplicate(d.delivered_ms);
      case policy::Verdict::Allow:
        admitted_ = d;
        return compose_and_send();
      case policy::Verdict::Defer: {
        core::Outcome o = d.outcome();
        return postpone(d.until_ms, &o);
      }
      case policy::Verdict::Suppressed:
      case policy::Verdict::Reject:
        return done(d.outcome());
    }
  });
}

void Delivery::duplicate(int64_t delivered_ms) {
  Metrics::get().duplicates.inc();
  core::log_info("job_already_delivered", {{"job", job_.id}, {"account", job_.account}, {"entry", entry_.id}});
  first_delivered_ms_ = delivered_ms;
  core::Outcome o = policy_outcome(core::Status::Delivered, core::Reason::Duplicate,
                                   "already delivered" + (first_delivered_ms_ ? " at " + format_rfc3339_ms(first_delivered_ms_)
                                                                               : std::string()) +
                                       "; not sent again");
  publish(o);
}

void Delivery::compose_and_send() {
  auto message = services_.message_builder().build(job_, *mailbox_, static_cast<std::time_t>(services_.now_ms() / 1000));
  if (!message) {
    const BuildFailure& f = message.error();
    return done(policy_outcome(f.status, f.reason, f.detail));
  }
  message_ = std::move(message).value();
  message_id_ = smtp::message_id_of(message_);
  if (mailbox_->mode == store::Mode::Mx) return send_mx();
  resolve_id_ = services_.resolve_host(mailbox_->smtp_host, [this](const dns::ResolvedHost& r) {
    resolve_id_ = 0;
    resolved(r);
  });
}

void Delivery::resolved(const dns::ResolvedHost& r) {
  if (auto failure = dns::resolve_failure_outcome(r)) {
    // The mailbox's own submission server not resolving is a fault of the mailbox, not of the
    // recipient: it must not bounce (and later suppress) the recipient.
    if (failure->status == core::Status::Bounced) failure->status = core::Status::Failed;
    return done(*failure);
  }
  sockaddr_storage addr = dns::with_port(r.allowed.front(), mailbox_->smtp_port);

  smtp::Envelope env{mailbox_->email, job_.to_email, std::move(message_)};
  sending_ = true;
  attempted_ = true;
  services_.send_relay(*mailbox_, addr, std::move(env), [this](const core::Outcome& o) {
    sending_ = false;
    done(o);
  });
}

void Delivery::send_mx() {
  std::string domain = job_.to_email.substr(job_.to_email.rfind('@') + 1);
  smtp::Envelope env{mailbox_->email, job_.to_email, std::move(message_)};
  sending_ = true;
  attempted_ = true;
  services_.send_mx(domain, std::move(env), [this](const core::Outcome& o) {
    sending_ = false;
    done(o);
  });
}

void Delivery::dead_letter(const std::string& reason, size_t keep) {
  Metrics::get().dead_letters.get().inc();
  core::log_warn("job_dead_lettered", {{"entry", entry_.id}, {"reason", reason}});
  persist([this, reason, keep](auto cb) {
    services_.dead_letter_and_ack(entry_.id, payload_ ? payload_->substr(0, keep) : std::string(), reason,
                                  std::move(cb));
  });
}

// A job of an erased account ends without a trace of its recipient: its admission read the
// marker (the admit script, first of all), and a job that ends without one asks here. An attempt
// can outlast its account: erased while the session ran, it ends as if it had been erased before
// (what it did reaches no result, row or policy list).
void Delivery::done(const core::Outcome& o) {
  if (!attempted_ && erased_checked_) return finish(o);
  check_erased([this, o] { finish(o); });
}

void Delivery::finish(const core::Outcome& o) {
  if (admitted_) {
    // Breaker, bounce guard and hard-bounce suppression learn from real attempts only; a job
    // dropped before sending just gives its destination slot back.
    // The learn is prepared now and runs with the outcome's write: in the same script as its
    // publish (one EVALSHA), or alone before a deferral.
    if (attempted_) learn_ = services_.prepare_learn(*mailbox_, job_.to_email, o, *admitted_);
    else services_.release(*admitted_);
    admitted_.reset();
  }
  if (o.status == core::Status::Deferred) return retry_later(o);
  publish(o);
}

void Delivery::retry_later(const core::Outcome& o) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  const double unit = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  auto next = queue::next_retry(services_.retry_policy(), attempt_, services_.now_ms(), first_seen_ms_,
                                job_.expires_at_ms, unit);
  if (!next.give_up) {
    if (learn_) services_.learn(std::move(*learn_));
    learn_.reset();
    Metrics::get().outcomes.with({"deferred", std::string(core::to_string(o.reason))}).inc();
    const std::string ev = event(o, next.due_ms);
    log_outcome(o);
    queue::RetryItem item{*payload_, attempt_ + 1, first_seen_ms_, std::string(core::to_string(o.reason)),
                          o.reply.code ? o.reply : last_reply_, job_.account};
    return persist([this, item, due = next.due_ms, ev](auto cb) {
      services_.defer_and_ack(entry_.id, item, due, ev, std::move(cb));
    });
  }
  // No retry fits before the job's end: its last deferral becomes its final outcome. A paused
  // mailbox that never resumed is a policy refusal rather than an expiry (DESIGN.md "Outcomes").
  core::Outcome final = o;
  final.status = o.reason == core::Reason::MailboxPaused ? core::Status::Rejected : core::Status::Expired;
  final.detail = (next.why == queue::GiveUp::ExpiresAt ? "no retry possible before expires_at; last attempt: "
                                           : "no retry possible within [retry] max_age; last attempt: ") +
                 std::string(core::to_string(o.reason)) + (o.detail.empty() ? "" : " (" + o.detail + ")");
  if (final.status == core::Status::Expired)
    final.reason = next.why == queue::GiveUp::ExpiresAt ? core::Reason::Expired : core::Reason::MaxAge;
  publish(final);
}

void Delivery::postpone(int64_t due_ms, const core::Outcome* event_outcome) {
  if (!erased_checked_) {  // the retry set would keep the job, address and all
    std::optional<core::Outcome> ev;
    if (event_outcome) ev = *event_outcome;
    return check_erased([this, due_ms, ev] { postpone(due_ms, ev ? &*ev : nullptr); });
  }
  const bool past_expiry = job_.expires_at_ms && due_ms >= job_.expires_at_ms;
  if (past_expiry || due_ms - first_seen_ms_ >= services_.retry_policy().max_age_ms) {
    core::Outcome final = event_outcome ? *event_outcome : policy_outcome(core::Status::Expired, core::Reason::None, "");
    final.status = event_outcome && event_outcome->reason == core::Reason::MailboxPaused ? core::Status::Rejected
                                                                                         : core::Status::Expired;
    final.detail = std::string(past_expiry ? "the job would wait past its expires_at" : "the job would wait past [retry] max_age") +
                   (event_outcome ? " (" + std::string(core::to_string(event_outcome->reason)) + ")" : "");
    if (final.status == core::Status::Expired) final.reason = past_expiry ? core::Reason::Expired : core::Reason::MaxAge;
    return publish(final);
  }
  std::string ev;
  if (event_outcome) {
    Metrics::get().outcomes.with({"deferred", std::string(core::to_string(event_outcome->reason))}).inc();
    ev = event(*event_outcome, due_ms);
  }
  queue::RetryItem item{*payload_, attempt_, first_seen_ms_,
                        std::string(core::to_string(event_outcome ? event_outcome->reason : core::Reason::NotBefore)),
                        last_reply_, job_.account};
  persist([this, item, due_ms, ev](auto cb) { services_.defer_and_ack(entry_.id, item, due_ms, ev, std::move(cb)); });
}

void Delivery::publish(const core::Outcome& o, int64_t next_attempt_ms) {
  auto& m = Metrics::get();
  m.outcomes.with({std::string(core::to_string(o.status)), std::string(core::to_string(o.reason))}).inc();
  m.duration.observe(static_cast<double>(services_.uptime_ms() - started_) / 1000.0);
  log_outcome(o);
  std::string ev = event(o, next_attempt_ms);
  if (o.status == core::Status::Delivered && attempted_ && o.reason != core::Reason::Duplicate)
    m.tls_deliveries.with({std::string(core::to_string(o.tls_policy)), std::string(tls_label(o))}).inc();
  // An attempt's learn goes in the same script as its publish; a re-run of that script after a
  // lost reply learns nothing again (queue/publisher.h add_and_ack_script).
  std::optional<policy::LearnCall> learn = std::move(learn_);
  learn_.reset();
  if (o.status == core::Status::Delivered && o.reason != core::Reason::Duplicate) {
    if (learn)
      return persist([this, ev, at = services_.now_ms(), learn = std::move(*learn)](auto cb) {
        services_.learn_publish_delivered_and_ack(learn, entry_.id, job_.account, job_.id, at, ev, std::move(cb));
      });
    return persist([this, ev, at = services_.now_ms()](auto cb) {
      services_.publish_delivered_and_ack(entry_.id, job_.account, job_.id, at, ev, std::move(cb));
    });
  }
  if (learn)
    return persist([this, ev, learn = std::move(*learn)](auto cb) {
      services_.learn_publish_and_ack(learn, entry_.id, ev, std::move(cb));
    });
  persist([this, ev](auto cb) { services_.publish_and_ack(entry_.id, ev, std::move(cb)); });
}

void Delivery::log_outcome(const core::Outcome& o) const {
  record(o);
  std::string code = o.reply.code ? std::to_string(o.reply.code) : "";
  core::log_info("delivery", {{"job", job_.id},
                              {"mailbox", job_.mailbox},
                              {"attempt", std::to_string(attempt_)},
                              {"status", core::to_string(o.status)},
                              {"phase", core::to_string(o.phase)},
                              {"reason", core::to_string(o.reason)},
                              {"fault", core::to_string(o.fault)},
                              {"code", code},
                              {"enhanced", o.reply.enhanced},
                              {"reply", o.reply.text},
                              {"host", o.host},
                              {"ip", o.ip},
                              {"tls", o.tls_version},
                              {"tls_policy", core::to_string(o.tls_policy)},
                              {"tls_fallback", core::to_string(o.tls_fallback)},
                              {"worker", services_.worker_name()}});
}

// The outcome also goes to PostgreSQL (delivery_events) for the admin API's "get outcome" and
// GDPR export. Best effort: the results stream stays the record of truth.
void Delivery::record(const core::Outcome& o) const {
  store::DeliveryEvent e;
  e.job_id = job_.id;
  e.account = job_.account;
  e.mailbox = job_.mailbox;
  e.recipient = job_.to_email;
  e.status = std::string(core::to_string(o.status));
  e.reply_code = o.reply.code;
  e.enhanced_code = o.reply.enhanced;
  e.reply_text = o.reply.text;
  e.host = o.host;
  e.ip = o.ip;
  e.tls_version = o.tls_version;
  e.tls_cipher = o.tls_cipher;
  const std::string reason(core::to_string(o.reason));
  e.detail = reason.empty() ? o.detail : reason + (o.detail.empty() ? "" : ": " + o.detail);
  e.attempt = attempt_;
  e.duration_ms = static_cast<int64_t>(services_.uptime_ms() - started_);
  if (o.status == core::Status::Delivered) e.message_id = message_id_;
  services_.record(std::move(e));
}

std::string Delivery::event(const core::Outcome& o, int64_t next_attempt_ms) const {
  EventContext ctx{job_.id,
                   entry_.id,
                   job_.account,
                   job_.mailbox,
                   job_.to_email,
                   attempt_,
                   static_cast<int64_t>(services_.uptime_ms() - started_),
                   services_.now_ms(),
                   next_attempt_ms,
                   first_delivered_ms_,
                   o.status == core::Status::Delivered ? message_id_ : std::string()};
  return result_event(ctx, o);
}

void Delivery::persist(std::function<void(std::function<void(bool)>)> write) {
  write([this, write](bool ok) {
    if (ok) return services_.finished(this);
    if (aborted_) return release();
    after_backoff([this, write] { persist(write); });
  });
}

void Delivery::after_backoff(std::function<void()> next) {
  Metrics::get().redis_write_retries.inc();
  backoff_ms_ = std::clamp<uint64_t>(backoff_ms_ * 2, kBackoffMinMs, kBackoffMaxMs);
  pending_write_ = std::move(next);
  backoff_ = core::TimerHandle(services_.loop());
  backoff_->start(backoff_ms_, [this] {
    auto run = std::move(pending_write_);
    pending_write_ = nullptr;
    run();
  });
}

void Delivery::release() {
  core::log_warn("job_left_pending", {{"job", job_.id}, {"entry", entry_.id},
                                      {"note", "not finished before shutdown; the entry stays pending and will be retaken"}});
  services_.finished(this);
}

}  // namespace deliverd::daemon
