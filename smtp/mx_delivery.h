#pragma once
// MX mode: deliver straight to the recipient domain's mail exchangers. MX lookup through
// dns::Resolver (c-ares), A/AAAA of the domain itself when it has no MX (RFC 5321 5.1), null MX
// (RFC 7505) ends as a bounce, hosts tried in preference order with a bounded number of
// attempts, every address of a host in turn, each vetted by the resolver's AddressPolicy. Connections go
// through the SessionPool keyed by domain, so consecutive messages to one domain share one.
#include <memory>
#include <string>
#include <unordered_set>

#include "core/lifetime.h"
#include "dns/resolver.h"
#include "smtp/session_pool.h"

namespace deliverd::smtp {

struct MxConfig {
  int port = 25;
  // MX hosts tried for one message before it is deferred, a host whose lookup failed included;
  // each host's addresses (IPv6, then IPv4, at most 4) are tried within its one attempt.
  size_t max_attempts = 5;
  SessionConfig session;    // security should be StartTls; tls_policy opportunistic or required
};

class MxDelivery {
 public:
  MxDelivery(dns::Resolver& resolver, SessionPool& pool, MxConfig cfg);
  ~MxDelivery();  // pending lookups are cancelled; their done callbacks are not called
  MxDelivery(const MxDelivery&) = delete;
  MxDelivery& operator=(const MxDelivery&) = delete;

  // rcpt_domain is the part after '@' of env.rcpt_to. done runs exactly once (asynchronously).
  void deliver(const std::string& rcpt_domain, Envelope env, Session::Done done);
  // A reload's new settings (port, attempts, timeouts, TLS policy and CA): attempts started
  // from now on use them.
  void reconfigure(MxConfig cfg) { cfg_ = std::move(cfg); }

 private:
  struct Job;
  void try_next(std::shared_ptr<Job> job);
  void connect(std::shared_ptr<Job> job, const sockaddr_storage& addr);
  void finish(const std::shared_ptr<Job>& job, core::Outcome o);

  dns::Resolver& resolver_;
  SessionPool& pool_;
  MxConfig cfg_;
  std::unordered_set<dns::Resolver::RequestId> pending_;
  core::Lifetime alive_;  // pool outcomes may arrive after destruction
};

// Whether a failed attempt says nothing about the message, so the next MX host may be tried.
bool try_next_host(const core::Outcome& o);

}  // namespace deliverd::smtp
