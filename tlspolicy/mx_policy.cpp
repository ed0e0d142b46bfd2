#include "tlspolicy/mx_policy.h"

#include <utility>

namespace deliverd::tlspolicy {

TxtAnswer to_txt_answer(const dns::TxtResult& r) {
  TxtAnswer a;
  if (r.error == dns::Code::None) {
    a.status = TxtAnswer::Status::Found;
    a.records = r.records;
  } else if (r.error == dns::Code::Nxdomain || r.error == dns::Code::Nodata) {
    a.status = TxtAnswer::Status::NoRecord;
  } else {
    a.status = TxtAnswer::Status::Failed;
    a.error = std::string(dns::to_string(r.error));
  }
  return a;
}

TxtLookup resolver_txt_lookup(dns::Resolver* resolver) {
  return [resolver](const std::string& name, std::function<void(TxtAnswer)> cb) {
    resolver->resolve_txt(name, [cb = std::move(cb)](const dns::TxtResult& r) { cb(to_txt_answer(r)); });
  };
}

smtp::DomainTlsPolicy to_domain_policy(const StsDecision& d) {
  smtp::DomainTlsPolicy p;
  if (!d.policy || d.policy->mode == StsMode::None) return p;
  p.mode = d.policy->mode == StsMode::Enforce ? smtp::StsMode::Enforce : smtp::StsMode::Testing;
  p.id = d.id;
  p.mx = d.policy->mx;
  p.allows_mx = [policy = *d.policy](std::string_view host) { return matches_mx(policy, host); };
  return p;
}

smtp::DomainTlsPolicyLookup mx_policy_lookup(MtaStsCache* cache) {
  return [cache](const std::string& domain, std::function<void(smtp::DomainTlsPolicy)> cb) {
    cache->lookup(domain, [cb = std::move(cb)](const StsDecision& d) { cb(to_domain_policy(d)); });
  };
}

}  // namespace deliverd::tlspolicy
