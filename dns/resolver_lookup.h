#pragma once
// core::HostLookup over dns::Resolver, so core's HTTPS client connects only to addresses the
// target policy vetted (the resolver hands out nothing else) and never resolves a name itself.
#include <unordered_map>

#include "core/https_client.h"
#include "dns/resolver.h"

namespace deliverd::dns {

class ResolverLookup final : public core::HostLookup {
 public:
  explicit ResolverLookup(Resolver* resolver) : resolver_(resolver) {}
  void set_resolver(Resolver* resolver) { resolver_ = resolver; }
  uint64_t lookup(const std::string& host, Callback cb) override;
  void cancel(uint64_t id) override;

 private:
  Resolver* resolver_;
};

}  // namespace deliverd::dns
