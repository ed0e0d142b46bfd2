#include "daemon/app.h"

#include "policy/scripts.h"

#include <cctype>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>

#include "admin/admin_routes.h"
#include "admin/client_address.h"
#include "admin/api_routes.h"
#include "admin/mailbox_probe.h"
#include "admin/http_server.h"
#include "admin/unsubscribe_routes.h"
#include "core/address.h"
#include "core/deflate.h"
#include "core/key_file.h"
#include "core/log.h"
#include "core/metrics.h"
#include "daemon/delivery.h"
#include "daemon/notify.h"
#include "dns/resolver.h"
#include "daemon/inbound_watchers.h"
#include "daemon/oauth_tokens.h"
#include "daemon/result_event.h"
#include "oauth/token_manager.h"
#include "policy/gate.h"
#include "policy/mailbox_keys.h"
#include "policy/scripts.h"
#include "queue/job.h"
#include "queue/lag_monitor.h"
#include "queue/scheduler.h"
#include "queue/stream_trimmer.h"
#include "queue/write_health.h"
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
  // Lab rigs only (logged at start): AUTH on a connection without verified TLS.
  s.allow_plaintext_auth = c.smtp_allow_plaintext_auth;
  return s;
}

// The streams kept for an age ([redis] results_retention, dead_retention).
std::vector<queue::TrimmedStream> trimmed_streams(const Config& c) {
  return {{c.results_stream, c.results_retention_ms}, {c.dead_stream, c.dead_retention_ms}};
}

}  // namespace

// The Redis connection settings from [redis]: URL, password file, TLS trust.
core::Result<queue::RedisConfig, std::string> redis_config(const Config& cfg) {
  auto r = queue::parse_redis_url(cfg.redis_url);
  if (!r) return core::Err{cfg.path + ": [redis] url: " + r.error()};
  queue::RedisConfig rc = std::move(r).value();
  if (!cfg.redis_password_file.empty())
    if (auto p = queue::apply_password_file(rc, cfg.redis_password_file); !p)
      return core::Err{cfg.path + ": [redis] password_file: " + p.error()};
  rc.ca_file = cfg.redis_ca_file;
  for (const auto& s : cfg.redis_sentinels) {
    auto a = queue::parse_sentinel_address(s);
    if (!a) return core::Err{cfg.path + ": [redis] sentinels: " + a.error()};
    rc.sentinels.push_back(std::move(a).value());
  }
  rc.sentinel_master = cfg.redis_sentinel_master;
  rc.sentinel_username = cfg.redis_sentinel_username;
  if (!cfg.redis_sentinel_password_file.empty()) {
    auto pw = queue::read_secret_file(cfg.redis_sentinel_password_file, "redis sentinel_password_file");
    if (!pw) return core::Err{cfg.path + ": [redis] sentinel_password_file: " + pw.error()};
    rc.sentinel_password = std::move(pw).value();
  }
  if (rc.tls) {
    // One context for every connection: the CA store is loaded once and sessions can resume.
    auto t = core::TlsContext::client({cfg.redis_ca_file});
    if (!t) return core::Err{cfg.path + ": [redis] ca_file: " + t.error()};
    rc.tls_context = *t;
  }
  return rc;
}

// The [[dkim]] keys by sending domain (lower-case).
core::Result<DomainKeys, std::string> load_dkim_signers(const Config& cfg) {
  DomainKeys signers;
  for (const auto& k : cfg.dkim) {
    smtp::DkimAlgorithm alg{};
    smtp::parse_dkim_algorithm(k.algorithm, alg);
    auto signer = smtp::DkimSigner::from_key_file(k.domain, k.selector, alg, k.key_file);
    if (!signer) return core::Err{cfg.path + ": [[dkim]] " + signer.error()};
    std::string domain = signer->domain();
    signers.emplace(std::move(domain), DomainKey{std::move(signer).value(), k.accounts});
  }
  return signers;
}

// The [[oauth]] providers with their client secrets read.
core::Result<std::vector<oauth::Provider>, std::string> load_oauth_providers(const Config& cfg) {
  std::vector<oauth::Provider> out;
  for (const auto& p : cfg.oauth) {
    oauth::Provider o{p.name, p.token_url, p.client_id, "", p.scope};
    if (!p.client_secret_file.empty()) {
      auto secret = core::read_private_file(p.client_secret_file);
      if (!secret) return core::Err{cfg.path + ": [[oauth]] " + p.name + ": client_secret_file: " + secret.error()};
      // The file as an editor leaves it: the secret, perhaps a newline.
      const std::string& text = *secret;
      size_t a = text.find_first_not_of(" \t\r\n"), b = text.find_last_not_of(" \t\r\n");
      if (a != std::string::npos) o.client_secret = text.substr(a, b - a + 1);
      if (o.client_secret.empty())
        return core::Err{cfg.path + ": [[oauth]] " + p.name + ": client_secret_file: " + p.client_secret_file +
                         " is empty"};
    }
    out.push_back(std::move(o));
  }
  return out;
}

MessageBuilderConfig message_builder_config(const Config& cfg) {
  return {cfg.unsubscribe_base_url, cfg.unsubscribe_mailto, cfg.postal_address, cfg.account_postal_addresses};
}

core::Result<core::Ok, std::string> validate_config(const Config& cfg) {
  if (auto r = redis_config(cfg); !r) return core::Err{r.error()};
  if (auto p = dns::AddressPolicy::create(cfg.allow_private_targets); !p)
    return core::Err{cfg.path + ": [security] allow_private_targets: " + p.error()};
  if (auto k = store::SecretBox::from_key_file(cfg.secret_key_file, cfg.old_secret_key_files); !k)
    return core::Err{cfg.path + ": [security] secret_key_file: " + k.error()};
  for (const auto& s : cfg.dns_servers)
    if (s.empty()) return core::Err{cfg.path + ": [dns] servers: empty entry"};
  if (auto t = core::TlsContext::client({cfg.smtp_ca_file}); !t)
    return core::Err{cfg.path + ": [smtp] ca_file: " + t.error()};
  if (!cfg.unsubscribe_key_file.empty())
    if (auto t = smtp::UnsubscribeTokens::from_key_file(cfg.unsubscribe_key_file, cfg.unsubscribe_old_key_files); !t)
      return core::Err{cfg.path + ": [unsubscribe] key_file: " + t.error()};
  if (cfg.unsubscribe_key_file.empty() && !cfg.unsubscribe_old_key_files.empty())
    return core::Err{cfg.path + ": [unsubscribe] old_key_files: needs key_file (the key that signs new links)"};
  if (!cfg.unsubscribe_mailto.empty())
    if (auto a = core::parse_address(cfg.unsubscribe_mailto); !a)
      return core::Err{cfg.path + ": [unsubscribe] mailto: " + a.error()};
  if (auto s = load_dkim_signers(cfg); !s) return core::Err{s.error()};
  if (auto p = load_oauth_providers(cfg); !p) return core::Err{p.error()};
  return core::Ok{};
}

App::App(Config cfg) : cfg_(std::move(cfg)) {
  uv_loop_init(&loop_);
  session_config_ = session_config(cfg_);
  inbox_ = std::make_unique<core::LoopInbox>(&loop_);
}

App::App(Config cfg, App* primary, size_t index) : App(std::move(cfg)) {
  primary_ = primary;
  index_ = index;
  worker_name_ = std::to_string(index);
}

// FNV-1a over account, a NUL and mailbox id: stable across restarts and builds, so a restarted
// daemon puts a mailbox back on the same loop.
size_t App::loop_of(std::string_view account, std::string_view mailbox, size_t loops) {
  if (loops <= 1) return 0;
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  for (unsigned char c : account) mix(c);
  mix(0);
  for (unsigned char c : mailbox) mix(c);
  return static_cast<size_t>(h % loops);
}

size_t App::loop_count(const Config& cfg) {
  return cfg.workers > 0 ? static_cast<size_t>(cfg.workers) : std::max(1u, uv_available_parallelism());
}

std::string App::owner_name() const { return primary() ? cfg_.consumer : cfg_.consumer + "/" + worker_name_; }

smtp::SessionConfig App::mailbox_session_config(const store::Mailbox& m, const std::string& oauth_token) const {
  smtp::SessionConfig s = session_config_;
  s.tls = tls_;
  return smtp::submission_config(std::move(s), m.security, smtp::Credentials{m.username, m.password, oauth_token});
}

