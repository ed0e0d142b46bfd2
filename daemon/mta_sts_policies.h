#pragma once
// MTA-STS for MX mode (RFC 8461; docs/smtp.md "MTA-STS"): the per-domain policy cache of
// tlspolicy/, its TXT lookups and HTTPS fetches going through the daemon's resolver (so the
// target policy vets mta-sts.<domain> like any peer) and trusting what SMTP trusts, its policies
// shared by the fleet through Redis; handed to MxDelivery as the lookup it asks per delivery.
#include <uv.h>

#include <memory>
#include <string>

#include "core/tls_context.h"
#include "dns/resolver.h"
#include "dns/resolver_lookup.h"
#include "queue/redis_client.h"
#include "smtp/mx_delivery.h"
#include "tlspolicy/mta_sts_cache.h"
#include "tlspolicy/mta_sts_fetch.h"

namespace deliverd::daemon {

class MtaStsPolicies {
 public:
  // All must outlive this object.
  MtaStsPolicies(uv_loop_t* loop, dns::Resolver* resolver, std::shared_ptr<core::TlsContext> tls,
                 queue::RedisClient* redis, const std::string& redis_prefix);
  ~MtaStsPolicies();
  MtaStsPolicies(const MtaStsPolicies&) = delete;
  MtaStsPolicies& operator=(const MtaStsPolicies&) = delete;

  smtp::DomainTlsPolicyLookup lookup();
  // A reload's SMTP trust store: policy fetches trust what SMTP trusts, after a reload too.
  void set_tls(std::shared_ptr<core::TlsContext> tls) { fetcher_->set_tls(std::move(tls)); }
  // Where TLS-RPT hears of a domain whose `_mta-sts` record is there but whose policy could not
  // be had (RFC 8460 4.3.2: sts-policy-fetch-error, sts-policy-invalid). Unset: nowhere.
  void set_report_sink(smtp::TlsReportSink sink) { report_sink_ = std::move(sink); }

 private:
  std::unique_ptr<dns::ResolverLookup> hosts_;
  std::unique_ptr<tlspolicy::PolicyFetcher> fetcher_;
  smtp::TlsReportSink report_sink_;
  std::unique_ptr<tlspolicy::MtaStsCache> cache_;  // declared last: it goes first
};

}  // namespace deliverd::daemon
