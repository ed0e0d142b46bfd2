#include "oauth/token_manager.h"

#include <algorithm>
#include <chrono>

#include "core/log.h"
#include "core/metrics.h"
#include "core/percent.h"
#include "queue/lease.h"
#include "queue/lua_script.h"
#include "queue/redis_client.h"

namespace deliverd::oauth {

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

core::Family<core::Counter>& refresh_counter() {
  static auto& f = core::Registry::global().counter(
      "deliverd_oauth_refreshes_total", "OAuth access-token refreshes at the token endpoint, by provider and result",
      {"provider", "result"});
  return f;
}
core::HistogramFamily& refresh_latency() {
  static auto& f = core::Registry::global().histogram(
      "deliverd_oauth_refresh_seconds", "Time from the refresh request to the token endpoint's answer",
      {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}, {"provider"});
  return f;
}
core::Family<core::Gauge>& expiring_gauge() {
  static auto& f = core::Registry::global().gauge(
      "deliverd_oauth_tokens_expiring", "Access tokens held by this daemon that expire within 10 minutes");
  return f;
}

// The metric's result label: the reason without its "oauth_" prefix.
std::string_view result_label(FailureKind k) { return to_string(k).substr(6); }

}  // namespace

int64_t refresh_margin_ms(int64_t lifetime_ms) { return std::clamp<int64_t>(lifetime_ms / 10, 1000, 300000); }

struct TokenManager::Flight {
  MailboxGrant grant;
  std::vector<Callback> waiters;
  core::TimerHandle timer;
  bool lease = false;
  int64_t wait_until_ms = 0;  // a daemon waiting on another's lease gives up and tries itself then
  core::HttpsClient::RequestId request = 0;
  bool requesting = false;
};

TokenManager::TokenManager(uv_loop_t* loop, core::HttpsClient* https, queue::RedisClient* redis,
                           RefreshTokenStore* store, TokenManagerOptions opts)
    : loop_(loop), https_(https), redis_(redis), store_(store), opts_(std::move(opts)),
      alive_(std::make_shared<bool>(true)) {}

TokenManager::~TokenManager() {
  *alive_ = false;
  for (auto& [m, f] : flights_)
    if (f->requesting) https_->cancel(f->request);
}

void TokenManager::set_providers(std::vector<Provider> providers) { providers_ = std::move(providers); }

const Provider* TokenManager::provider(const std::string& name) const {
  for (const auto& p : providers_)
    if (p.name == name) return &p;
  return nullptr;
}

std::string TokenManager::key(const std::string& mailbox, std::string_view what) const {
  return opts_.redis_prefix + "oauth:" + mailbox + ":" + std::string(what);
}

bool TokenManager::fresh(const AccessToken& t) const {
  return !t.token.empty() && wall_ms() + refresh_margin_ms(t.expires_ms - t.issued_ms) < t.expires_ms;
}

size_t TokenManager::expiring_within(int64_t ms) const {
  int64_t until = wall_ms() + ms;
  return static_cast<size_t>(std::count_if(tokens_.begin(), tokens_.end(), [&](const auto& kv) {
    return kv.second.expires_ms <= until;
  }));
}

void TokenManager::get(const MailboxGrant& grant, Callback cb) {
  if (auto it = tokens_.find(grant.mailbox); it != tokens_.end() && fresh(it->second)) return cb(it->second);
  if (auto h = held_.find(grant.mailbox); h != held_.end()) {
    if (wall_ms() < h->second.until_ms) return cb(core::Err(h->second.failure));
    held_.erase(h);
  }
  auto& f = flights_[grant.mailbox];
  bool started = f != nullptr;
  if (!f) f = std::make_unique<Flight>();
  // The newest tokens the caller knows win over an older copy (another daemon may have rotated).
  if (!started) f->grant = grant;
  f->waiters.push_back(std::move(cb));
  if (!started) start_flight(grant.mailbox);
}

void TokenManager::invalidate(const std::string& mailbox, const std::string& token) {
  auto it = tokens_.find(mailbox);
  if (it != tokens_.end() && it->second.token == token) tokens_.erase(it);
  if (redis_ && opts_.open) {
    // The shared copy goes too, but only if it is the token that was refused.
    redis_->command({"GET", key(mailbox, "token")}, [this, alive = alive_, mailbox, token](const queue::RedisReply& r) {
      if (!*alive || r.type != queue::RedisReply::Type::String) return;
      auto plain = opts_.open(r.str, mailbox + "/oauth-access");
      if (plain && plain->substr(0, plain->find('\n')) == token) redis_->command({"DEL", key(mailbox, "token")}, [](auto&) {});
    });
  }
}

