#pragma once
// The glue between the MTA-STS cache and what it serves and uses: the `_mta-sts` TXT record
// through dns::Resolver, and the per-domain policy smtp::MxDelivery asks for before it looks up
// a domain's MX hosts. Kept here so that smtp/ and dns/ know nothing of MTA-STS caching.
#include "dns/resolver.h"
#include "smtp/mx_delivery.h"
#include "tlspolicy/mta_sts_cache.h"

namespace deliverd::tlspolicy {

// A resolver answer as the cache reads it: records → found; NXDOMAIN or no TXT → no record;
// anything else (timeout, SERVFAIL, refused) → failed, which keeps a cached policy in force.
TxtAnswer to_txt_answer(const dns::TxtResult& r);
// resolver must outlive the lookup's use.
TxtLookup resolver_txt_lookup(dns::Resolver* resolver);
// The cache's decision as MX delivery applies it: enforce or testing with the policy's MX
// patterns; no policy (or mode none) → StsMode::None. cache must outlive the lookup's use.
smtp::DomainTlsPolicy to_domain_policy(const StsDecision& d);
smtp::DomainTlsPolicyLookup mx_policy_lookup(MtaStsCache* cache);

}  // namespace deliverd::tlspolicy
