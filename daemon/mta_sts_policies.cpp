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

smtp::DomainTlsPolicyLookup MtaStsPolicies::lookup() { return tlspolicy::mx_policy_lookup(cache_.get()); }

}  // namespace deliverd::daemon
