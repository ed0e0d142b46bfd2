#include "daemon/oauth_tokens.h"

#include "core/log.h"
#include "dns/resolver_lookup.h"
#include "store/oauth_grants.h"
#include "store/pg_connection.h"
#include "store/secret_box.h"

namespace deliverd::daemon {

// oauth::RefreshTokenStore over store/oauth_grants.h: the manager's mailbox key is
// store::MailboxRef::key(), read back here into (account, id).
class OAuthTokens::GrantStore final : public oauth::RefreshTokenStore {
 public:
  GrantStore(store::PgConnection& pg, const store::SecretBox& box) : pg_(pg), box_(box) {}

  void save_pending(const std::string& mailbox, const std::string& token, std::function<void(bool)> cb) override {
    auto ref = parse(mailbox);
    if (!ref) return cb(false);
    store::save_oauth_pending(pg_, box_, ref->account, ref->id, token, std::move(cb));
  }
  void promote_pending(const std::string& mailbox, std::function<void(bool)> cb) override {
    auto ref = parse(mailbox);
    if (!ref) return cb(false);
    store::promote_oauth_pending(pg_, ref->account, ref->id, std::move(cb));
  }
  void drop_pending(const std::string& mailbox, std::function<void(bool)> cb) override {
    auto ref = parse(mailbox);
    if (!ref) return cb(false);
    store::drop_oauth_pending(pg_, ref->account, ref->id, std::move(cb));
  }
  void load(const std::string& mailbox, std::function<void(bool, oauth::MailboxGrant)> cb) override {
    auto ref = parse(mailbox);
    if (!ref) return cb(false, {});
    store::load_oauth_grant(pg_, box_, ref->account, ref->id,
                            [mailbox, cb = std::move(cb)](core::Result<store::OAuthGrant, std::string> g) {
                              if (!g) {
                                core::log_warn("oauth_grant_unreadable", {{"mailbox", mailbox}, {"error", g.error()}});
                                return cb(false, {});
                              }
                              cb(true, {mailbox, g->provider, g->refresh_token, g->pending_refresh_token});
                            });
  }
  void record(const std::string& mailbox, const oauth::RefreshRecord& r) override {
    if (auto ref = parse(mailbox)) store::record_oauth_refresh(pg_, ref->account, ref->id, r.at_ms, r.result, r.expires_ms);
  }

 private:
  static std::optional<store::MailboxRef> parse(const std::string& mailbox) {
    auto ref = store::MailboxRef::from_key(mailbox);
    if (!ref) core::log_error("oauth_mailbox_key_invalid", {{"mailbox", mailbox}});
    return ref;
  }
  store::PgConnection& pg_;
  const store::SecretBox& box_;
};

core::Outcome oauth_failure_outcome(const oauth::TokenFailure& f, const std::string& provider) {
  core::Outcome o;
  o.phase = core::Phase::Auth;
  // The FailureKind names are the outcome reasons (core/outcome.h lists them side by side).
  o.reason = core::reason_from_name(oauth::to_string(f.kind)).value_or(core::Reason::OauthUnavailable);
  o.status = oauth::is_permanent(f.kind) ? core::Status::Failed : core::Status::Deferred;
  o.fault = core::Fault::Mailbox;
  o.detail = "oauth (" + provider + "): " + f.detail;
  return o;
}

OAuthTokens::OAuthTokens(OAuthTokensParts parts) {
  lookup_ = std::make_unique<dns::ResolverLookup>(parts.resolver);
  core::HttpsClientOptions ho;
  ho.tls = parts.tls;
  // Fits inside the lease (oauth::TokenManagerOptions::lease_ms, 30 s): a refresh never outlives it.
  ho.total_timeout_ms = 20000;
  ho.max_response_bytes = 64 * 1024;  // a token answer is a few KB
  https_ = core::HttpsClient::create(parts.loop, lookup_.get(), ho);
  store_ = std::make_unique<GrantStore>(*parts.pg, *parts.secrets);
  oauth::TokenManagerOptions mo;
  mo.redis_prefix = parts.redis_prefix;
  mo.owner = parts.owner;
  const store::SecretBox* box = parts.secrets;
  mo.seal = [box](std::string_view plain, std::string_view ad) { return box->seal(plain, ad); };
  mo.open = [box](std::string_view sealed, std::string_view ad) { return box->open(sealed, ad); };
  manager_ = std::make_unique<oauth::TokenManager>(parts.loop, https_, parts.redis, store_.get(), mo);
  manager_->set_providers(std::move(parts.providers));
}

OAuthTokens::~OAuthTokens() {
  manager_.reset();  // cancels its requests before the client goes
  if (https_) https_->close();
}

void OAuthTokens::token(const store::Mailbox& m, TokenCallback cb) {
  // No refresh token from here: the manager reads the stored one under the lease.
  manager_->get({store::MailboxRef{m.account, m.id}.key(), m.oauth_provider, "", ""},
                [cb = std::move(cb)](core::Result<oauth::AccessToken, oauth::TokenFailure> r) {
                  if (!r) return cb(core::Err(r.error()));
                  cb(std::move(r->token));
                });
}

void OAuthTokens::probe_token(const store::Mailbox& m,
                              std::function<void(core::Result<ProbeToken, oauth::TokenFailure>)> cb) {
  if (m.oauth_refresh_token.empty()) {
    return token(m, [cb = std::move(cb)](core::Result<std::string, oauth::TokenFailure> t) {
      if (!t) return cb(core::Err(t.error()));
      cb(ProbeToken{std::move(t).value(), ""});
    });
  }
  manager_->request_grant(m.oauth_provider, m.oauth_refresh_token,
                          [cb = std::move(cb)](core::Result<oauth::TokenGrant, oauth::TokenFailure> g) {
                            if (!g) return cb(core::Err(g.error()));
                            cb(ProbeToken{std::move(g->access_token), std::move(g->refresh_token)});
                          });
}

void OAuthTokens::refused(const store::Mailbox& m, const std::string& token) {
  manager_->invalidate(store::MailboxRef{m.account, m.id}.key(), token);
}

void OAuthTokens::forget(const store::MailboxRef& ref) { manager_->forget(ref.key()); }

void OAuthTokens::reconfigure(std::vector<oauth::Provider> providers, std::shared_ptr<core::TlsContext> tls) {
  manager_->set_providers(std::move(providers));
  core::HttpsClientOptions ho = https_->options();
  ho.tls = std::move(tls);
  https_->set_options(std::move(ho));
}

}  // namespace deliverd::daemon
