#include "daemon/app.h"

#include <systemd/sd-daemon.h>

#include <cctype>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>

#include "admin/admin_routes.h"
#include "admin/http_server.h"
#include "admin/unsubscribe_routes.h"
#include "core/log.h"
#include "core/metrics.h"
#include "daemon/result_event.h"
#include "dns/resolver.h"
#include "queue/job.h"
#include "queue/publisher.h"
#include "queue/redis_client.h"
#include "smtp/composer.h"
#include "smtp/dkim.h"
#include "smtp/unsubscribe_token.h"
#include "smtp/session.h"
#include "store/migrations.h"
#include "store/pg_connection.h"
#include "store/suppressions.h"

namespace deliverd::daemon {
namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Metrics {
  core::Family<core::Counter>& outcomes;
  core::Family<core::Counter>& dead_letters;
  core::Histogram& duration;
  static Metrics& get() {
    auto& r = core::Registry::global();
    static Metrics m{
        r.counter("deliverd_outcomes_total", "Final and deferred outcomes of delivery attempts, by status and reason",
                  {"status", "reason"}),
        r.counter("deliverd_dead_letters_total", "Jobs that could not be parsed or validated", {}),
        r.histogram("deliverd_delivery_duration_seconds", "Time from taking a job to its outcome",
                    {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300})
            .get(),
    };
    return m;
  }
};

smtp::SessionConfig session_config(const Config& c) {
  using smtp::Phase;
  smtp::SessionConfig s;
  s.helo_name = c.hostname;
  auto ms = [](int seconds) { return static_cast<uint64_t>(seconds) * 1000; };
  s.timeouts[Phase::Connect] = ms(c.smtp_connect_timeout_s);
  s.timeouts[Phase::Banner] = ms(c.smtp_banner_timeout_s);
  for (Phase p : {Phase::Ehlo, Phase::Helo, Phase::Mail, Phase::Rcpt}) s.timeouts[p] = ms(c.smtp_command_timeout_s);
  s.timeouts[Phase::Data] = ms(c.smtp_data_timeout_s);
  s.timeouts[Phase::Body] = ms(c.smtp_data_end_timeout_s);
  s.total_ms = ms(c.smtp_session_timeout_s);
  s.timeouts[Phase::StartTls] = ms(c.smtp_starttls_timeout_s);
  s.timeouts[Phase::Tls] = ms(c.smtp_tls_timeout_s);
  s.timeouts[Phase::Auth] = ms(c.smtp_auth_timeout_s);
  s.timeouts[Phase::Rset] = ms(c.smtp_command_timeout_s);
  s.timeouts[Phase::Quit] = ms(c.smtp_quit_timeout_s);
  return s;
}

core::Outcome policy_outcome(core::Status status, std::string reason, std::string detail) {
  core::Outcome o;
  o.status = status;
  o.phase = "policy";
  o.reason = std::move(reason);
  o.detail = std::move(detail);
  return o;
}

}  // namespace

// What issue 7 adds to every send: our unsubscribe tokens and their public listener, DKIM
// signers by sending domain (lower-case).
struct App::Compliance {
  std::optional<smtp::UnsubscribeTokens> tokens;
  std::map<std::string, smtp::DkimSigner> signers;
  admin::HttpServer* http = nullptr;
};

// One job from the moment it is taken off the stream until its outcome is published and acked.
class Delivery {
 public:
  Delivery(App& app, queue::StreamEntry entry) : app_(app), entry_(std::move(entry)), started_(uv_now(&app.loop_)) {}

  void start();
  void abort(const char* why) {
    if (resolve_id_) {
      app_.resolver_->cancel(resolve_id_);
      resolve_id_ = 0;
    }
    // Pooled sessions are not owned by one delivery: past the drain bound all of them end
    // (deferred, "aborted") and each delivery then publishes its outcome as usual.
    if (sending_ && app_.pool_) app_.pool_->shutdown();
    (void)why;
  }
  const std::string& entry_id() const { return entry_.id; }

 private:
  void dead_letter(const std::string& reason);
  void compose_and_send();
  void resolved(const dns::ResolvedHost& r);
  void send_mx();
  void done(const core::Outcome& o);

