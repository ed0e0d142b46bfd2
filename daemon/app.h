#pragma once
// The running daemon: wires queue/ → store/ mailboxes → smtp/ compose → dns/ resolve + policy →
// smtp/ session → outcome → queue/ publish + ack, on [daemon] workers libuv loops.
//
// One App per loop, each on its own thread. The primary (loop 0) is the whole daemon: admin API,
// consumer, retry scheduler, stream trimmer, inbound watchers, signals. It reads every job and
// hands each to the loop that owns its mailbox (loop_of: a stable hash), so a mailbox's session,
// pacing and breaker stay on one loop. Each other loop is the delivery half only: its own Redis
// and PostgreSQL connections, mailbox directory, policy gate (suppression list), message builder,
// session pool, resolver and MX delivery — as another daemon of the fleet would have, so nothing
// on the hot path is shared between threads but the metrics (core/metrics.h) and the log. Loops
// talk only through their inboxes (core/loop_inbox.h).
#include <uv.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/lifetime.h"
#include "core/loop_inbox.h"
#include "core/loop_lag.h"
#include "core/result.h"
#include "core/timer.h"
#include "daemon/config.h"
#include "daemon/delivery_services.h"
#include "daemon/message_builder.h"
#include "daemon/mailbox_directory.h"
#include "dns/address_policy.h"
#include "queue/account_eraser.h"
#include "queue/consumer.h"
#include "queue/retry_policy.h"
#include "core/tls_context.h"
#include "daemon/mta_sts_policies.h"
#include "daemon/tls_reports.h"
#include "smtp/mx_delivery.h"
#include "smtp/session.h"
#include "smtp/dkim.h"
#include "smtp/session_pool.h"
#include "smtp/unsubscribe_token.h"
#include "store/delivery_events.h"
#include "store/mailboxes.h"
#include "store/secret_box.h"

namespace deliverd {
namespace admin {
class HttpServer;
class MailboxProber;
struct MailboxProberConfig;
class Router;
}  // namespace admin
namespace dns {
class Resolver;
}
namespace queue {
class RedisClient;
class Publisher;
class Scheduler;
class LagMonitor;
class StreamTrimmer;
class WriteHealth;
}  // namespace queue
namespace store {
class PgConnection;
struct PgConnectionOptions;
}
namespace policy {
class Gate;
}
}  // namespace deliverd

namespace deliverd::daemon {

class Delivery;
class Notifier;
class OAuthTokens;
class InboundWatchers;

// Checks what load_config cannot: values parsed by the modules themselves (Redis URL, CIDRs,
// listen address, key file). Used by `check-config` and before `run` starts anything.
core::Result<core::Ok, std::string> validate_config(const Config& cfg);

// App is the delivery services (daemon/delivery_services.h) over its parts; Delivery knows only
// that interface.
class App final : private DeliveryServices {
 public:
  explicit App(Config cfg);
  ~App();
  // The loop, 0 … workers-1, that runs the jobs of this mailbox.
  static size_t loop_of(std::string_view account, std::string_view mailbox, size_t loops);
  // Runs until SIGTERM/SIGINT has drained the daemon. Returns the process exit code.
  int run();

 private:
  // Every send's unsubscribe link and DKIM signature (the builder holds the keys) and the public
  // one-click listener.
  struct Compliance {
    std::unique_ptr<MessageBuilder> builder;
    admin::HttpServer* http = nullptr;
  };