// Tokens for OAuth mailboxes: the endpoint is reached like any other peer (the resolver vets its
// addresses), trusted like the SMTP servers ([smtp] ca_file), and the refresh lease is per fleet.
bool App::start_oauth() {
  OAuthTokensParts parts;
  parts.loop = &loop_;
  parts.resolver = resolver_;
  parts.tls = tls_;
  parts.redis = redis_;
  parts.pg = pg_;
  parts.secrets = secrets_.get();
  parts.redis_prefix = cfg_.policy.redis_prefix;
  parts.owner = owner_name();
  parts.providers = load_oauth_providers(cfg_).value();
  oauth_ = std::make_unique<OAuthTokens>(std::move(parts));
  return true;
}

// The connection test runs the sessions deliveries run: same settings, same TLS trust.
admin::MailboxProberConfig App::prober_config() const {
  admin::MailboxProberConfig pc;
  pc.tls = tls_;
  pc.smtp = session_config_;
  return pc;
}

smtp::PoolConfig App::pool_config() const {
  smtp::PoolConfig p;
  // [smtp] max_sessions bounds the process: each loop's pool holds its share.
  size_t loops = loop_count(cfg_);
  p.max_sessions = (static_cast<size_t>(cfg_.smtp_max_sessions) + loops - 1) / loops;
  p.max_sessions_per_key = static_cast<size_t>(cfg_.smtp_max_sessions_per_destination);
  p.max_messages_per_connection = static_cast<size_t>(cfg_.smtp_max_messages_per_connection);
  p.idle_timeout_ms = static_cast<uint64_t>(cfg_.smtp_idle_timeout_s) * 1000;
  return p;
}

smtp::MxConfig App::mx_config() const {
  smtp::MxConfig m;
  m.port = cfg_.smtp_mx_port;
  m.max_attempts = static_cast<size_t>(cfg_.smtp_mx_max_attempts);
  m.deadline_ms = static_cast<uint64_t>(cfg_.smtp_mx_deadline_s) * 1000;
  m.session = session_config_;
  m.session.security = smtp::Security::StartTls;
  m.session.tls_policy = smtp::tls_policy_from_name(cfg_.smtp_mx_tls).value_or(smtp::TlsPolicy::Opportunistic);
  m.session.tls = tls_;
  return m;
}

App::~App() { uv_loop_close(&loop_); }

int64_t App::now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---- DeliveryServices: what a Delivery uses of the daemon ---------------------------------

std::shared_ptr<const store::Mailbox> App::find_mailbox(const std::string& account, const std::string& id) {
  return mailboxes_->get(account, id);
}

void App::refresh_mailbox(const store::MailboxRef& ref, std::function<void()> then) {
  mailboxes_->refresh(ref, std::move(then));
}

void App::admit(const policy::AdmitRequest& req, std::function<void(const policy::Decision&)> cb) {
  gate_->admit(req, std::move(cb));
}

policy::LearnCall App::prepare_learn(const store::Mailbox& m, const std::string& to, const core::Outcome& o,
                                     const policy::Decision& admitted) {
  return gate_->prepare_learn(m, to, o, &admitted);
}

void App::learn(policy::LearnCall call) { gate_->run_learn(std::move(call)); }

void App::release(const policy::Decision& admitted) { gate_->release(admitted); }

dns::Resolver::RequestId App::resolve_host(const std::string& host, std::function<void(const dns::ResolvedHost&)> cb) {
  return resolver_->resolve_host(host, std::move(cb));
}

void App::cancel_resolve(dns::Resolver::RequestId id) { resolver_->cancel(id); }

void App::send_relay(const store::Mailbox& m, const sockaddr_storage& addr, smtp::Envelope env,
                     smtp::Session::Done done) {
  if (!m.oauth_provider.empty()) return send_oauth(m, addr, std::move(env), false, std::move(done));
  submit_relay(m, addr, std::move(env), m.oauth_token, std::move(done));
}

void App::submit_relay(const store::Mailbox& m, const sockaddr_storage& addr, smtp::Envelope env,
                       const std::string& oauth_token, smtp::Session::Done done) {
  smtp::Route route;
  // Per account and id: another account's mailbox with the same id never reuses this session.
  // and per settings: a session opened before the mailbox changed is never reused after.
  route.key = "mbx:" + store::MailboxRef{m.account, m.id}.key() + "#" + std::to_string(m.generation);
  route.cfg = mailbox_session_config(m, oauth_token);
  route.addr = addr;
  route.host = m.smtp_host;
  pool_->submit(std::move(route), std::move(env), std::move(done));
}

void App::send_oauth(const store::Mailbox& m, const sockaddr_storage& addr, smtp::Envelope env, bool retried,
                     smtp::Session::Done done) {
  // The mailbox is copied: the retry outlives the caller's reference only by a token's wait, but
  // a copy costs less than reasoning about it.
  oauth_->token(m, [this, alive = alive_.token(), m, addr, env = std::move(env), retried,
                    done = std::move(done)](core::Result<std::string, oauth::TokenFailure> t) mutable {
    if (!alive) return;
    if (!t) {
      if (t.error().kind == oauth::FailureKind::Revoked) disable_revoked(m, t.error().detail);
      return done(oauth_failure_outcome(t.error(), m.oauth_provider));
    }
    std::string token = std::move(t).value();
    // The first try keeps the message: a 535 for an expired token is answered with one more.
    std::optional<smtp::Envelope> again;
    if (!retried) again = env;
    submit_relay(m, addr, std::move(env), token,
                 [this, alive, m, addr, token, again = std::move(again),
                  done = std::move(done)](const core::Outcome& o) mutable {
                   if (!alive) return;
                   if (o.reason != core::Reason::AuthFailed || !again) return done(o);
                   core::log_info("oauth_token_refused", {{"mailbox", m.id}, {"reply", o.reply.text}});
                   oauth_->refused(m, token);
                   send_oauth(m, addr, std::move(*again), true, std::move(done));
                 });
  });
}

// A revoked grant (invalid_grant) needs the user: the mailbox is disabled with reason
// oauth_revoked and the platform told on the results stream, once per revocation. Jobs admitted
// before this daemon read the disable back still carry a copy of the row that is not disabled:
// revoked_ remembers the revocation until the row says the mailbox was connected again.
void App::disable_revoked(const store::Mailbox& m, const std::string& detail) {
  store::MailboxRef ref{m.account, m.id};
  if (m.disabled || !gate_ || !revoked_.insert(ref).second) return;
  core::log_warn("mailbox_disabled", {{"mailbox", m.id}, {"reason", "oauth_revoked"}, {"detail", detail}});
  gate_->set_state(
      m.account, m.id, store::MailboxChange::Disable, store::PausedBy::Daemon,
      [this, alive = alive_.token(), ref, detail](core::Result<store::ChangeAnswer, std::string> r) {
        if (!alive) return;
        if (!r) {
          revoked_.erase(ref);  // the next job's refusal tries again
          return core::log_error("mailbox_disable_store_failed", {{"mailbox", ref.id}, {"error", r.error()}});
        }
        if (*r != store::ChangeAnswer::Done) return;
        if (publisher_)
          publisher_->publish(mailbox_event("mailbox_disabled", ref.account, ref.id, "oauth_revoked", detail, now_ms()),
                              nullptr);
        if (mailboxes_) mailboxes_->refresh(ref, [] {});
      },
      "oauth_revoked");
}

void App::send_mx(const std::string& domain, smtp::Envelope env, smtp::Session::Done done) {
  mx_->deliver(domain, std::move(env), std::move(done));
}

// Pooled sessions are not owned by one delivery: past the drain bound all of them end
// (deferred, "aborted") and each delivery then publishes its outcome as usual.
void App::abort_sends() {
  if (pool_) pool_->shutdown();
}

std::string App::done_key(const std::string& account, const std::string& job_id) {
  return publisher_->done_key(account, job_id);
}

std::string App::erased_key(const std::string& account) { return eraser_->marker_key(account); }

void App::is_erased(const std::string& account, std::function<void(core::Result<bool, std::string>)> cb) {
  eraser_->is_erased(account, std::move(cb));
}

