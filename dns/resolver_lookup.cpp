#include "dns/resolver_lookup.h"

namespace deliverd::dns {

uint64_t ResolverLookup::lookup(const std::string& host, Callback cb) {
  return resolver_->resolve_host(host, [cb = std::move(cb)](const ResolvedHost& r) {
    Answer a;
    a.allowed = r.allowed;
    if (a.allowed.empty()) {
      a.refused_by_policy = r.error == Code::RefusedByPolicy || !r.refused.empty();
      a.error = r.error == Code::None ? std::string("no_address") : std::string(to_string(r.error));
      for (const auto& [ip, why] : r.refused) a.error += (a.error.empty() ? "" : ", ") + ip + " " + why;
    }
    cb(a);
  });
}

void ResolverLookup::cancel(uint64_t id) { resolver_->cancel(id); }

}  // namespace deliverd::dns
