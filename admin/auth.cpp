#include "admin/auth.h"

#include "core/ascii.h"
#include "core/log.h"
#include "core/metrics.h"
#include "store/api_keys.h"

namespace deliverd::admin {
namespace {

core::Family<core::Counter>& refused_total() {
  static auto& f = core::Registry::global().counter("deliverd_admin_auth_refused_total",
                                                    "Admin API requests refused authentication, by reason", {"reason"});
  return f;
}

// A dummy hash so unknown prefixes cost the same comparison as known ones.
const std::string& dummy_hash() {
  static const std::string h(32, '\0');
  return h;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Authenticator::Authenticator(uv_loop_t* loop, store::PgConnection* pg, AuthConfig config)
    : loop_(loop),
      pg_(pg),
      config_(config),
      by_ip_(config.failure_burst, config.failure_refill_per_s, config.max_tracked),
      by_ip_prefix_(config.prefix_failure_burst, config.failure_refill_per_s, config.max_tracked) {
  for (const char* r : {"missing", "malformed", "unknown_key", "wrong_secret", "revoked", "expired", "throttled"})
    refused_total().with({r});
}

void Authenticator::refuse(const std::string& ip, const std::string& prefix, std::string_view reason, int status,
                           std::string_view code, std::string_view message, const Callback& cb) {
  uint64_t now = uv_now(loop_);
  by_ip_.record_failure(ip, now);
  if (!prefix.empty()) by_ip_prefix_.record_failure(ip + " " + prefix, now);
  refused_total().with({std::string(reason)}).inc();
  Response r = json_error(status, code, message);
  if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"deliverd\"");
  cb(std::move(r));
}

void Authenticator::authenticate(const Request& req, Callback cb) {
  uint64_t now = uv_now(loop_);
  const std::string ip = limiter_key_for_address(req.peer_ip);
  auto throttled = [&](int after) {
    refused_total().with({"throttled"}).inc();
    Response r = json_error(429, "too_many_attempts", "too many failed authentication attempts, retry later");
    r.headers.emplace_back("Retry-After", std::to_string(after));
    cb(std::move(r));
  };
  if (int after = by_ip_.retry_after_s(ip, now)) return throttled(after);

  const std::string* h = req.header("Authorization");
  if (!h) return refuse(ip, "", "missing", 401, "unauthorized", "an Authorization: Bearer key is required", cb);
  std::string_view v = trim(*h);
  if (v.size() < 7 || !core::istarts_with(v, "Bearer "))
    return refuse(ip, "", "malformed", 401, "unauthorized", "the Authorization header must be 'Bearer <key>'", cb);
  std::string token(trim(v.substr(7)));
  auto prefix = store::api_key_prefix(token);
  if (!prefix) return refuse(ip, "", "malformed", 401, "unauthorized", "the key is not a deliverd API key", cb);
  if (int after = by_ip_prefix_.retry_after_s(ip + " " + *prefix, now)) return throttled(after);

  store::find_api_key_by_prefix(
      *pg_, *prefix,
      [this, alive = alive_.token(), ip, token, p = *prefix, cb](core::Result<std::optional<store::ApiKey>, std::string> r) {
        if (!alive) return;
        if (!r) {
          core::log_error("admin_auth_lookup_failed", {{"error", r.error()}});
          return cb(json_error(503, "unavailable", "the key store is unavailable"));
        }
        const std::optional<store::ApiKey>& key = *r;
        bool match = store::api_key_matches(token, key ? key->token_sha256 : dummy_hash());
        if (!key) return refuse(ip, p, "unknown_key", 401, "unauthorized", "invalid API key", cb);
        if (!match) return refuse(ip, p, "wrong_secret", 401, "unauthorized", "invalid API key", cb);
        if (key->revoked()) return refuse(ip, p, "revoked", 401, "key_revoked", "this API key was revoked", cb);
        if (key->expired) return refuse(ip, p, "expired", 401, "key_expired", "this API key has expired", cb);
        store::touch_api_key(*pg_, key->id);
        cb(principal_for(*key));
      });
}

}  // namespace deliverd::admin