void App::ack(const std::string& entry_id, WriteDone cb) { publisher_->ack(entry_id, std::move(cb)); }

void App::dead_letter_and_ack(const std::string& entry_id, const std::string& payload, const std::string& reason,
                              WriteDone cb) {
  publisher_->dead_letter_and_ack(entry_id, payload, reason, std::move(cb));
}

void App::publish_and_ack(const std::string& entry_id, const std::string& event, WriteDone cb) {
  publisher_->publish_and_ack(entry_id, event, std::move(cb));
}

void App::publish_delivered_and_ack(const std::string& entry_id, const std::string& account, const std::string& job_id,
                                    int64_t delivered_ms, const std::string& event, WriteDone cb) {
  publisher_->publish_delivered_and_ack(entry_id, account, job_id, delivered_ms, event, std::move(cb));
}

namespace {

// An outcome's publish, then its learn, in one script: each body is written once, in its module
// (queue/publisher.cpp, policy/scripts.cpp). Publish first: a re-run after a lost reply finds
// the entry finished and learns nothing twice.
const queue::LuaScript& publish_then_learn() {
  static const queue::LuaScript script = queue::Publisher::add_and_ack_script().then(policy::scripts::kLearn);
  return script;
}

queue::Publisher::ThenCallback learned_then(const policy::LearnCall& learn, DeliveryServices::WriteDone cb) {
  return [answer = learn.answer, cb = std::move(cb)](bool ok, const queue::RedisReply* learned) {
    if (learned && answer) answer(*learned);
    if (cb) cb(ok);
  };
}

}  // namespace

void App::learn_publish_and_ack(const policy::LearnCall& learn, const std::string& entry_id, const std::string& event,
                                WriteDone cb) {
  if (learn.script.keys.empty()) return publish_and_ack(entry_id, event, std::move(cb));  // the gate was closed
  publisher_->publish_then(publish_then_learn(), publisher_->publish_call(entry_id, event), learn.script,
                           learned_then(learn, std::move(cb)));
}

void App::learn_publish_delivered_and_ack(const policy::LearnCall& learn, const std::string& entry_id,
                                          const std::string& account, const std::string& job_id, int64_t delivered_ms,
                                          const std::string& event, WriteDone cb) {
  if (learn.script.keys.empty())
    return publish_delivered_and_ack(entry_id, account, job_id, delivered_ms, event, std::move(cb));
  publisher_->publish_then(publish_then_learn(),
                           publisher_->delivered_call(entry_id, account, job_id, delivered_ms, event), learn.script,
                           learned_then(learn, std::move(cb)));
}

void App::defer_and_ack(const std::string& entry_id, const queue::RetryItem& item, int64_t due_ms,
                        const std::string& event, WriteDone cb) {
  scheduler_->defer_and_ack(entry_id, item, due_ms, event, std::move(cb));
}

void App::record(store::DeliveryEvent e) {
  if (events_) events_->add(std::move(e));
}

// Loads what validate_config has already checked, and starts the public unsubscribe listener.
bool App::start_compliance() {
  compliance_ = std::make_unique<Compliance>();
  std::optional<smtp::UnsubscribeTokens> tokens;
  if (!cfg_.unsubscribe_key_file.empty())
    tokens = smtp::UnsubscribeTokens::from_key_file(cfg_.unsubscribe_key_file, cfg_.unsubscribe_old_key_files).value();
  compliance_->builder =
      std::make_unique<MessageBuilder>(message_builder_config(cfg_), std::move(tokens), load_dkim_signers(cfg_).value());
  if (cfg_.unsubscribe_listen.empty() || !primary()) return true;
  admin::Router router;
  admin::add_unsubscribe_routes(router, *compliance_->builder->tokens(),
                                [this](const smtp::UnsubscribeClaims& c, std::function<void(bool)> stored) {
                                  if (!pg_) return stored(false);
                                  store::add_suppression(
                                      *pg_, *addresses_, {c.account, c.address, "unsubscribed", "one_click"},
                                      [c, stored](core::Result<bool, std::string> r) {
                                        if (!r) core::log_error("suppression_add_failed", {{"error", r.error()}});
                                        else
                                          core::log_info("unsubscribed", {{"account", c.account},
                                                                          {"campaign", c.campaign},
                                                                          {"new", *r ? "true" : "false"}});
                                        stored(r.ok());
                                      });
                                });
  admin::HttpServerConfig hc = admin::unsubscribe_server_config(cfg_.unsubscribe_listen);
  hc.trusted_proxies = admin::parse_trusted_proxies(cfg_.trusted_proxies).value();
  auto http = admin::HttpServer::start(&loop_, hc, router);
  if (!http) {
    core::log_error("unsubscribe_listen_failed", {{"listen", cfg_.unsubscribe_listen}, {"error", http.error()}});
    return false;
  }
  compliance_->http = *http;
  return true;
}

// The start-up reads like the data flow (DESIGN.md): configuration, the store, name resolution,
// SMTP, Redis (results, retry set, lag), the policy gate, the admin API and the public listener,
// the consumer, then signals and the connections themselves.
bool App::start() {
  apply_logging(cfg_);
  // Lines that waited while stderr was stalled go out within a second, not at the next event.
  loop_lag_ = core::LoopLagMonitor(&loop_);
  log_flush_timer_ = core::TimerHandle(&loop_);
  log_flush_timer_->start_repeating(1000, [] { core::flush_log(); });
  return check_config() && open_store() && start_resolver() && start_smtp() && start_redis() && start_mta_sts() && start_tls_reports() &&
         start_oauth() &&
         start_policy() && start_admin() && start_compliance() && start_consumer() && start_inbound() &&
         watch_signals() && connect() && start_workers();
}

// The other loops' threads, once the primary's parts exist (the gauges read when scraped are the
// primary's). Each starts its own parts; the consumer waits until every loop has loaded its
// mailboxes (worker_ready) and the primary its suppression list, which it shares with them.
bool App::start_workers() {
  size_t loops = loop_count(cfg_);
  core::log_info("workers", {{"count", std::to_string(loops)}});
  core::Registry::global().gauge("deliverd_workers", "Event loops delivering ([daemon] workers)").get().set(
      static_cast<double>(loops));
  for (size_t i = 1; i < loops; ++i) {
    auto w = std::make_unique<WorkerLoop>();
    w->app = std::unique_ptr<App>(new App(cfg_, this, i));
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) {
    int rc = uv_thread_create(&w->thread, [](void* a) { static_cast<App*>(a)->run_worker(); }, w->app.get());
    if (rc != 0) {
      core::log_error("worker_start_failed", {{"worker", w->app->worker_name_}, {"error", uv_strerror(rc)}});
      exit_code_ = 1;
      begin_drain("a worker loop could not start");
      return true;  // the drain ends the loops that did start
    }
    w->started = true;
  }
  return true;
}

