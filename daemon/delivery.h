#pragma once
// One job from the moment it is taken off the stream until its outcome is written to Redis and
// its entry acked (or, when Redis cannot be reached before the daemon stops, left pending for a
// later run). The steps, in order: poison check → parse → erased account → expiry and
// not_before → mailbox → idempotency marker and policy (one admit script) → compose and sign →
// send → erased account again (it may have been erased meanwhile) → outcome → learn and publish
// (one script) / retry set.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "core/outcome.h"
#include "core/timer.h"
#include "daemon/delivery_services.h"
#include "dns/resolver.h"
#include "policy/gate.h"
#include "queue/consumer.h"
#include "queue/job.h"
#include "store/mailboxes.h"

namespace deliverd::daemon {


// A stream entry handed out more often than this was being processed when a daemon died each
// time: it is dead-lettered instead of taking the next daemon down with it.
inline constexpr int kMaxDeliveries = 3;

class Delivery {
 public:
  // services must outlive the delivery; it calls services.finished(this) exactly once, at its end.
  // job: the entry's job as the daemon already read it (to route it to this loop), or nothing.
  Delivery(DeliveryServices& services, queue::StreamEntry entry, std::optional<queue::Job> job = {});
  void start();
  // Drain bound reached: end what is running; Redis writes that keep failing give up and leave
  // the entry pending.
  void abort();
  const std::string& entry_id() const { return entry_.id; }

 private:
  bool read_retry_fields(std::string& error);
  // A job of an erased account ends rejected/account_erased before anything of it is written;
  // otherwise next() runs. Unknown (Redis away) waits, as for the idempotency marker. Asked only
  // when the admit script has not read the marker (done, postpone) and after an attempt.
  void check_erased(std::function<void()> next);
  void schedule_or_send();
  // The end of a job whose account was erased: no address, reply or detail of it goes anywhere.
  void erased();
  void admit();
  // The marker says the job was delivered at delivered_ms (0: unknown): a duplicate's event.
  void duplicate(int64_t delivered_ms);
  void compose_and_send();
  void resolved(const dns::ResolvedHost& r);
  void send_mx();
  void done(const core::Outcome& o);
  void finish(const core::Outcome& o);
  // Deferred: into the retry set (attempt + 1), or expired when no retry fits before the end.
  void retry_later(const core::Outcome& o);
  // Into the retry set at due_ms without using up an attempt (not_before, policy deferrals).
  void postpone(int64_t due_ms, const core::Outcome* event);
  void publish(const core::Outcome& o, int64_t next_attempt_ms = 0);
  // The payload goes with it, cut to its first `keep` bytes.
  void dead_letter(const std::string& reason, size_t keep = std::string::npos);
  // Runs a Redis write until it succeeds (the entry's fate must reach Redis), backing off while
  // Redis is away; after abort() a failure leaves the entry pending instead.
  void persist(std::function<void(std::function<void(bool ok)>)> write);
  void after_backoff(std::function<void()> next);
  void release();
  void log_outcome(const core::Outcome& o) const;  // and record() it
  void record(const core::Outcome& o) const;
  std::string event(const core::Outcome& o, int64_t next_attempt_ms) const;
  core::Outcome ended_while_waiting(core::Reason reason, std::string detail) const;
  void find_mailbox(bool refreshed);

  DeliveryServices& services_;
  queue::StreamEntry entry_;
  uint64_t started_;
  bool read_;  // job_ came with the entry (App::loop_of read it to route it)
  bool erased_checked_ = false;  // the account's erasure marker was read and not set
  const std::string* payload_ = nullptr;  // the "job" field of entry_, or inflated_
  std::string inflated_;                  // the job text of a "job_z" field
  queue::Job job_;
  int attempt_ = 1;
  int64_t first_seen_ms_ = 0;
  int64_t first_delivered_ms_ = 0;  // a duplicate: when the job was delivered (0 = unknown)
  core::Reply last_reply_;  // the previous attempt's reply, carried through the retry set
  std::shared_ptr<const store::Mailbox> mailbox_;
  std::string message_;
  std::string message_id_;  // of the message built, kept with its delivered event
  dns::Resolver::RequestId resolve_id_ = 0;
  bool sending_ = false;  // handed to the session pool / MX delivery; done() will follow
  bool attempted_ = false;  // an SMTP attempt was made: its outcome teaches the policy gate
  std::optional<policy::Decision> admitted_;  // the gate's Allow (holds a destination lease in MX mode)
  std::optional<policy::LearnCall> learn_;    // the attempt's learn, waiting for the outcome's write
  bool aborted_ = false;
  core::TimerHandle backoff_;
  uint64_t backoff_ms_ = 0;
  std::function<void()> pending_write_;  // the write waiting for backoff_ to fire
};

}  // namespace deliverd::daemon