  App& app_;
  queue::StreamEntry entry_;
  uint64_t started_;
  queue::Job job_;
  store::Mailbox mailbox_;
  std::string message_;
  dns::Resolver::RequestId resolve_id_ = 0;
  bool sending_ = false;  // handed to the session pool / MX delivery; done() will follow
};

void Delivery::start() {
  const std::string* payload = entry_.field("job");
  if (!payload) return dead_letter("missing stream field \"job\"");
  auto parsed = queue::parse_job(*payload);
  if (!parsed) return dead_letter(parsed.error().to_string());
  job_ = std::move(parsed).value();

  auto mbx = app_.mailboxes_.find(job_.mailbox);
  if (mbx == app_.mailboxes_.end() || mbx->second.account != job_.account)
    return done(policy_outcome(core::Status::Rejected, "unknown_mailbox",
                               "mailbox " + job_.mailbox + " is not registered for account " + job_.account));
  mailbox_ = mbx->second;
  if (mailbox_.paused)
    return done(policy_outcome(core::Status::Rejected, "mailbox_paused", "mailbox " + mailbox_.id + " is paused"));
  if (job_.expires_at_ms && job_.expires_at_ms <= wall_ms())
    return done(policy_outcome(core::Status::Expired, "expired", "expires_at has passed"));
  if (!dns::port_allowed(mailbox_.smtp_port))
    return done(policy_outcome(core::Status::Rejected, "port_refused",
                               "port " + std::to_string(mailbox_.smtp_port) + " is not a mail port"));

  // The suppression list is checked before anything is composed or sent (DESIGN.md policy gate).
  store::is_suppressed(*app_.pg_, job_.account, job_.to_email, [this](core::Result<bool, std::string> r) {
    if (!r) return done(policy_outcome(core::Status::Deferred, "suppression_check_failed", r.error()));
    if (*r)
      return done(policy_outcome(core::Status::Suppressed, "suppressed",
                                 "the address is on the suppression list of account " + job_.account));
    compose_and_send();
  });
}

