#pragma once
// What one Delivery uses of the daemon, and nothing more: the mailbox directory, the policy gate,
// the message builder, the sender (resolver, relay pool, MX), the results publisher and the retry
// scheduler, the event log, the clock and the retry policy. App implements it over its parts
// (daemon/app.cpp); tests/unit/daemon/delivery_test.cpp implements it with fakes.
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/outcome.h"
#include "core/result.h"
#include "dns/resolver.h"
#include "policy/gate.h"
#include "queue/publisher.h"
#include "queue/retry_policy.h"
#include "queue/scheduler.h"
#include "smtp/session.h"
#include "store/delivery_events.h"
#include "store/mailboxes.h"

namespace deliverd::daemon {

class Delivery;
class MessageBuilder;

class DeliveryServices {
 public:
  using WriteDone = std::function<void(bool ok)>;
  virtual ~DeliveryServices() = default;

  // Clock and retry policy.
  virtual uv_loop_t* loop() = 0;    // backoff timers
  virtual int64_t now_ms() = 0;     // wall clock (due times, expiry)
  virtual uint64_t uptime_ms() = 0;  // monotonic (durations)
  virtual const queue::RetryPolicy& retry_policy() = 0;
  // [redis] max_job_bytes: a larger entry is dead-lettered with its size, unread.
  virtual size_t max_job_bytes() = 0;

  // Mailbox directory.
  // Mailbox ids are per account: (account, id) names one.
  // The directory's row itself, not a copy: rows are immutable, a reload makes new ones.
  virtual std::shared_ptr<const store::Mailbox> find_mailbox(const std::string& account, const std::string& id) = 0;
  virtual void refresh_mailbox(const store::MailboxRef& ref, std::function<void()> then) = 0;

  // Policy gate.
  virtual void admit(const policy::AdmitRequest& req, std::function<void(const policy::Decision&)> cb) = 0;
  // An attempt's learn is prepared when its outcome is known (suppression and lease release at
  // once) and runs with the outcome's write: alone before a deferral (learn()), or inside the
  // outcome's publish (learn_publish_and_ack and learn_publish_delivered_and_ack: one script).
  virtual policy::LearnCall prepare_learn(const store::Mailbox& m, const std::string& to, const core::Outcome& o,
                                          const policy::Decision& admitted) = 0;
  virtual void learn(policy::LearnCall call) = 0;
  virtual void release(const policy::Decision& admitted) = 0;

  // Message builder (composition and DKIM signing).
  virtual const MessageBuilder& message_builder() = 0;

  // Sender: the relay host's name, the relay pool, MX delivery.
  virtual dns::Resolver::RequestId resolve_host(const std::string& host,
                                                std::function<void(const dns::ResolvedHost&)> cb) = 0;
  virtual void cancel_resolve(dns::Resolver::RequestId id) = 0;
  virtual void send_relay(const store::Mailbox& m, const sockaddr_storage& addr, smtp::Envelope env,
                          smtp::Session::Done done) = 0;
  virtual void send_mx(const std::string& domain, smtp::Envelope env, smtp::Session::Done done) = 0;
  // Past the drain bound: every send in flight ends deferred ("aborted").
  virtual void abort_sends() = 0;

  // Results publisher and retry scheduler (Redis). Each WriteDone(false) leaves the entry pending.
  // Job ids are per account: the idempotency marker is (account, job id), holding the time of
  // the delivery (queue/publisher.h).
  // The marker's key, which admit() reads first (policy::AdmitRequest::done_key).
  virtual std::string done_key(const std::string& account, const std::string& job_id) = 0;
  // Whether the account was erased (queue/account_eraser.h): its jobs end without a trace.
  // The marker's key, which admit() reads first of all (policy::AdmitRequest::erased_key), so
  // that only jobs ending before or after their admission ask is_erased.
  virtual std::string erased_key(const std::string& account) = 0;
  virtual void is_erased(const std::string& account, std::function<void(core::Result<bool, std::string>)> cb) = 0;
  virtual void ack(const std::string& entry_id, WriteDone cb) = 0;
  virtual void dead_letter_and_ack(const std::string& entry_id, const std::string& payload, const std::string& reason,
                                   WriteDone cb) = 0;
  virtual void publish_and_ack(const std::string& entry_id, const std::string& event, WriteDone cb) = 0;
  virtual void publish_delivered_and_ack(const std::string& entry_id, const std::string& account,
                                         const std::string& job_id, int64_t delivered_ms, const std::string& event,
                                         WriteDone cb) = 0;
  // The same two publishes with the attempt's learn in the same script (one EVALSHA): the event,
  // the marker and the ack are written as above, and the learn runs only when the event was
  // recorded by this call (not again on a retry after a lost reply).
  virtual void learn_publish_and_ack(const policy::LearnCall& learn, const std::string& entry_id,
                                     const std::string& event, WriteDone cb) = 0;
  virtual void learn_publish_delivered_and_ack(const policy::LearnCall& learn, const std::string& entry_id,
                                               const std::string& account, const std::string& job_id,
                                               int64_t delivered_ms, const std::string& event, WriteDone cb) = 0;
  virtual void defer_and_ack(const std::string& entry_id, const queue::RetryItem& item, int64_t due_ms,
                             const std::string& event, WriteDone cb) = 0;

  // Event log (delivery_events rows; best effort).
  virtual void record(store::DeliveryEvent e) = 0;

  // The delivery has ended (its entry's fate is in Redis, or it was left pending): free it.
  virtual void finished(Delivery* d) = 0;

  // The event loop this delivery runs on ([daemon] workers; 0 is the primary), for its log line.
  virtual const std::string& worker_name() {
    static const std::string zero = "0";
    return zero;
  }
};

}  // namespace deliverd::daemon