// A worker loop: the delivery half of start(), then its loop until its drain ends; the primary
// learns that it stopped (and how) from the last task it is posted.
void App::run_worker() {
  core::Registry::skip_fn_gauges_on_this_thread();
  int code = 0;
  if (!start_worker_parts()) {
    shutdown();
    code = 1;
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (exit_code_) code = exit_code_;
  primary_->inbox_->post([p = primary_, i = index_, code] { p->worker_stopped(i, code); });
}

bool App::start_worker_parts() {
  loop_lag_ = core::LoopLagMonitor(&loop_);
  return check_config() && open_store() && start_resolver() && start_smtp() && start_redis() && start_mta_sts() &&
         start_tls_reports() && start_oauth() && start_policy() && start_compliance() && connect();
}

void App::apply_logging(const Config& cfg) {
  core::LogLevel level = core::LogLevel::Info;
  core::parse_log_level(cfg.log_level, level);
  core::set_log_level(level);
  core::LogFormat format = core::LogFormat::KeyValue;
  core::parse_log_format(cfg.log_format, format);
  core::set_log_format(format);
}

bool App::check_config() {
  if (auto v = validate_config(cfg_); !v) {
    core::log_error("config_invalid", {{"error", v.error()}});
    return false;
  }
  policy_ = std::make_unique<dns::AddressPolicy>(dns::AddressPolicy::create(cfg_.allow_private_targets).value());
  secrets_ = std::make_unique<store::SecretBox>(
      store::SecretBox::from_key_file(cfg_.secret_key_file, cfg_.old_secret_key_files).value());
  addresses_ = std::make_unique<store::AddressHasher>(store::AddressHasher::from(*secrets_));
  if (!primary()) return true;  // the primary has said it
  for (const auto& cidr : cfg_.allow_private_targets)
    core::log_warn("allow_private_targets",
                   {{"cidr", cidr}, {"note", "SECURITY: the SSRF target policy is bypassed for this range; never in production"}});
  if (cfg_.smtp_allow_plaintext_auth)
    core::log_warn("allow_plaintext_auth",
                   {{"note", "SECURITY: credentials may be sent without TLS (AUTH, IMAP LOGIN); lab rigs only, never in "
                             "production"}});
  return true;
}

// The schema must be current before anything runs; the loop's own connections come later.
bool App::open_store() {
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
  pg_ = store::PgConnection::create(&loop_, cfg_.pg_conninfo, pg_options());
  mailboxes_ = std::make_unique<MailboxDirectory>(&loop_, *pg_, *secrets_);
  share_mailboxes();
  // A changed, paused, disabled or removed mailbox keeps no idle session (its new route key
  // would never reuse them anyway; this closes them now rather than at their idle timeout).
  mailboxes_->on_change([this](const store::MailboxRef& ref) {
    if (pool_) pool_->close_idle("mbx:" + ref.key() + "#");
    if (oauth_) oauth_->forget(ref);  // a new grant gets a first chance, not the old one's failure
    // A row no longer disabled after a revoked grant has a new one: Redis lets it send again too.
    const store::Mailbox* m = mailboxes_ ? mailboxes_->find(ref.account, ref.id) : nullptr;
    if (m && !m->disabled) revoked_.erase(ref);
    if (primary() && gate_ && m && !m->oauth_provider.empty() && !m->disabled) gate_->lift_revoked(ref.account, ref.id);
    if (inbound_) inbound_->mailbox_changed(ref);
  });
  // Rows wait up to 100 ms for others so that busy daemons write them in large COPYs; the results
  // stream, not this table, is what a producer waits on.
  events_ = std::make_unique<store::DeliveryEventWriter>(*pg_, *addresses_, 500, 100000, /*gather_ms=*/100);
  if (primary()) {
    store::RetentionConfig retention;
    retention.days = cfg_.events_retention_days;
    events_retention_ = std::make_unique<store::DeliveryEventRetention>(*pg_, retention);
    events_retention_->start();
  }
  core::Registry::global().gauge_fn("deliverd_mailboxes_loaded", "Mailboxes loaded from PostgreSQL",
                                    [this] { return static_cast<double>(mailboxes_ ? mailboxes_->size() : 0); });
  return true;
}

bool App::start_resolver() {
  dns::ResolverConfig rc;
  rc.servers = cfg_.dns_servers;
  rc.timeout_ms = cfg_.dns_timeout_ms;
  rc.tries = cfg_.dns_tries;
  rc.max_ttl_s = cfg_.dns_max_ttl_s;
  rc.negative_ttl_s = cfg_.dns_negative_ttl_s;
  rc.timeout_ttl_s = cfg_.dns_timeout_ttl_s;
  rc.max_cache_entries = static_cast<size_t>(cfg_.dns_cache_entries);
  try {
    resolver_ = dns::Resolver::create(&loop_, rc, policy_.get());
    if (!cfg_.dns_dnssec_resolver.empty()) {
      dns::TlsaResolverConfig tc;
      tc.servers = {cfg_.dns_dnssec_resolver};
      tc.timeout_ms = cfg_.dns_timeout_ms;
      tc.tries = cfg_.dns_tries;
      tc.max_ttl_s = cfg_.dns_max_ttl_s;
      tlsa_ = dns::TlsaResolver::create(&loop_, tc);
    }
  } catch (const std::exception& e) {
    core::log_error("dns_init_failed", {{"error", e.what()}});
    return false;
  }
  return true;
}

bool App::start_smtp() {
  tls_ = core::TlsContext::client({cfg_.smtp_ca_file}).value();
  pool_ = std::make_unique<smtp::SessionPool>(&loop_, pool_config());
  mx_ = std::make_unique<smtp::MxDelivery>(*resolver_, *pool_, mx_config());
  if (tlsa_) mx_->set_dane_lookup(smtp::tlsa_dane_lookup(tlsa_));
  return true;
}

// Created whether or not [smtp] mta_sts is on, so that a reload can switch it either way.
// Policies are fetched with the trust store of SMTP as it was at start.
bool App::start_mta_sts() {
  mta_sts_ = std::make_unique<MtaStsPolicies>(&loop_, resolver_, tls_, redis_, cfg_.policy.redis_prefix);
  mx_->set_domain_policy_lookup(cfg_.smtp_mta_sts ? mta_sts_->lookup() : nullptr);
  return true;
}

// TLS-RPT (docs/smtp.md "TLS-RPT"): made whether or not [smtp] tls_rpt is on, so that a reload
// can switch it either way; the sinks are set only while it is on.
bool App::start_tls_reports() {
  tls_reports_ = std::make_unique<TlsReports>(&loop_, redis_, resolver_, mx_.get(), tls_, TlsReportsConfig{});
  apply_tls_rpt();
  return true;
}

void App::apply_tls_rpt() {
  TlsReportsConfig rc;
  rc.redis_prefix = cfg_.policy.redis_prefix;
  rc.organization = cfg_.smtp_tls_rpt_org;
  rc.contact = cfg_.smtp_tls_rpt_contact;
  rc.from = cfg_.smtp_tls_rpt_from;
  rc.send_daily = primary();
  // RFC 8460 5.3: mailed reports are DKIM-signed, with the [[dkim]] key of the From domain.
  if (const Config::DkimKey* k = cfg_.smtp_tls_rpt ? cfg_.dkim_for_address(rc.from) : nullptr) {
    smtp::DkimAlgorithm alg{};
    smtp::parse_dkim_algorithm(k->algorithm, alg);
    if (auto signer = smtp::DkimSigner::from_key_file(k->domain, k->selector, alg, k->key_file))
      rc.dkim = std::make_shared<const smtp::DkimSigner>(std::move(signer.value()));
    else
      core::log_error("tls_rpt_unsigned", {{"from", rc.from}, {"error", signer.error()}});
  } else if (cfg_.smtp_tls_rpt) {
    core::log_warn("tls_rpt_unsigned", {{"from", rc.from}, {"note", "no [[dkim]] key for this domain; RFC 8460 asks for signed reports"}});
  }
  tls_reports_->reconfigure(std::move(rc));
  tls_reports_->set_tls(tls_);
  smtp::TlsReportSink sink = cfg_.smtp_tls_rpt ? tls_reports_->sink() : nullptr;
  mx_->set_tls_report_sink(sink);
  if (mta_sts_) mta_sts_->set_report_sink(sink);
  if (cfg_.smtp_tls_rpt)
    tls_reports_->start();
  else
    tls_reports_->stop();
}

// Results, acks and the retry set go through a client that reconnects by itself; the blocking
// reads have their own connection, which the consumer re-creates after a failure.
bool App::start_redis() {
  auto main_redis_cfg = redis_config(cfg_).value();
  main_redis_cfg.name = primary() ? "main" : "main/" + worker_name_;
  main_redis_cfg.reconnect = true;
  redis_ = queue::RedisClient::create(&loop_, main_redis_cfg);
  queue::PublisherConfig pc;
  pc.stream = cfg_.stream;
  pc.group = cfg_.group;
  pc.results = cfg_.results_stream;
  pc.dead = cfg_.dead_stream;
  pc.results_maxlen = static_cast<size_t>(cfg_.results_maxlen);
  pc.done_prefix = cfg_.done_prefix;
  // A marker must outlive every copy of its job: the oldest a job can get, plus a day.
  pc.done_ttl_ms = cfg_.retry_max_age_ms + 86'400'000;
  publisher_ = std::make_unique<queue::Publisher>(*redis_, pc);
  queue::AccountEraserConfig ec;
  ec.retry = cfg_.retry_set;
  ec.results = cfg_.results_stream;
  ec.dead = cfg_.dead_stream;
  ec.marker_prefix = cfg_.policy.redis_prefix + "erased:";
  // The marker must outlive every job the account still had: the oldest a job can get, plus a day.
  ec.marker_ttl_ms = cfg_.retry_max_age_ms + 86'400'000;
  eraser_ = std::make_unique<queue::AccountEraser>(*redis_, ec);
  retry_policy_.schedule_ms = cfg_.retry_schedule_ms;
  retry_policy_.max_age_ms = cfg_.retry_max_age_ms;
  queue::SchedulerConfig sc;
  sc.stream = cfg_.stream;
  sc.group = cfg_.group;
  sc.retry = cfg_.retry_set;
  sc.results = cfg_.results_stream;
  sc.dead = cfg_.dead_stream;
  sc.results_maxlen = static_cast<size_t>(cfg_.results_maxlen);
  scheduler_ = std::make_unique<queue::Scheduler>(&loop_, *redis_, sc);
  // Every loop defers through its scheduler; the primary alone promotes, watches lag and trims.
  if (primary()) {
    scheduler_->start([this] { return now_ms(); });
    lag_ = std::make_unique<queue::LagMonitor>(
        &loop_, *redis_, queue::LagMonitorConfig{cfg_.stream, cfg_.group, cfg_.retry_set}, [this] { return now_ms(); });
    queue::StreamTrimmerConfig tc;
    tc.streams = trimmed_streams(cfg_);
    trimmer_ = std::make_unique<queue::StreamTrimmer>(&loop_, *redis_, tc, [this] { return now_ms(); });
    trimmer_->start();
  }
  // No new job while its outcome could not be written: the consumer is held until Redis takes
  // writes again (jobs in hand keep their outcomes in memory and retry).
  queue::WriteHealthConfig wc;
  wc.probe_key = cfg_.policy.redis_prefix + "probe:" + owner_name();
  write_health_ = std::make_unique<queue::WriteHealth>(&loop_, *redis_, wc);
  write_health_->on_change([this](bool accepting) {
    if (consumer_) consumer_->hold(!accepting);
    // Jobs already read wait too: a message is sent only while its outcome can be recorded.
    if (pool_) pool_->hold(!accepting);
  });
  return true;
}

// PostgreSQL's host name is looked up on the loop (c-ares, /etc/hosts first), never by libpq's
// getaddrinfo inside a connect, which would stop every session for as long as DNS takes.
store::PgConnectionOptions App::pg_options() {
  store::PgConnectionOptions o;
  o.resolve_host = [this](const std::string& host, auto cb) {
    if (!resolver_) return cb({}, "resolver not started");
    resolver_->resolve_service_host(host, std::move(cb));
  };
  return o;
}

// The gate has a PostgreSQL connection of its own: it LISTENs for suppression changes there.
bool App::start_policy() {
  pg_policy_ = store::PgConnection::create(&loop_, cfg_.pg_conninfo, pg_options());
  gate_ = std::make_unique<policy::Gate>(&loop_, *redis_, *pg_policy_, cfg_.policy, [this] { return now_ms(); },
                                         *addresses_);
  return true;
}

// Health routes and the /v1 API on the admin listener. The server keeps its own copy of the
// router: every route is added before it starts.
bool App::start_admin() {
  router_ = std::make_unique<admin::Router>();
  admin::add_health_routes(*router_, [this](auto done) { readiness(std::move(done)); });
  start_api();
  admin::HttpServerConfig hc;
  hc.listen = cfg_.admin_listen;
  hc.trusted_proxies = admin::parse_trusted_proxies(cfg_.trusted_proxies).value();
  auto http = admin::HttpServer::start(&loop_, hc, *router_);
  if (!http) {
    core::log_error("admin_listen_failed", {{"listen", cfg_.admin_listen}, {"error", http.error()}});
    return false;
  }
  http_ = *http;
  return true;
}

// Created now, started once the mailboxes are loaded (on_mailboxes).
// Watchers start once the mailboxes are loaded (on_mailboxes); their leases are per fleet and
// their cursors in PostgreSQL.
bool App::start_inbound() {
  InboundParts parts;
  parts.loop = &loop_;
  parts.resolver = resolver_;
  parts.redis = redis_;
  parts.publisher = publisher_.get();
  parts.pg = pg_;
  parts.addresses = addresses_.get();
  parts.gate = gate_.get();
  parts.mailboxes = mailboxes_.get();
  parts.oauth = oauth_.get();
  parts.tls = tls_;
  parts.lease_prefix = cfg_.policy.redis_prefix + "inbound:";
  parts.owner = cfg_.consumer;
  parts.now_ms = [this] { return now_ms(); };
  inbound_ = std::make_unique<InboundWatchers>(std::move(parts), cfg_.inbound);
  return true;
}

bool App::start_consumer() {
  auto redis_cfg = redis_config(cfg_).value();
  redis_cfg.name = "consumer";
  queue::ConsumerConfig cc;
  cc.stream = cfg_.stream;
  cc.group = cfg_.group;
  cc.consumer = cfg_.consumer;
  cc.block_ms = cfg_.block_ms;
  cc.max_inflight = static_cast<size_t>(cfg_.max_inflight);
  cc.max_inflight_bytes = static_cast<size_t>(cfg_.max_inflight_bytes);
  cc.max_entry_bytes = static_cast<size_t>(cfg_.max_job_bytes);
  cc.dead = cfg_.dead_stream;
  cc.claim_idle_ms = cfg_.claim_idle_s * 1000;
  consumer_ = queue::Consumer::create(&loop_, redis_cfg, cc, [this](queue::StreamEntry e) { on_entry(std::move(e)); });
  return true;
}

bool App::watch_signals() {
  notifier_ = Notifier::open(&loop_);
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sighup_);
  sigterm_.data = sigint_.data = sighup_.data = this;
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sighup_, on_signal, SIGHUP);
  return true;
}