void Delivery::compose_and_send() {
  const Config& cfg = app_.cfg_;
  App::Compliance& comp = *app_.compliance_;
  smtp::MessageSpec spec;
  spec.from_email = mailbox_.email;
  spec.from_name = job_.from_name;
  spec.to_email = job_.to_email;
  spec.to_name = job_.to_name;
  spec.reply_to = job_.reply_to;
  spec.subject = job_.subject;
  spec.text = job_.text;
  spec.headers = job_.headers;
  spec.message_id_domain = app_.cfg_.hostname;
  spec.html = job_.html;
  spec.raw = job_.raw;
  spec.campaign = job_.campaign;
  if (!job_.campaign.empty()) {
    spec.unsubscribe_url = job_.unsubscribe_url;
    spec.unsubscribe_mailto = job_.unsubscribe_mailto.empty() ? cfg.unsubscribe_mailto : job_.unsubscribe_mailto;
    if (spec.unsubscribe_url.empty() && comp.tokens && !cfg.unsubscribe_base_url.empty())
      spec.unsubscribe_url =
          cfg.unsubscribe_base_url + "/u/" + comp.tokens->issue({job_.account, job_.to_email, job_.campaign});
    auto postal = cfg.account_postal_addresses.find(job_.account);
    spec.postal_address = postal != cfg.account_postal_addresses.end() ? postal->second : cfg.postal_address;
  }
  auto now = static_cast<std::time_t>(wall_ms() / 1000);
  auto composed = smtp::compose(spec, now);
  if (!composed) return done(policy_outcome(core::Status::Rejected, "invalid_message", composed.error()));
  message_ = std::move(composed).value();
  std::string from_domain = mailbox_.email.substr(mailbox_.email.rfind('@') + 1);
  for (auto& ch : from_domain) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (auto signer = comp.signers.find(from_domain); signer != comp.signers.end()) {
    auto signed_message = signer->second.sign(message_, now);
    if (!signed_message) return done(policy_outcome(core::Status::Failed, "dkim_failed", signed_message.error()));
    message_ = std::move(signed_message).value();
  }

  if (mailbox_.mode == "mx" || mailbox_.mode == "direct") return send_mx();
  resolve_id_ = app_.resolver_->resolve_host(mailbox_.smtp_host, [this](const dns::ResolvedHost& r) {
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
  sockaddr_storage addr = dns::with_port(r.allowed.front(), mailbox_.smtp_port);

  smtp::Envelope env{mailbox_.email, job_.to_email, std::move(message_)};
  smtp::Route route;
  route.key = "mbx:" + mailbox_.id;
  route.cfg = app_.mailbox_session_config(mailbox_);
  route.addr = addr;
  route.host = mailbox_.smtp_host;
  sending_ = true;
  app_.pool_->submit(std::move(route), std::move(env), [this](const core::Outcome& o) {
    sending_ = false;
    done(o);
  });
}

void Delivery::send_mx() {
  std::string domain = job_.to_email.substr(job_.to_email.rfind('@') + 1);
  smtp::Envelope env{mailbox_.email, job_.to_email, std::move(message_)};
  sending_ = true;
  app_.mx_->deliver(domain, std::move(env), [this](const core::Outcome& o) {
    sending_ = false;
    done(o);
  });
}

void Delivery::dead_letter(const std::string& reason) {
  Metrics::get().dead_letters.get().inc();
  core::log_warn("job_dead_lettered", {{"entry", entry_.id}, {"reason", reason}});
  const std::string* payload = entry_.field("job");
  app_.publisher_->dead_letter_and_ack(entry_.id, payload ? *payload : std::string(), reason, [this](bool ok) {
    if (!ok) core::log_error("dead_letter_failed", {{"entry", entry_.id}});
    app_.finish(this);
  });
}

void Delivery::done(const core::Outcome& o) {
  uint64_t elapsed = uv_now(&app_.loop_) - started_;
  auto& m = Metrics::get();
  m.outcomes.with({std::string(core::to_string(o.status)), o.reason}).inc();
  m.duration.observe(static_cast<double>(elapsed) / 1000.0);

  EventContext ctx{job_.id, entry_.id, job_.account, job_.mailbox, job_.to_email, 1, static_cast<int64_t>(elapsed),
                   wall_ms()};
  std::string code = o.reply.code ? std::to_string(o.reply.code) : "";
  core::log_info("delivery", {{"job", job_.id},
                              {"mailbox", job_.mailbox},
                              {"status", core::to_string(o.status)},
                              {"phase", o.phase},
                              {"reason", o.reason},
                              {"code", code},
                              {"enhanced", o.reply.enhanced},
                              {"reply", o.reply.text},
                              {"host", o.host},
                              {"ip", o.ip}});
  app_.publisher_->publish_and_ack(entry_.id, result_event(ctx, o), [this](bool ok) {
    if (!ok) core::log_error("publish_failed", {{"entry", entry_.id}, {"job", job_.id}});
    app_.finish(this);
  });
}

core::Result<core::Ok, std::string> validate_config(const Config& cfg) {
  if (auto r = queue::parse_redis_url(cfg.redis_url); !r) return core::Err{cfg.path + ": [redis] url: " + r.error()};
  if (auto p = dns::AddressPolicy::create(cfg.allow_private_targets); !p)
    return core::Err{cfg.path + ": [security] allow_private_targets: " + p.error()};
  if (auto k = store::SecretBox::from_key_file(cfg.secret_key_file); !k)
    return core::Err{cfg.path + ": [security] secret_key_file: " + k.error()};
  for (const auto& s : cfg.dns_servers)
    if (s.empty()) return core::Err{cfg.path + ": [dns] servers: empty entry"};
  if (auto t = core::TlsContext::client({cfg.smtp_ca_file}); !t)
    return core::Err{cfg.path + ": [smtp] ca_file: " + t.error()};
  if (!cfg.unsubscribe_key_file.empty())
    if (auto t = smtp::UnsubscribeTokens::from_key_file(cfg.unsubscribe_key_file); !t)
      return core::Err{cfg.path + ": [unsubscribe] key_file: " + t.error()};
  if (!cfg.unsubscribe_mailto.empty() && !queue::is_plausible_email(cfg.unsubscribe_mailto))
    return core::Err{cfg.path + ": [unsubscribe] mailto: not an email address"};
  for (const auto& k : cfg.dkim) {
    smtp::DkimAlgorithm alg{};
    smtp::parse_dkim_algorithm(k.algorithm, alg);
    if (auto s = smtp::DkimSigner::from_key_file(k.domain, k.selector, alg, k.key_file); !s)
      return core::Err{cfg.path + ": [[dkim]] " + s.error()};
  }
  return core::Ok{};
}

App::App(Config cfg) : cfg_(std::move(cfg)) {
  uv_loop_init(&loop_);
  session_config_ = session_config(cfg_);
}

smtp::SessionConfig App::mailbox_session_config(const store::Mailbox& m) const {
  smtp::SessionConfig s = session_config_;
  s.security = smtp::security_from_name(m.security).value_or(smtp::Security::StartTls);
  s.tls_policy = smtp::TlsPolicy::Required;  // a mailbox's own server: its certificate must check out
  s.tls = tls_;
  s.relay = true;
  s.auth = smtp::Credentials{m.username, m.password, m.oauth_token};
  return s;
}

App::~App() { uv_loop_close(&loop_); }

// Loads what validate_config has already checked, and starts the public unsubscribe listener.
bool App::start_compliance() {
  compliance_ = std::make_unique<Compliance>();
  if (!cfg_.unsubscribe_key_file.empty())
    compliance_->tokens = smtp::UnsubscribeTokens::from_key_file(cfg_.unsubscribe_key_file).value();
  for (const auto& k : cfg_.dkim) {
    smtp::DkimAlgorithm alg{};
    smtp::parse_dkim_algorithm(k.algorithm, alg);
    auto signer = smtp::DkimSigner::from_key_file(k.domain, k.selector, alg, k.key_file).value();
    compliance_->signers.emplace(signer.domain(), std::move(signer));
  }
  if (cfg_.unsubscribe_listen.empty()) return true;
  admin::Router router;
  admin::add_unsubscribe_routes(router, *compliance_->tokens,
                                [this](const smtp::UnsubscribeClaims& c, std::function<void(bool)> stored) {
                                  if (!pg_) return stored(false);
                                  store::add_suppression(
                                      *pg_, {c.account, c.address, "unsubscribed", "one_click"},
                                      [c, stored](core::Result<bool, std::string> r) {
                                        if (!r) core::log_error("suppression_add_failed", {{"error", r.error()}});
                                        else
                                          core::log_info("unsubscribed", {{"account", c.account},
                                                                          {"campaign", c.campaign},
                                                                          {"new", *r ? "true" : "false"}});
                                        stored(r.ok());
                                      });
                                });
  auto http = admin::HttpServer::start(&loop_, admin::unsubscribe_server_config(cfg_.unsubscribe_listen), router);
  if (!http) {
    core::log_error("unsubscribe_listen_failed", {{"listen", cfg_.unsubscribe_listen}, {"error", http.error()}});
    return false;
  }
  compliance_->http = *http;
  return true;
}

bool App::start() {
  core::LogLevel level = core::LogLevel::Info;
  core::parse_log_level(cfg_.log_level, level);
  core::set_log_level(level);

  if (auto v = validate_config(cfg_); !v) {
    core::log_error("config_invalid", {{"error", v.error()}});
    return false;
  }
  policy_ = std::make_unique<dns::AddressPolicy>(dns::AddressPolicy::create(cfg_.allow_private_targets).value());
  secrets_ = std::make_unique<store::SecretBox>(store::SecretBox::from_key_file(cfg_.secret_key_file).value());
  for (const auto& cidr : cfg_.allow_private_targets)
    core::log_warn("allow_private_targets",
                   {{"cidr", cidr}, {"note", "SECURITY: the SSRF target policy is bypassed for this range; never in production"}});

  auto version = store::schema_version(cfg_.pg_conninfo);
  if (!version) {
    core::log_error("postgres_unavailable", {{"error", version.error()}});
    return false;
  }
  if (*version != store::latest_schema_version()) {
    core::log_error("schema_out_of_date", {{"have", std::to_string(*version)},
                                           {"want", std::to_string(store::latest_schema_version())},
                                           {"fix", "run: deliverd migrate --config " + cfg_.path}});
    return false;
  }

  dns::ResolverConfig rc;
  rc.servers = cfg_.dns_servers;
  rc.timeout_ms = cfg_.dns_timeout_ms;
  rc.tries = cfg_.dns_tries;
  rc.max_ttl_s = cfg_.dns_max_ttl_s;
  rc.negative_ttl_s = cfg_.dns_negative_ttl_s;
  rc.max_cache_entries = static_cast<size_t>(cfg_.dns_cache_entries);
  try {
    resolver_ = dns::Resolver::create(&loop_, rc, policy_.get());
  } catch (const std::exception& e) {
    core::log_error("dns_init_failed", {{"error", e.what()}});
    return false;
  }

  tls_ = core::TlsContext::client({cfg_.smtp_ca_file}).value();
  smtp::PoolConfig spc;
  spc.max_sessions = static_cast<size_t>(cfg_.smtp_max_sessions);
  spc.max_sessions_per_key = static_cast<size_t>(cfg_.smtp_max_sessions_per_destination);
  spc.max_messages_per_connection = static_cast<size_t>(cfg_.smtp_max_messages_per_connection);
  spc.idle_timeout_ms = static_cast<uint64_t>(cfg_.smtp_idle_timeout_s) * 1000;
  pool_ = std::make_unique<smtp::SessionPool>(&loop_, spc);
  smtp::MxConfig mxc;
  mxc.port = cfg_.smtp_mx_port;
  mxc.max_attempts = static_cast<size_t>(cfg_.smtp_mx_max_attempts);
  mxc.session = session_config_;
  mxc.session.security = smtp::Security::StartTls;
  mxc.session.tls_policy = smtp::tls_policy_from_name(cfg_.smtp_mx_tls).value_or(smtp::TlsPolicy::Opportunistic);
  mxc.session.tls = tls_;
  mx_ = std::make_unique<smtp::MxDelivery>(*resolver_, *pool_, mxc);

  auto redis_cfg = queue::parse_redis_url(cfg_.redis_url).value();
  redis_ = queue::RedisClient::create(&loop_, redis_cfg);
  queue::PublisherConfig pc;
  pc.stream = cfg_.stream;
  pc.group = cfg_.group;
  pc.results = cfg_.results_stream;
  pc.dead = cfg_.dead_stream;
  pc.results_maxlen = static_cast<size_t>(cfg_.results_maxlen);
  publisher_ = std::make_unique<queue::Publisher>(*redis_, pc);
  queue::ConsumerConfig cc;
  cc.stream = cfg_.stream;
  cc.group = cfg_.group;
  cc.consumer = cfg_.consumer;
  cc.block_ms = cfg_.block_ms;
  cc.max_inflight = static_cast<size_t>(cfg_.max_inflight);
  consumer_ = queue::Consumer::create(&loop_, redis_cfg, cc, [this](queue::StreamEntry e) { on_entry(std::move(e)); });

  router_ = std::make_unique<admin::Router>();
  admin::add_health_routes(*router_, [this](auto done) { readiness(std::move(done)); });
  admin::HttpServerConfig hc;
  hc.listen = cfg_.admin_listen;
  auto http = admin::HttpServer::start(&loop_, hc, *router_);
  if (!http) {
    core::log_error("admin_listen_failed", {{"listen", cfg_.admin_listen}, {"error", http.error()}});
    return false;
  }
  http_ = *http;
  if (!start_compliance()) return false;

  auto& reg = core::Registry::global();
  reg.gauge_fn("deliverd_mailboxes_loaded", "Mailboxes loaded from PostgreSQL",
               [this] { return static_cast<double>(mailboxes_.size()); });

  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sighup_);
  sigterm_.data = sigint_.data = sighup_.data = this;
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sighup_, on_signal, SIGHUP);

  pg_ = store::PgConnection::create(&loop_, cfg_.pg_conninfo);
  pg_->connect([this](bool ok, const std::string& err) {
    if (!ok) {
      core::log_error("postgres_connect_failed", {{"error", err}});
      exit_code_ = 1;
      return begin_drain("postgres unavailable");
    }
    store::load_mailboxes(*pg_, *secrets_, [this](auto r) { on_mailboxes(std::move(r)); });
  });
  redis_->connect([](bool ok, const std::string& err) {
    if (!ok) core::log_error("redis_connect_failed", {{"error", err}});
  });
  return true;
}