  // DeliveryServices
  uv_loop_t* loop() override { return &loop_; }
  int64_t now_ms() override;
  uint64_t uptime_ms() override { return uv_now(&loop_); }
  const queue::RetryPolicy& retry_policy() override { return retry_policy_; }
  size_t max_job_bytes() override { return static_cast<size_t>(cfg_.max_job_bytes); }
  std::shared_ptr<const store::Mailbox> find_mailbox(const std::string& account, const std::string& id) override;
  void refresh_mailbox(const store::MailboxRef& ref, std::function<void()> then) override;
  void admit(const policy::AdmitRequest& req, std::function<void(const policy::Decision&)> cb) override;
  policy::LearnCall prepare_learn(const store::Mailbox& m, const std::string& to, const core::Outcome& o,
                                  const policy::Decision& admitted) override;
  void learn(policy::LearnCall call) override;
  void release(const policy::Decision& admitted) override;
  const MessageBuilder& message_builder() override { return *compliance_->builder; }
  dns::Resolver::RequestId resolve_host(const std::string& host,
                                        std::function<void(const dns::ResolvedHost&)> cb) override;
  void cancel_resolve(dns::Resolver::RequestId id) override;
  void send_relay(const store::Mailbox& m, const sockaddr_storage& addr, smtp::Envelope env,
                  smtp::Session::Done done) override;
  void send_mx(const std::string& domain, smtp::Envelope env, smtp::Session::Done done) override;
  void abort_sends() override;
  std::string done_key(const std::string& account, const std::string& job_id) override;
  std::string erased_key(const std::string& account) override;
  void is_erased(const std::string& account, std::function<void(core::Result<bool, std::string>)> cb) override;
  void ack(const std::string& entry_id, WriteDone cb) override;
  void dead_letter_and_ack(const std::string& entry_id, const std::string& payload, const std::string& reason,
                           WriteDone cb) override;
  void publish_and_ack(const std::string& entry_id, const std::string& event, WriteDone cb) override;
  void publish_delivered_and_ack(const std::string& entry_id, const std::string& account, const std::string& job_id,
                                 int64_t delivered_ms, const std::string& event, WriteDone cb) override;
  void learn_publish_and_ack(const policy::LearnCall& learn, const std::string& entry_id, const std::string& event,
                             WriteDone cb) override;
  void learn_publish_delivered_and_ack(const policy::LearnCall& learn, const std::string& entry_id,
                                       const std::string& account, const std::string& job_id, int64_t delivered_ms,
                                       const std::string& event, WriteDone cb) override;
  void defer_and_ack(const std::string& entry_id, const queue::RetryItem& item, int64_t due_ms,
                     const std::string& event, WriteDone cb) override;
  void record(store::DeliveryEvent e) override;
  void finished(Delivery* d) override;
  const std::string& worker_name() override { return worker_name_; }

  // [daemon] workers: the other loops, seen from the primary.
  struct WorkerLoop {
    std::unique_ptr<App> app;
    uv_thread_t thread{};
    bool started = false;  // the thread runs
    bool ready = false;    // its mailboxes loaded
    bool stopped = false;  // its loop has ended
    size_t inflight = 0;   // jobs handed to it and not yet finished
  };
  App(Config cfg, App* primary, size_t index);
  bool primary() const { return primary_ == nullptr; }
  bool start_workers();
  void run_worker();  // on the worker's thread
  bool start_worker_parts();
  // Its mailbox's loop, and the job read from it (for its Delivery, which then does not parse
  // it again); 0 and nothing for an entry that cannot be read.
  size_t loop_of(queue::StreamEntry& entry, std::optional<queue::Job>& job);
  void hand_over(size_t loop, queue::StreamEntry entry, std::optional<queue::Job> job);
  void share_suppressions();
  void share_mailboxes();
  void start_delivery(queue::StreamEntry entry, std::optional<queue::Job> job = {});
  // On the primary, posted by worker `index`.
  void worker_finished(size_t index, const std::string& entry_id);
  void worker_ready(size_t index);
  void worker_stopped(size_t index, int exit_code);
  // A reload's configuration, checked by the primary, applied to this loop's parts.
  void apply_config(Config next, DomainKeys signers);
  static size_t loop_count(const Config& cfg);  // [daemon] workers, 0 resolved to the CPUs
  std::string owner_name() const;  // leases and probe keys: the consumer name, and the loop
  bool start();
  // The steps of start(), in order; each logs why it failed.
  static void apply_logging(const Config& cfg);
  bool check_config();
  bool open_store();
  bool start_resolver();
  bool start_smtp();
  bool start_redis();
  bool start_mta_sts();
  bool start_tls_reports();
  void apply_tls_rpt();
  bool start_oauth();
  bool start_policy();
  store::PgConnectionOptions pg_options();
  bool start_admin();
  bool start_compliance();
  bool start_consumer();
  bool start_inbound();
  bool watch_signals();
  bool connect();
  void start_api();
  void on_mailboxes(core::Result<size_t, std::string> r);
  // A relay send with explicit credentials (the mailbox's own, or an OAuth access token).
  void submit_relay(const store::Mailbox& m, const sockaddr_storage& addr, smtp::Envelope env,
                    const std::string& oauth_token, smtp::Session::Done done);
  // An OAuth mailbox's send: a token first; a server that refuses it (535) gets one fresh token
  // and one more try; a revoked grant disables the mailbox.
  void send_oauth(const store::Mailbox& m, const sockaddr_storage& addr, smtp::Envelope env, bool retried,
                  smtp::Session::Done done);
  void disable_revoked(const store::Mailbox& m, const std::string& detail);
  void upgrade_policy_keys();
  void on_entry(queue::StreamEntry entry);
  void maybe_start_consumer();
  void maybe_ready();
  void reload();
  void begin_drain(const char* why);
  void maybe_finish_drain();
  void shutdown();
  void readiness(std::function<void(std::vector<std::pair<std::string, bool>>)> done);
  static void on_signal(uv_signal_t* s, int signum);