// PostgreSQL (mailboxes, then the consumer), the gate's connection (the suppression list), Redis
// (readiness once it is up).
bool App::connect() {
  pg_->connect([this](bool ok, const std::string& err) {
    if (!ok) {
      core::log_error("postgres_connect_failed", {{"error", err}});
      exit_code_ = 1;
      return begin_drain("postgres unavailable");
    }
    mailboxes_->start([this](auto r) { on_mailboxes(std::move(r)); });
  });
  pg_policy_->connect([this](bool ok, const std::string& err) {
    if (!ok) {
      core::log_error("postgres_connect_failed", {{"error", err}, {"conn", "policy"}});
      exit_code_ = 1;
      return begin_drain("postgres unavailable");
    }
    if (!primary()) {  // the primary's gate feeds this one (share_suppressions)
      suppressions_settled_ = true;
      return maybe_start_consumer();
    }
    share_suppressions();
    gate_->start([this, alive = alive_.token()](core::Result<core::Ok, std::string> r) {
      if (!r) core::log_warn("policy_load_failed", {{"error", r.error()}, {"note", "jobs are deferred until it loads"}});
      if (!alive) return;
      suppressions_settled_ = true;
      maybe_start_consumer();
    });
  });
  redis_->set_connect_handler([this] { maybe_ready(); });
  redis_->connect([](bool ok, const std::string& err) {
    if (!ok) core::log_error("redis_connect_failed", {{"error", err}});
  });
  return true;
}

// The mailboxes are read by the primary's directory only (one LISTEN, each row once in memory):
// it posts every load to the other loops' directories, and theirs ask it to read a row again,
// their callback posted back after that load (so after the rows it gave).
void App::share_mailboxes() {
  if (!primary()) {
    mailboxes_->follow([me = this](std::optional<store::MailboxRef> ref, std::function<void()> then) {
      App* p = me->primary_;
      p->inbox_->post([p, me, ref, then] {
        if (!p->mailboxes_) return;
        auto back = [me, then] {
          if (then) me->inbox_->post(then);
        };
        ref ? p->mailboxes_->refresh(*ref, back) : p->mailboxes_->refresh(back);
      });
    });
    return;
  }
  mailboxes_->on_load([this](const MailboxDirectory::Rows& rows, const std::vector<store::MailboxRef>& changed) {
    for (auto& w : workers_) {
      App* app = w->app.get();
      auto load = std::make_shared<std::pair<MailboxDirectory::Rows, std::vector<store::MailboxRef>>>(rows, changed);
      app->inbox_->post([app, load] {
        if (app->mailboxes_) app->mailboxes_->take(std::move(load->first), load->second);
      });
    }
  });
}