void App::on_mailboxes(core::Result<std::vector<store::Mailbox>, std::string> r) {
  if (draining_) return;
  if (!r) {
    core::log_error("mailbox_load_failed", {{"error", r.error()}});
    exit_code_ = 1;
    return begin_drain("mailboxes could not be loaded");
  }
  for (auto& m : *r) mailboxes_[m.id] = std::move(m);
  core::log_info("started", {{"mailboxes", std::to_string(mailboxes_.size())},
                             {"admin", cfg_.admin_listen},
                             {"stream", cfg_.stream},
                             {"consumer", cfg_.consumer}});
  consumer_->start();
  sd_notify(0, "READY=1\nSTATUS=consuming jobs");
}

void App::on_entry(queue::StreamEntry entry) {
  auto* d = new Delivery(*this, std::move(entry));
  inflight_[d->entry_id()] = d;
  d->start();
}

void App::finish(Delivery* d) {
  std::string id = d->entry_id();
  inflight_.erase(id);
  delete d;
  consumer_->done(id);
  if (draining_) maybe_finish_drain();
}

void App::readiness(std::function<void(std::vector<std::pair<std::string, bool>>)> done) {
  struct Probe {
    std::function<void(std::vector<std::pair<std::string, bool>>)> done;
    bool redis = false, postgres = false;
    int waiting = 2;
    void complete() {
      if (--waiting == 0) done({{"redis", redis}, {"postgres", postgres}});
    }
  };
  auto p = std::make_shared<Probe>();
  p->done = std::move(done);
  if (redis_ && redis_->connected()) {
    redis_->command({"PING"}, [p](const queue::RedisReply& r) {
      p->redis = !r.is_error();
      p->complete();
    });
  } else {
    p->complete();
  }
  if (pg_ && pg_->connected()) {
    pg_->query("SELECT 1", {}, [p](const store::PgResult& r) {
      p->postgres = r.ok;
      p->complete();
    });
  } else {
    p->complete();
  }
}

