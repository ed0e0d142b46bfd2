#pragma once
// MX mode: deliver straight to the recipient domain's mail exchangers. MX lookup through
// dns::Resolver (c-ares), A/AAAA of the domain itself when it has no MX (RFC 5321 5.1), null MX
// (RFC 7505) ends as a bounce, hosts tried in preference order with a bounded number of
// attempts, every address of a host in turn, each vetted by the resolver's AddressPolicy. Connections go
// through the SessionPool keyed by domain and TLS policy, so consecutive messages to one domain
// share one. TLS (docs/smtp.md, "MX mode: opportunistic TLS, required TLS and `tls.policy`"):
// opportunistic takes any TLS the server offers, unverified, and when the handshake after
// STARTTLS's 220 fails, retries once in plaintext on a new connection to the same address;
// every other policy wants TLS 1.2+ with a verified certificate and otherwise defers.
#include <memory>
#include <optional>
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
  // security should be StartTls; tls_policy ([smtp] mx_tls) opportunistic or required is the
  // policy of deliveries that bring none of their own. tls_opportunistic unset: MxDelivery makes one.
  SessionConfig session;
};

class MxDelivery {
 public:
  MxDelivery(dns::Resolver& resolver, SessionPool& pool, MxConfig cfg);
  ~MxDelivery();  // pending lookups are cancelled; their done callbacks are not called
  MxDelivery(const MxDelivery&) = delete;
  MxDelivery& operator=(const MxDelivery&) = delete;

  // rcpt_domain is the part after '@' of env.rcpt_to. done runs exactly once (asynchronously).
  // tls_policy: what applies to this delivery (MTA-STS enforce, DANE …); unset: the configured
  // session.tls_policy. The outcome names it (tls_policy).
  void deliver(const std::string& rcpt_domain, Envelope env, Session::Done done,
               std::optional<TlsPolicy> tls_policy = std::nullopt);
  // A reload's new settings (port, attempts, timeouts, TLS policy and CA): attempts started
  // from now on use them.
  void reconfigure(MxConfig cfg);

 private:
  struct Job;
  void try_next(std::shared_ptr<Job> job);
  // fallback: the plaintext retry after a failed TLS handshake at addr (opportunistic only).
  void connect(std::shared_ptr<Job> job, const sockaddr_storage& addr, bool fallback = false);
  void finish(const std::shared_ptr<Job>& job, core::Outcome o);
  void set_config(MxConfig cfg);

  dns::Resolver& resolver_;
  SessionPool& pool_;
  MxConfig cfg_;
  std::shared_ptr<core::TlsContext> opportunistic_;  // made once; it depends on no setting
  std::unordered_set<dns::Resolver::RequestId> pending_;
  core::Lifetime alive_;  // pool outcomes may arrive after destruction
};

// Whether a failed attempt says nothing about the message, so the next MX host may be tried.
bool try_next_host(const core::Outcome& o);
// Whether an opportunistic attempt failed in the TLS handshake after STARTTLS's 220 (a TLS error,
// the peer closing or falling silent): the case that is retried once in plaintext.
bool tls_handshake_failed(const core::Outcome& o);
// The pool key of a destination: connections are shared by deliveries under the same TLS policy
// only, so a plaintext fallback connection never carries a message whose policy wants TLS.
std::string mx_pool_key(const std::string& domain, TlsPolicy policy);

}  // namespace deliverd::smtp