// The suppression list is in memory once: the primary's gate loads it and passes each load and
// each change on to every other loop's gate, whose sets read the same frozen rows. A load reaches
// a loop before the consumer starts (it is posted first), and a change in the order notified.
void App::share_suppressions() {
  policy::Gate::SuppressionFeed feed;
  feed.loaded = [this](policy::SuppressionSet& list) {
    for (auto& w : workers_) {
      App* app = w->app.get();
      auto mine = std::make_shared<policy::SuppressionSet>(list.share());
      app->inbox_->post([app, mine] {
        if (app->gate_) app->gate_->follow_suppressions(std::move(*mine));
      });
    }
  };
  feed.changed = [this](const policy::SuppressionSet::Change& c) {
    for (auto& w : workers_) {
      App* app = w->app.get();
      app->inbox_->post([app, c] {
        if (app->gate_) app->gate_->follow_suppression_change(c);
      });
    }
  };
  gate_->feed_suppressions(std::move(feed));
}

// The /v1 admin API (docs/admin-api.md) on the admin listener, over the daemon's own parts.
void App::start_api() {
  prober_ = std::make_unique<admin::MailboxProber>(&loop_, resolver_, prober_config());
  admin::ApiDeps deps;
  deps.loop = &loop_;
  deps.pg = pg_;
  deps.secrets = secrets_.get();
  deps.inject = [this](const std::string& job, std::function<void(core::Result<std::string, std::string>)> cb) {
    if (!redis_) return cb(core::Err{std::string("redis is not available")});
    redis_->command({"XADD", cfg_.stream, "*", "job", job}, [cb](const queue::RedisReply& r) {
      if (r.type == queue::RedisReply::Type::String) return cb(r.str);
      cb(core::Err{"XADD: " + r.str});
    });
  };
  deps.test_mailbox = [this](const admin::MailboxProbeRequest& req, std::function<void(admin::MailboxTestResult)> cb) {
    if (req.mailbox.oauth_provider.empty()) return prober_->probe(req, std::move(cb));
    // An OAuth mailbox: a refresh first (step oauth_refresh), then SMTP AUTH and IMAP with its token.
    oauth_->probe_token(req.mailbox, [this, alive = alive_.token(), req = admin::MailboxProbeRequest(req), cb = std::move(cb)](
                                         core::Result<OAuthTokens::ProbeToken, oauth::TokenFailure> t) mutable {
      if (!alive) return;
      if (!t) {
        admin::MailboxTestResult r;
        r.step = "oauth_refresh";
        r.message = oauth_failure_outcome(t.error(), req.mailbox.oauth_provider).detail + " (" +
                    std::string(oauth::to_string(t.error().kind)) + ")";
        return cb(std::move(r));
      }
      req.mailbox.oauth_token = std::move(t->access_token);
      prober_->probe(req, [cb = std::move(cb), rotated = std::move(t->rotated_refresh_token)](admin::MailboxTestResult r) {
        r.rotated_refresh_token = rotated;
        cb(std::move(r));
      });
    });
  };
  deps.oauth_provider_known = [this](const std::string& name) { return cfg_.oauth_provider(name) != nullptr; };
  // The table's trigger tells every daemon (this one too); refreshing here as well makes the
  // change visible to this daemon's next job without waiting for the notification.
  deps.mailboxes_changed = [this] { mailboxes_->refresh(); };
  deps.erase_queued = [this](const std::string& account,
                             std::function<void(core::Result<queue::RedisEraseCounts, std::string>)> cb) {
    if (!eraser_) return cb(core::Err{std::string("redis is not available")});
    eraser_->erase(account, std::move(cb));
  };
  deps.mailbox_live = [this](const std::string& account, const std::string& id,
                             std::function<void(admin::MailboxLive)> cb) {
    const store::Mailbox* m = mailboxes_->find(account, id);
    if (!gate_ || !m) return cb(admin::MailboxLive{});
    gate_->mailbox_status(*m, [cb](const policy::Gate::MailboxStatus& s) {
      cb(admin::MailboxLive{s.sent_today, s.limit_today, s.breaker});
    });
  };
  deps.breaker_reset = [this](const std::string& account, const std::string& id, std::function<void(bool)> cb) {
    if (!gate_) return cb(false);
    gate_->set_state(account, id, store::MailboxChange::ResetBreaker, store::PausedBy::Operator,
                     [this, cb](core::Result<store::ChangeAnswer, std::string> r) {
                       if (!r) core::log_warn("mailbox_resume_failed", {{"error", r.error()}});
                       mailboxes_->refresh();
                       cb(r && *r == store::ChangeAnswer::Done);
                     });
  };
  deps.set_mailbox_state = [this](const std::string& account, const std::string& id, store::MailboxChange change,
                                  store::PausedBy by,
                                  std::function<void(core::Result<store::ChangeAnswer, std::string>)> cb) {
    if (!gate_) return cb(core::Err{std::string("the policy gate is not running")});
    gate_->set_state(account, id, change, by, std::move(cb));
  };
  // Read at each call, so a reload's [[dkim]] accounts apply at once.
  deps.sender_refused = [this](const std::string& account, const std::string& email) -> std::optional<std::string> {
    const Config::DkimKey* k = cfg_.dkim_for_address(email);
    if (!k || k->allows(account)) return std::nullopt;
    return k->domain;
  };
  deps.operator_limits = [this] {
    const policy::PolicyConfig& p = cfg_.policy;
    return admin::OperatorLimits{p.ramp_start, p.ramp_step, p.ramp_max, p.per_hour, p.per_minute, p.min_gap_s};
  };
  deps.allow_plaintext_auth = cfg_.smtp_allow_plaintext_auth;
  admin::add_api_routes(*router_, std::move(deps));
}

void App::on_mailboxes(core::Result<size_t, std::string> r) {
  if (draining_) return;
  if (!r) {
    exit_code_ = 1;  // the directory logged why
    return begin_drain("mailboxes could not be loaded");
  }
  if (!primary()) {  // the primary upgrades the keys before any loop gets a job
    mailboxes_loaded_ = true;
    return maybe_start_consumer();
  }
  core::log_info("started", {{"mailboxes", std::to_string(*r)},
                             {"admin", cfg_.admin_listen},
                             {"stream", cfg_.stream},
                             {"consumer", cfg_.consumer}});
  upgrade_policy_keys();
  if (inbound_) inbound_->start();
}

// Policy state written under the key layout of before mailbox ids were per account is moved to
// its new keys before any job is admitted (so no counter starts again from zero); then the
// consumer starts. A Redis error is retried: consuming first would lose the old state.
void App::upgrade_policy_keys() {
  std::vector<policy::MailboxRef> refs;
  for (const auto& r : mailboxes_->refs()) refs.push_back({r.account, r.id});
  policy::upgrade_mailbox_keys(*redis_, cfg_.policy.redis_prefix, refs,
                               [this, alive = alive_.token()](core::Result<size_t, std::string> r) {
                                 if (!alive || draining_) return;
                                 if (!r) {
                                   core::log_warn("policy_keys_upgrade_failed",
                                                  {{"error", r.error()}, {"note", "retried in a second"}});
                                   upgrade_timer_ = core::TimerHandle(&loop_);
                                   upgrade_timer_->start(1000, [this] { upgrade_policy_keys(); });
                                   return;
                                 }
                                 if (*r) core::log_info("policy_keys_upgraded", {{"renamed", std::to_string(*r)}});
                                 mailboxes_loaded_ = true;
                                 maybe_start_consumer();
                                 maybe_ready();
                               });
}

// Jobs are taken once the mailboxes are loaded (and their keys upgraded) and the suppression list
// has had its first answer: taken sooner, every job of a pre-filled stream is deferred
// (suppression list not loaded) and waits out a retry for nothing. A list that failed to load
// does not hold the consumer: its jobs are deferred until a reload succeeds, as before.
void App::maybe_start_consumer() {
  if (consumer_started_ || draining_ || !mailboxes_loaded_ || !suppressions_settled_) return;
  if (!primary()) {
    consumer_started_ = true;
    primary_->inbox_->post([p = primary_, i = index_] { p->worker_ready(i); });
    return;
  }
  if (workers_ready_ < workers_.size()) return;
  consumer_started_ = true;
  consumer_->start();
}