  Config cfg_;
  smtp::SessionConfig session_config_;
  // A mailbox's submission settings; `oauth_token` is its static token or a refreshed one.
  smtp::SessionConfig mailbox_session_config(const store::Mailbox& m, const std::string& oauth_token) const;
  smtp::PoolConfig pool_config() const;  // from cfg_, at start and on reload
  smtp::MxConfig mx_config() const;
  admin::MailboxProberConfig prober_config() const;
  std::shared_ptr<core::TlsContext> tls_;       // SMTP client TLS: system CAs + [smtp] ca_file
  std::unique_ptr<smtp::SessionPool> pool_;     // connection reuse per mailbox / MX domain
  std::unique_ptr<smtp::MxDelivery> mx_;        // mailboxes in mode "mx"
  std::unique_ptr<MtaStsPolicies> mta_sts_;     // MX mode: recipient domains' MTA-STS policies
  std::unique_ptr<TlsReports> tls_reports_;     // MX mode: TLS-RPT counters and daily reports
  uv_loop_t loop_{};
  uv_signal_t sigterm_{}, sigint_{}, sighup_{};
  std::unique_ptr<dns::AddressPolicy> policy_;
  std::unique_ptr<store::SecretBox> secrets_;
  std::unique_ptr<store::AddressHasher> addresses_;  // from secrets_: suppression and event hashes
  dns::Resolver* resolver_ = nullptr;
  dns::TlsaResolver* tlsa_ = nullptr;  // [dns] dnssec_resolver: DANE's TLSA lookups; null = DANE off
  store::PgConnection* pg_ = nullptr;
  store::PgConnection* pg_policy_ = nullptr;  // the gate's own: it LISTENs for suppression changes
  std::unique_ptr<policy::Gate> gate_;
  queue::RedisClient* redis_ = nullptr;
  std::unique_ptr<queue::Publisher> publisher_;
  std::unique_ptr<OAuthTokens> oauth_;  // access tokens of OAuth mailboxes
  std::unique_ptr<InboundWatchers> inbound_;  // bounces, complaints, replies read from the mailboxes
  std::set<store::MailboxRef> revoked_;  // disabled (or being disabled) for a revoked grant, by this daemon
  std::unique_ptr<queue::AccountEraser> eraser_;
  queue::Consumer* consumer_ = nullptr;
  std::unique_ptr<admin::Router> router_;
  std::unique_ptr<admin::MailboxProber> prober_;  // the admin API's mailbox connection test
  admin::HttpServer* http_ = nullptr;
  std::unique_ptr<Compliance> compliance_;
  queue::RetryPolicy retry_policy_;
  std::unique_ptr<queue::Scheduler> scheduler_;  // the retry set and its promoter
  std::unique_ptr<queue::LagMonitor> lag_;
  std::unique_ptr<queue::StreamTrimmer> trimmer_;    // results and dead letters by age
  std::unique_ptr<queue::WriteHealth> write_health_;  // holds intake while Redis refuses writes
  core::TimerHandle drain_timer_;
  core::TimerHandle upgrade_timer_;  // retries the policy key upgrade after a Redis error
  Notifier* notifier_ = nullptr;    // sd_notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING
  core::TimerHandle status_timer_;     // refreshes STATUS= while running
  core::TimerHandle log_flush_timer_;  // writes log lines stderr could not take at once
  core::LoopLagMonitor loop_lag_;     // deliverd_loop_lag_seconds
  App* primary_ = nullptr;  // on a worker loop: the primary, which reads its jobs
  size_t index_ = 0;        // this loop: 0 is the primary
  std::string worker_name_ = "0";
  std::unique_ptr<core::LoopInbox> inbox_;  // what other loops post to this one
  std::vector<std::unique_ptr<WorkerLoop>> workers_;  // on the primary: loops 1 … workers-1
  size_t workers_ready_ = 0;
  bool ready_sent_ = false;
  bool mailboxes_loaded_ = false;
  bool suppressions_settled_ = false;  // the gate's first load answered (loaded or failed)
  bool consumer_started_ = false;
  std::unique_ptr<MailboxDirectory> mailboxes_;  // on pg_, which it LISTENs on
  std::unique_ptr<store::DeliveryEventWriter> events_;  // delivery_events rows, batched, on pg_
  std::unique_ptr<store::DeliveryEventRetention> events_retention_;  // [postgres] events_retention_days, on pg_
  bool shut_down_ = false;
  std::map<std::string, Delivery*> inflight_;  // by stream entry id
  bool draining_ = false;
  bool stopped_ = false;
  int exit_code_ = 0;
  core::Lifetime alive_;  // last: ends first, for Redis replies that outlive the App
};

}  // namespace deliverd::daemon
