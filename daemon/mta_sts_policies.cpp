#include "daemon/mta_sts_policies.h"

#include "tlspolicy/mx_policy.h"

namespace deliverd::daemon {

MtaStsPolicies::MtaStsPolicies(uv_loop_t* loop, dns::Resolver* resolver, std::shared_ptr<core::TlsContext> tls,
                               queue::RedisClient* redis, const std::string& redis_prefix) {
  hosts_ = std::make_unique<dns::ResolverLookup>(resolver);
  fetcher_ = std::make_unique<tlspolicy::PolicyFetcher>(loop, hosts_.get(), std::move(tls), tlspolicy::FetchOptions{});
  tlspolicy::StsCacheOptions opts;
  opts.redis_prefix = redis_prefix;
  cache_ = std::make_unique<tlspolicy::MtaStsCache>(loop, tlspolicy::resolver_txt_lookup(resolver), fetcher_.get(),
                                                    redis, opts);
}

MtaStsPolicies::~MtaStsPolicies() = default;

smtp::DomainTlsPolicyLookup MtaStsPolicies::lookup() {
  return [this](const std::string& domain, std::function<void(smtp::DomainTlsPolicy)> cb) {
    cache_->lookup(domain, [this, cb = std::move(cb)](const tlspolicy::StsDecision& d) {
      // Only when no policy applies because of it: a failed refresh under a cached policy is
      // not a failed session.
      if (report_sink_ && d.failure && !d.policy) {
        smtp::TlsAttemptReport a;
        a.policy_type = smtp::TlsAttemptReport::PolicyType::Sts;
        a.policy_domain = d.domain;
        const auto kind = d.failure->kind;
        a.result = kind == tlspolicy::StsFailure::BadPolicy || kind == tlspolicy::StsFailure::InvalidRecord
                       ? core::TlsResult::StsPolicyInvalid
                       : core::TlsResult::StsPolicyFetchError;
        a.detail = d.failure->text();
        report_sink_(a);
      }
      cb(tlspolicy::to_domain_policy(d));
    });
  };
}

}  // namespace deliverd::daemon