void App::worker_ready(size_t index) {
  WorkerLoop& w = *workers_[index - 1];
  if (w.ready) return;
  w.ready = true;
  ++workers_ready_;
  maybe_start_consumer();
}

// READY=1 once PostgreSQL has answered (mailboxes loaded), Redis is connected and the listeners
// are bound (they were bound in start()); then STATUS= every few seconds.
void App::maybe_ready() {
  if (!primary()) return;
  if (ready_sent_ || draining_ || !mailboxes_loaded_ || !redis_ || !redis_->connected()) return;
  ready_sent_ = true;
  notifier_->ready("consuming jobs");
  status_timer_ = core::TimerHandle(&loop_);
  status_timer_->start_repeating(5000, [this] {
    size_t inflight = inflight_.size();
    for (const auto& w : workers_) inflight += w->inflight;
    notifier_->status(running_status(pool_ ? pool_->open_sessions() : 0, inflight,
                                     lag_ ? lag_->oldest_pending_age_s() : 0.0));
  });
}

namespace {
core::Gauge& loop_inflight(const std::string& worker) {
  static auto& f = core::Registry::global().gauge("deliverd_worker_inflight",
                                                  "Jobs in hand on each event loop ([daemon] workers)", {"worker"});
  return f.with({worker});
}
}  // namespace

// The primary reads every job; one whose mailbox another loop owns goes there. A job that cannot
// be read (no payload, invalid JSON) stays here, where its Delivery dead-letters it.
void App::on_entry(queue::StreamEntry entry) {
  std::optional<queue::Job> job;
  if (!workers_.empty() && !draining_) {
    size_t loop = loop_of(entry, job);
    if (loop != 0 && !workers_[loop - 1]->stopped) return hand_over(loop, std::move(entry), std::move(job));
  }
  start_delivery(std::move(entry), std::move(job));
}

// A retry promoted from the retry set carries its text deflated (`job_z`, queue/scheduler.h): it
// is inflated here, once, and handed on as a plain `job` field, so that it finds its mailbox's
// loop like its first attempt did. An entry its Delivery dead-letters unread is not read here.
size_t App::loop_of(queue::StreamEntry& entry, std::optional<queue::Job>& job) {
  if (entry.deliveries > kMaxDeliveries || entry.bytes > max_job_bytes()) return 0;
  const std::string* payload = entry.field("job");
  if (!payload) {
    auto packed = std::find_if(entry.fields.begin(), entry.fields.end(), [](const auto& f) { return f.first == "job_z"; });
    if (packed == entry.fields.end()) return 0;
    auto text = core::inflate_raw(packed->second, max_job_bytes());
    if (!text) return 0;  // dead-lettered here, with the reason
    *packed = {"job", std::move(text).value()};
    payload = &packed->second;
  }
  auto parsed = queue::parse_job(*payload);  // as the Delivery would: a job it refuses stays here
  if (!parsed) return 0;
  job = std::move(parsed).value();
  return loop_of(job->account, job->mailbox, workers_.size() + 1);
}

// A loop that has just stopped (its inbox closed, its stop not yet heard of) refuses the job:
// it runs here then, as it would on any daemon of the fleet.
void App::hand_over(size_t loop, queue::StreamEntry entry, std::optional<queue::Job> job) {
  WorkerLoop& w = *workers_[loop - 1];
  App* app = w.app.get();
  auto e = std::make_shared<std::pair<queue::StreamEntry, std::optional<queue::Job>>>(std::move(entry), std::move(job));
  if (!app->inbox_->post([app, e] { app->start_delivery(std::move(e->first), std::move(e->second)); }))
    return start_delivery(std::move(e->first), std::move(e->second));
  ++w.inflight;
  loop_inflight(app->worker_name_).set(static_cast<double>(w.inflight));
}

void App::start_delivery(queue::StreamEntry entry, std::optional<queue::Job> job) {
  auto* d = new Delivery(static_cast<DeliveryServices&>(*this), std::move(entry), std::move(job));
  inflight_[d->entry_id()] = d;
  if (primary()) loop_inflight(worker_name_).set(static_cast<double>(inflight_.size()));
  d->start();
}

void App::finished(Delivery* d) {
  std::string id = d->entry_id();
  inflight_.erase(id);
  delete d;
  if (primary()) {
    loop_inflight(worker_name_).set(static_cast<double>(inflight_.size()));
    consumer_->done(id);
  } else {
    primary_->inbox_->post([p = primary_, i = index_, id] { p->worker_finished(i, id); });
  }
  if (draining_) maybe_finish_drain();
}

void App::worker_finished(size_t index, const std::string& entry_id) {
  WorkerLoop& w = *workers_[index - 1];
  if (w.inflight) --w.inflight;
  loop_inflight(w.app->worker_name_).set(static_cast<double>(w.inflight));
  if (consumer_) consumer_->done(entry_id);
}

// A loop that stops while the primary runs (its PostgreSQL went away, say) stops the daemon:
// its mailboxes would otherwise wait for ever. Its jobs in hand stay pending for the restart.
void App::worker_stopped(size_t index, int exit_code) {
  WorkerLoop& w = *workers_[index - 1];
  w.stopped = true;
  core::log_info("worker_stopped", {{"worker", w.app->worker_name_}, {"exit_code", std::to_string(exit_code)}});
  if (exit_code && !exit_code_) exit_code_ = exit_code;
  if (!draining_) return begin_drain("a worker loop stopped");
  maybe_finish_drain();
}

