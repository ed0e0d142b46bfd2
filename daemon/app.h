#pragma once
// The running daemon: wires queue/ → store/ mailboxes → smtp/ compose → dns/ resolve + policy →
// smtp/ session → outcome → queue/ publish + ack, all on one libuv loop.
#include <uv.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/result.h"
#include "core/timer.h"
#include "daemon/config.h"
#include "daemon/mailbox_directory.h"
#include "dns/address_policy.h"
#include "queue/consumer.h"
#include "queue/retry_policy.h"
#include "core/tls_context.h"
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
}  // namespace queue
namespace store {
class PgConnection;
}
namespace policy {
class Gate;
}
}  // namespace deliverd

namespace deliverd::daemon {

class Delivery;
class Notifier;

// Checks what load_config cannot: values parsed by the modules themselves (Redis URL, CIDRs,
// listen address, key file). Used by `check-config` and before `run` starts anything.
core::Result<core::Ok, std::string> validate_config(const Config& cfg);

class App {
 public:
  explicit App(Config cfg);
  ~App();
  // Runs until SIGTERM/SIGINT has drained the daemon. Returns the process exit code.
  int run();

 private:
  friend class Delivery;
  // What issue 7 adds to every send: our unsubscribe tokens and their public listener, DKIM
  // signers by sending domain (lower-case).
  struct Compliance {
    std::optional<smtp::UnsubscribeTokens> tokens;
    std::map<std::string, smtp::DkimSigner> signers;
    admin::HttpServer* http = nullptr;
  };
  int64_t now_ms() const;  // wall clock
  bool start();
  bool start_compliance();
  void start_api();
  void on_mailboxes(core::Result<size_t, std::string> r);
  void on_entry(queue::StreamEntry entry);
  void finish(Delivery* d);
  void maybe_ready();
  void reload();
  void begin_drain(const char* why);
  void maybe_finish_drain();
  void shutdown();
  void readiness(std::function<void(std::vector<std::pair<std::string, bool>>)> done);
  static void on_signal(uv_signal_t* s, int signum);

  Config cfg_;
  smtp::SessionConfig session_config_;
  smtp::SessionConfig mailbox_session_config(const store::Mailbox& m) const;
  smtp::PoolConfig pool_config() const;  // from cfg_, at start and on reload
  smtp::MxConfig mx_config() const;
  admin::MailboxProberConfig prober_config() const;
  std::shared_ptr<core::TlsContext> tls_;       // SMTP client TLS: system CAs + [smtp] ca_file
  std::unique_ptr<smtp::SessionPool> pool_;     // connection reuse per mailbox / MX domain
  std::unique_ptr<smtp::MxDelivery> mx_;        // mailboxes in mode "mx"
  uv_loop_t loop_{};
  uv_signal_t sigterm_{}, sigint_{}, sighup_{};
  std::unique_ptr<dns::AddressPolicy> policy_;
  std::unique_ptr<store::SecretBox> secrets_;
  dns::Resolver* resolver_ = nullptr;
  store::PgConnection* pg_ = nullptr;
  store::PgConnection* pg_policy_ = nullptr;  // the gate's own: it LISTENs for suppression changes
  std::unique_ptr<policy::Gate> gate_;
  queue::RedisClient* redis_ = nullptr;
  std::unique_ptr<queue::Publisher> publisher_;
  queue::Consumer* consumer_ = nullptr;
  std::unique_ptr<admin::Router> router_;
  std::unique_ptr<admin::MailboxProber> prober_;  // the admin API's mailbox connection test
  admin::HttpServer* http_ = nullptr;
  std::unique_ptr<Compliance> compliance_;
  queue::RetryPolicy retry_policy_;
  std::unique_ptr<queue::Scheduler> scheduler_;  // the retry set and its promoter
  std::unique_ptr<queue::LagMonitor> lag_;
  core::TimerHandle drain_timer_;
  Notifier* notifier_ = nullptr;    // sd_notify: READY, STATUS, WATCHDOG, RELOADING, STOPPING
  core::TimerHandle status_timer_;  // refreshes STATUS= while running
  bool ready_sent_ = false;
  bool mailboxes_loaded_ = false;
  std::unique_ptr<MailboxDirectory> mailboxes_;  // on pg_, which it LISTENs on
  std::unique_ptr<store::DeliveryEventWriter> events_;  // delivery_events rows, batched, on pg_
  std::unique_ptr<store::DeliveryEventRetention> events_retention_;  // [postgres] events_retention_days, on pg_
  bool shut_down_ = false;
  std::map<std::string, Delivery*> inflight_;  // by stream entry id
  bool draining_ = false;
  bool stopped_ = false;
  int exit_code_ = 0;
};

}  // namespace deliverd::daemon