void TokenManager::forget(const std::string& mailbox) {
  tokens_.erase(mailbox);
  held_.erase(mailbox);
}

void TokenManager::start_flight(const std::string& mailbox) {
  Flight& f = *flights_[mailbox];
  f.timer = core::TimerHandle(loop_);
  if (!provider(f.grant.provider)) {
    return finish(mailbox, core::Err(TokenFailure{FailureKind::NoProvider,
                                                  "provider '" + f.grant.provider + "' is not in the config"}));
  }
  if (!redis_ || !opts_.seal || !opts_.open) return load_and_refresh(mailbox);
  f.wait_until_ms = wall_ms() + opts_.lease_ms + 5000;
  look_shared(mailbox);
}

// Another daemon may have shared a fresh token already.
void TokenManager::look_shared(const std::string& mailbox) {
  redis_->command({"GET", key(mailbox, "token")}, [this, alive = alive_, mailbox](const queue::RedisReply& r) {
    if (!*alive || !flights_.count(mailbox)) return;
    if (r.type == queue::RedisReply::Type::String) {
      auto plain = opts_.open(r.str, mailbox + "/oauth-access");
      if (plain) {
        // "token\nissued_ms\nexpires_ms"
        const std::string& s = *plain;
        size_t a = s.find('\n'), b = a == std::string::npos ? a : s.find('\n', a + 1);
        if (b != std::string::npos) {
          AccessToken t;
          t.token = s.substr(0, a);
          try {
            t.issued_ms = std::stoll(s.substr(a + 1, b - a - 1));
            t.expires_ms = std::stoll(s.substr(b + 1));
          } catch (...) {
            t.token.clear();
          }
          if (fresh(t)) {
            tokens_[mailbox] = t;
            return finish(mailbox, t);
          }
        }
      } else {
        core::log_warn("oauth_shared_token_unreadable", {{"mailbox", mailbox}, {"error", plain.error()}});
      }
    }
    try_lease(mailbox);
  });
}

void TokenManager::try_lease(const std::string& mailbox) {
  redis_->eval(queue::kTakeLease, {"1", key(mailbox, "lease"), opts_.owner, std::to_string(opts_.lease_ms)},
                  [this, alive = alive_, mailbox](const queue::RedisReply& r) {
                    if (!*alive || !flights_.count(mailbox)) return;
                    Flight& f = *flights_[mailbox];
                    if (r.type == queue::RedisReply::Type::Integer && r.integer == 1) {
                      f.lease = true;
                      return load_and_refresh(mailbox);
                    }
                    if (r.is_error() && wall_ms() >= f.wait_until_ms) {
                      // Redis is away: refreshing alone beats sending nothing.
                      return load_and_refresh(mailbox);
                    }
                    // Someone else refreshes: wait for the token it shares (or for its lease to go).
                    f.timer->start(static_cast<uint64_t>(opts_.poll_ms), [this, mailbox] { look_shared(mailbox); });
                  });
}

// The refresh token is read only now, under the lease: the one another daemon rotated to a
// moment ago is the one to use.
void TokenManager::load_and_refresh(const std::string& mailbox) {
  Flight& f = *flights_[mailbox];
  if (!f.grant.refresh_token.empty() || !store_) return refresh(mailbox, !f.grant.pending_refresh_token.empty(), false);
  store_->load(mailbox, [this, alive = alive_, mailbox](bool ok, MailboxGrant g) {
    if (!*alive || !flights_.count(mailbox)) return;
    Flight& f = *flights_[mailbox];
    if (!ok)
      return finish(mailbox, core::Err(TokenFailure{FailureKind::StoreFailed, "the mailbox's refresh token could not be read"}));
    f.grant.refresh_token = std::move(g.refresh_token);
    f.grant.pending_refresh_token = std::move(g.pending_refresh_token);
    refresh(mailbox, !f.grant.pending_refresh_token.empty(), false);
  });
}