void App::on_signal(uv_signal_t* s, int signum) {
  auto* self = static_cast<App*>(s->data);
  if (signum == SIGHUP) {
    core::log_warn("reload_not_supported", {{"note", "restart the service to apply configuration changes"}});
    return;
  }
  self->begin_drain(signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

void App::begin_drain(const char* why) {
  if (draining_) return;
  draining_ = true;
  core::log_info("draining", {{"why", why}, {"inflight", std::to_string(inflight_.size())}});
  sd_notify(0, "STOPPING=1\nSTATUS=draining in-flight deliveries");
  if (consumer_) consumer_->stop();
  drain_timer_ = core::TimerHandle(&loop_);
  drain_timer_->start(static_cast<uint64_t>(cfg_.shutdown_grace_s) * 1000, [this] {
    // Past the bound: end what is still running. Aborted sessions end deferred and are
    // published and acked like any other outcome.
    core::log_warn("drain_timeout", {{"inflight", std::to_string(inflight_.size())}});
    for (auto& [id, d] : inflight_) d->abort("shutdown");
  });
  maybe_finish_drain();
}

void App::maybe_finish_drain() {
  if (!inflight_.empty() || stopped_) return;
  stopped_ = true;
  // Let the loop run one more turn so the last acks' callbacks unwind before handles close.
  shutdown();
}

void App::shutdown() {
  drain_timer_.reset();
  if (consumer_) consumer_->close();
  consumer_ = nullptr;
  if (http_) http_->close();
  http_ = nullptr;
  if (compliance_ && compliance_->http) compliance_->http->close();
  if (compliance_) compliance_->http = nullptr;
  mx_.reset();
  if (pool_) pool_->shutdown();  // idle pooled connections would keep the loop running
  if (resolver_) resolver_->close();
  resolver_ = nullptr;
  if (pg_) pg_->close();
  pg_ = nullptr;
  if (redis_) redis_->close();
  redis_ = nullptr;
  for (auto* s : {&sigterm_, &sigint_, &sighup_})
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(s))) uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
}

int App::run() {
  if (!start()) {
    shutdown();
    uv_run(&loop_, UV_RUN_DEFAULT);
    return 1;
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  core::log_info("stopped", {{"exit_code", std::to_string(exit_code_)}});
  return exit_code_;
}

}  // namespace deliverd::daemon