void App::readiness(std::function<void(std::vector<std::pair<std::string, bool>>)> done) {
  struct Probe {
    std::function<void(std::vector<std::pair<std::string, bool>>)> done;
    bool redis = false, postgres = false, consumer = false, policy = false;
    int waiting = 2;
    void complete() {
      if (--waiting == 0)
        done({{"redis", redis}, {"redis_consumer", consumer}, {"postgres", postgres}, {"policy", policy}});
    }
  };
  auto p = std::make_shared<Probe>();
  p->done = std::move(done);
  // The blocking reads' own connection: up and the group known (false while it reconnects).
  p->consumer = consumer_ && consumer_->connected();
  p->policy = gate_ && gate_->ready();  // the suppression list is in memory
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
  if (signum == SIGHUP) return self->reload();
  self->begin_drain(signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

// SIGHUP: re-read the file and apply what can change without dropping a session or a job. A file
// that fails validation is refused and the running configuration stays as it was.
void App::reload() {
  if (draining_) return;
  if (notifier_) notifier_->reloading();
  auto refuse = [this](const std::string& error) {
    core::log_error("reload_refused", {{"error", error}, {"note", "still running with the previous configuration"}});
    if (notifier_) notifier_->ready("configuration reload refused; previous configuration kept");
  };
  auto loaded = load_config(cfg_.path);
  if (!loaded) return refuse(loaded.error());
  Config next = std::move(loaded).value();
  if (auto v = validate_config(next); !v) return refuse(v.error());
  auto signers = load_dkim_signers(next);
  if (!signers) return refuse(signers.error());

  // Connections, listeners, names and keys are bound at start: a change there needs a restart.
  std::vector<std::string> fixed;
  auto keep = [&fixed](auto& now, const auto& was, const char* key) {
    if (now == was) return;
    fixed.push_back(key);
    now = was;
  };
  keep(next.redis_url, cfg_.redis_url, "[redis] url");
  keep(next.redis_password_file, cfg_.redis_password_file, "[redis] password_file");
  keep(next.redis_ca_file, cfg_.redis_ca_file, "[redis] ca_file");
  keep(next.redis_sentinels, cfg_.redis_sentinels, "[redis] sentinels");
  keep(next.redis_sentinel_master, cfg_.redis_sentinel_master, "[redis] sentinel_master");
  keep(next.redis_sentinel_username, cfg_.redis_sentinel_username, "[redis] sentinel_username");
  keep(next.redis_sentinel_password_file, cfg_.redis_sentinel_password_file, "[redis] sentinel_password_file");
  keep(next.stream, cfg_.stream, "[redis] stream");
  keep(next.group, cfg_.group, "[redis] group");
  keep(next.consumer, cfg_.consumer, "[redis] consumer");
  keep(next.results_stream, cfg_.results_stream, "[redis] results_stream");
  keep(next.dead_stream, cfg_.dead_stream, "[redis] dead_stream");
  keep(next.retry_set, cfg_.retry_set, "[redis] retry_set");
  keep(next.done_prefix, cfg_.done_prefix, "[redis] done_prefix");
  keep(next.pg_conninfo, cfg_.pg_conninfo, "[postgres] conninfo");
  keep(next.admin_listen, cfg_.admin_listen, "[admin] listen");
  keep(next.secret_key_file, cfg_.secret_key_file, "[security] secret_key_file");
  keep(next.old_secret_key_files, cfg_.old_secret_key_files, "[security] old_secret_key_files");
  keep(next.unsubscribe_old_key_files, cfg_.unsubscribe_old_key_files, "[unsubscribe] old_key_files");
  keep(next.trusted_proxies, cfg_.trusted_proxies, "[admin] trusted_proxies");
  keep(next.smtp_allow_plaintext_auth, cfg_.smtp_allow_plaintext_auth, "[smtp] allow_plaintext_auth");
  keep(next.unsubscribe_listen, cfg_.unsubscribe_listen, "[unsubscribe] listen");
  keep(next.unsubscribe_key_file, cfg_.unsubscribe_key_file, "[unsubscribe] key_file");
  keep(next.dns_servers, cfg_.dns_servers, "[dns] servers");
  keep(next.hostname, cfg_.hostname, "[daemon] hostname");
  keep(next.workers, cfg_.workers, "[daemon] workers");
  for (const auto& key : fixed) core::log_warn("reload_needs_restart", {{"key", key}, {"note", "kept its old value"}});

  apply_logging(next);
  // Each loop loads its own DKIM keys: nothing of one loop's builder is shared with another's.
  for (auto& w : workers_) {
    App* app = w->app.get();
    app->inbox_->post([app, next] {
      auto keys = load_dkim_signers(next);
      if (!keys) return core::log_error("reload_refused", {{"worker", app->worker_name_}, {"error", keys.error()}});
      app->apply_config(next, std::move(keys).value());
      core::log_info("worker_reloaded", {{"worker", app->worker_name_}});
    });
  }
  apply_config(std::move(next), std::move(signers).value());
  core::log_info("reloaded", {{"path", cfg_.path}, {"max_inflight", std::to_string(cfg_.max_inflight)}});
  if (notifier_) notifier_->ready("configuration reloaded");
}

// What a reload changes, on this loop's parts (the primary's have more: consumer, trimmer, …).
void App::apply_config(Config next, DomainKeys signers) {
  *policy_ = dns::AddressPolicy::create(next.allow_private_targets).value();
  resolver_->set_policy(policy_.get());
  tls_ = core::TlsContext::client({next.smtp_ca_file}).value();
  if (oauth_) oauth_->reconfigure(load_oauth_providers(next).value(), tls_);
  if (inbound_) inbound_->reconfigure(next.inbound, tls_);
  retry_policy_.schedule_ms = next.retry_schedule_ms;
  retry_policy_.max_age_ms = next.retry_max_age_ms;
  compliance_->builder->reconfigure(message_builder_config(next), std::move(signers));
  if (gate_) {
    gate_->reconfigure(next.policy);
    gate_->reload_zones();  // off the loop; the table in use serves until the new one is in
  }
  if (consumer_) {
    consumer_->set_max_inflight(static_cast<size_t>(next.max_inflight));
    consumer_->set_max_inflight_bytes(static_cast<size_t>(next.max_inflight_bytes));
  }
  if (trimmer_) trimmer_->set_streams(trimmed_streams(next));
  if (events_retention_) events_retention_->set_days(next.events_retention_days);
  cfg_ = std::move(next);
  session_config_ = session_config(cfg_);
  if (pool_) pool_->reconfigure(pool_config());
  if (mx_) mx_->reconfigure(mx_config());
  if (mta_sts_) mta_sts_->set_tls(tls_);
  if (mx_ && mta_sts_) mx_->set_domain_policy_lookup(cfg_.smtp_mta_sts ? mta_sts_->lookup() : nullptr);
  if (mx_ && tls_reports_) apply_tls_rpt();
  if (prober_) prober_->reconfigure(prober_config());
  if (primary()) mailboxes_->refresh();  // notifications make this unnecessary, but an operator's reload is a fair moment to be sure
}

void App::begin_drain(const char* why) {
  if (draining_) return;
  draining_ = true;
  core::log_info("draining", {{"why", why}, {"inflight", std::to_string(inflight_.size())}});
  status_timer_.reset();
  if (notifier_) notifier_->stopping();
  if (consumer_) consumer_->stop();
  if (inbound_) inbound_->stop();  // another daemon takes the watches over now, not after the lease
  for (auto& w : workers_) {
    App* app = w->app.get();
    app->inbox_->post([app] { app->begin_drain("the primary loop drains"); });
  }
  drain_timer_ = core::TimerHandle(&loop_);
  drain_timer_->start(static_cast<uint64_t>(cfg_.shutdown_grace_s) * 1000, [this] {
    // Past the bound: end what is still running. Aborted sessions end deferred and are
    // published and acked like any other outcome.
    core::log_warn("drain_timeout", {{"inflight", std::to_string(inflight_.size())}});
    // abort() may finish a delivery at once, which erases it from inflight_.
    std::vector<Delivery*> running;
    for (auto& [id, d] : inflight_) running.push_back(d);
    for (auto* d : running)
      if (inflight_.count(d->entry_id())) d->abort();
  });
  maybe_finish_drain();
}

void App::maybe_finish_drain() {
  if (!inflight_.empty() || stopped_) return;
  for (const auto& w : workers_)
    if (w->started && !w->stopped) return;  // each loop writes its own last rows first
  stopped_ = true;
  // The last outcomes' rows may still be on their way to PostgreSQL, and the last seconds of
  // TLS-RPT counts to Redis: a short, bounded wait for both.
  drain_timer_ = core::TimerHandle(&loop_);
  drain_timer_->start(5000, [this] { shutdown(); });
  auto waiting = std::make_shared<int>(1);  // 1: this function's own share, so no early end
  auto one_done = [this, waiting] {
    if (--*waiting == 0) shutdown();
  };
  if (events_ && !events_->idle()) {
    ++*waiting;
    events_->when_idle(one_done);
  }
  if (tls_reports_ && cfg_.smtp_tls_rpt) {
    ++*waiting;
    tls_reports_->flush([one_done](bool) { one_done(); });
  }
  one_done();
}

void App::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  drain_timer_.reset();
  status_timer_.reset();
  log_flush_timer_.reset();
  loop_lag_.reset();
  upgrade_timer_.reset();
  if (notifier_) notifier_->close();
  notifier_ = nullptr;
  if (consumer_) consumer_->close();
  consumer_ = nullptr;
  if (http_) http_->close();
  http_ = nullptr;
  if (compliance_ && compliance_->http) compliance_->http->close();
  if (compliance_) compliance_->http = nullptr;
  scheduler_.reset();
  lag_.reset();
  trimmer_.reset();
  write_health_.reset();
  tls_reports_.reset();  // before MX delivery, which it sends through and which holds its sink
  mx_.reset();
  mta_sts_.reset();  // after MX delivery, which asks it; before the resolver and Redis it uses
  prober_.reset();
  inbound_.reset();  // uses the tokens, the gate, Redis and PostgreSQL
  oauth_.reset();  // before the resolver, Redis and PostgreSQL it uses
  if (pool_) pool_->shutdown();  // idle pooled connections would keep the loop running
  if (resolver_) resolver_->close();
  resolver_ = nullptr;
  if (tlsa_) tlsa_->close();
  tlsa_ = nullptr;
  if (gate_) gate_->close();
  if (pg_policy_) pg_policy_->close();
  pg_policy_ = nullptr;
  mailboxes_.reset();  // before their connection goes
  events_retention_.reset();
  events_.reset();
  if (pg_) pg_->close();
  pg_ = nullptr;
  if (redis_) redis_->close();
  redis_ = nullptr;
  if (inbox_) inbox_->close();
  if (primary())
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
  for (auto& w : workers_)
    if (w->started) uv_thread_join(&w->thread);
  core::log_info("stopped", {{"exit_code", std::to_string(exit_code_)}});
  core::flush_log_suppressed(true);
  core::drain_log(2000);
  return exit_code_;
}

}  // namespace deliverd::daemon