// One refresh_token grant at the provider's endpoint (RFC 6749 §6), its answer parsed and any
// failure named: what a refresh under the lease and the connection test's one-off both send.
core::HttpsClient::RequestId TokenManager::exchange(const Provider& p, const std::string& refresh_token,
                                                    ExchangeCallback cb) {
  std::string body = "grant_type=refresh_token&refresh_token=" + core::percent_encode(refresh_token) +
                     "&client_id=" + core::percent_encode(p.client_id);
  if (!p.client_secret.empty()) body += "&client_secret=" + core::percent_encode(p.client_secret);
  if (!p.scope.empty()) body += "&scope=" + core::percent_encode(p.scope);
  core::HttpsRequest req{"POST", p.token_url,
                         {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}},
                         std::move(body)};
  return https_->request(std::move(req), [cb = std::move(cb)](core::Result<core::HttpsResponse, core::HttpsError> r) {
    if (!r) {
      const auto& e = r.error();
      return cb(core::Err(TokenFailure{FailureKind::Unavailable, std::string(core::to_string(e.kind)) + " in " +
                                                                     std::string(core::to_string(e.phase)) + ": " +
                                                                     e.detail}));
    }
    auto answer = parse_token_answer(r->status, r->body);
    if (answer) return cb(std::move(answer).value());
    const TokenError& e = answer.error();
    FailureKind kind = e.kind == TokenErrorKind::Revoked          ? FailureKind::Revoked
                       : e.kind == TokenErrorKind::ClientRejected ? FailureKind::ClientRejected
                       : e.kind == TokenErrorKind::Malformed      ? FailureKind::BadAnswer
                                                                  : FailureKind::Unavailable;
    cb(core::Err(TokenFailure{kind, e.code + (e.description.empty() ? "" : ": " + e.description)}));
  });
}

void TokenManager::request_grant(const std::string& provider_name, const std::string& refresh_token,
                                 ExchangeCallback cb) {
  const Provider* p = provider(provider_name);
  if (!p) return cb(core::Err(TokenFailure{FailureKind::NoProvider, "provider '" + provider_name + "' is not in the config"}));
  uint64_t t0 = uv_now(loop_);
  exchange(*p, refresh_token, [this, alive = alive_, t0, provider_name, cb = std::move(cb)](core::Result<TokenGrant, TokenFailure> r) {
    if (!*alive) return;
    count(provider_name, r ? "ok" : result_label(r.error().kind), t0);
    cb(std::move(r));
  });
}

void TokenManager::refresh(const std::string& mailbox, bool with_pending, bool reloaded) {
  Flight& f = *flights_[mailbox];
  const Provider* p = provider(f.grant.provider);
  std::string used = with_pending ? f.grant.pending_refresh_token : f.grant.refresh_token;
  if (used.empty()) {
    return finish(mailbox, core::Err(TokenFailure{FailureKind::Revoked, "the mailbox has no refresh token"}));
  }
  uint64_t t0 = uv_now(loop_);
  std::string provider_name = p->name;
  f.requesting = true;
  f.request = exchange(*p, used, [this, alive = alive_, mailbox, used, with_pending, reloaded, t0,
                                  provider_name](core::Result<TokenGrant, TokenFailure> r) {
    if (!*alive || !flights_.count(mailbox)) return;
    Flight& f = *flights_[mailbox];
    f.requesting = false;
    if (r) {
      count(provider_name, "ok", t0);
      return on_grant(mailbox, used, with_pending, std::move(r).value(), t0);
    }
    const TokenFailure& e = r.error();
    if (e.kind == FailureKind::Revoked) {
      if (with_pending) {
        // The pending token never took: forget it and try the current one.
        count(provider_name, "pending_refused", t0);
        return store_->drop_pending(mailbox, [this, alive = alive_, mailbox](bool) {
          if (!*alive || !flights_.count(mailbox)) return;
          flights_[mailbox]->grant.pending_refresh_token.clear();
          refresh(mailbox, false, false);
        });
      }
      if (!reloaded) {
        // Another daemon may have rotated the token since this one read the mailbox.
        return store_->load(mailbox, [this, alive = alive_, mailbox, used, e, provider_name, t0](bool ok, MailboxGrant g) {
          if (!*alive || !flights_.count(mailbox)) return;
          Flight& f = *flights_[mailbox];
          if (ok && ((!g.refresh_token.empty() && g.refresh_token != used) || !g.pending_refresh_token.empty())) {
            g.provider = f.grant.provider;
            f.grant = g;
            return refresh(mailbox, !g.pending_refresh_token.empty() && g.pending_refresh_token != used, true);
          }
          count(provider_name, "revoked", t0);
          finish(mailbox, core::Err(e));
        });
      }
    }
    count(provider_name, result_label(e.kind), t0);
    finish(mailbox, core::Err(e));
  });
}

void TokenManager::on_grant(const std::string& mailbox, const std::string& used, bool used_pending, TokenGrant g,
                            uint64_t t0) {
  (void)t0;
  ++refreshes_;
  AccessToken t;
  t.token = std::move(g.access_token);
  t.issued_ms = wall_ms();
  t.expires_ms = t.issued_ms + g.expires_in_s * 1000;
  bool rotated = !g.refresh_token.empty() && g.refresh_token != used;
  auto hand_out = [this, mailbox, t, used_pending, rotated]() {
    tokens_[mailbox] = t;
    publish(mailbox, t);
    if (store_) store_->record(mailbox, {wall_ms(), "ok", t.expires_ms});
    finish(mailbox, t);
    // The pending token has now worked (or was just written): it becomes the current one.
    if (store_ && (used_pending || rotated)) store_->promote_pending(mailbox, [](bool) {});
  };
  if (!rotated) return hand_out();
  // The new refresh token is durable before its access token is used.
  Flight& f = *flights_[mailbox];
  f.grant.pending_refresh_token = g.refresh_token;
  store_->save_pending(mailbox, g.refresh_token, [this, alive = alive_, mailbox, hand_out, rt = g.refresh_token](bool ok) {
    if (!*alive || !flights_.count(mailbox)) return;
    if (!ok)
      return finish(mailbox, core::Err(TokenFailure{FailureKind::StoreFailed,
                                                    "the rotated refresh token could not be saved; not using it"}));
    Flight& f = *flights_[mailbox];
    f.grant.refresh_token = rt;
    f.grant.pending_refresh_token.clear();
    hand_out();
  });
}

void TokenManager::publish(const std::string& mailbox, const AccessToken& t) {
  if (!redis_ || !opts_.seal) return;
  int64_t ttl = t.expires_ms - wall_ms();
  if (ttl <= 0) return;
  std::string plain = t.token + "\n" + std::to_string(t.issued_ms) + "\n" + std::to_string(t.expires_ms);
  redis_->command({"SET", key(mailbox, "token"), opts_.seal(plain, mailbox + "/oauth-access"), "PX", std::to_string(ttl)},
                  [](const queue::RedisReply&) {});
}

void TokenManager::release_lease(const std::string& mailbox) {
  if (!redis_) return;
  redis_->eval(queue::kReleaseLease, {"1", key(mailbox, "lease"), opts_.owner}, [](const queue::RedisReply&) {});
}

void TokenManager::finish(const std::string& mailbox, core::Result<AccessToken, TokenFailure> r) {
  auto it = flights_.find(mailbox);
  if (it == flights_.end()) return;
  std::unique_ptr<Flight> f = std::move(it->second);
  flights_.erase(it);
  if (f->lease) release_lease(mailbox);
  if (!r && store_) store_->record(mailbox, {wall_ms(), std::string(to_string(r.error().kind)), 0});
  if (!r && (opts_.failure_hold_ms > 0 || is_permanent(r.error().kind)))
    held_[mailbox] = {r.error(), is_permanent(r.error().kind) ? INT64_MAX : wall_ms() + opts_.failure_hold_ms};
  if (!r)
    core::log_warn("oauth_refresh_failed", {{"mailbox", mailbox},
                             {"provider", f->grant.provider},
                             {"reason", std::string(to_string(r.error().kind))},
                             {"detail", r.error().detail}});
  expiring_gauge().get().set(static_cast<double>(expiring_within(600000)));
  for (auto& cb : f->waiters) cb(r);
}

void TokenManager::count(const std::string& provider, std::string_view result, uint64_t t0) {
  refresh_counter().with({provider, std::string(result)}).inc();
  refresh_latency().with({provider}).observe(static_cast<double>(uv_now(loop_) - t0) / 1000.0);
}

}  // namespace deliverd::oauth
