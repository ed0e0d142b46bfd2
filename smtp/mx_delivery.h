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
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/lifetime.h"
#include "dns/resolver.h"
#include "dns/tlsa_lookup.h"
#include "smtp/session_pool.h"

namespace deliverd::smtp {

// A recipient domain's MTA-STS policy (RFC 8461) as the daemon's lookup found it; smtp/ knows
// nothing of how policies are fetched, cached or shared (tlspolicy/).
enum class StsMode : uint8_t { None, Testing, Enforce };
struct DomainTlsPolicy {
  StsMode mode = StsMode::None;  // None: the domain has no policy (or its mode is "none")
  std::string id;                // the policy's id, for logs
  std::vector<std::string> mx;   // its mx patterns, for the text of a deferral
  std::function<bool(std::string_view host)> allows_mx;  // RFC 8461 4.1 matching
};
using DomainTlsPolicyLookup =
    std::function<void(const std::string& domain, std::function<void(DomainTlsPolicy)> cb)>;

// An MX host's TLSA records (RFC 7672 2.2) as the daemon's DNSSEC-validated lookup found them.
struct HostDane {
  enum class Status : uint8_t {
    None,    // no DANE: the TLSA RRset is absent (authenticated denial) or not DNSSEC-secure
    Secure,  // a validated TLSA RRset: records
    Failed,  // the lookup failed (SERVFAIL from a bogus signature, a timeout): never "no DANE"
  };
  Status status = Status::None;
  std::vector<core::DaneRecord> records;
  std::string detail;  // Failed: what went wrong
};
using DaneLookup = std::function<void(const std::string& host, int port, std::function<void(HostDane)> cb)>;

// DANE through a validating resolver (dns/tlsa_lookup.h): secure → the records; authenticated
// denial or an insecure zone → no DANE; bogus or failed → Failed (the host is not used).
HostDane host_dane(const dns::TlsaResult& r);
// resolver must outlive the lookups' use; callbacks after MxDelivery is gone are ignored by it.
DaneLookup tlsa_dane_lookup(dns::TlsaResolver* resolver);

// What one MX connection attempt's TLS came to under which policy, for TLS-RPT (RFC 8460):
// MxDelivery tells a sink the daemon sets; how results are counted, shared and reported is
// tlspolicy/'s and daemon/'s business. One per connection that negotiated or failed TLS (not per
// message on a reused connection), and one per MX host a policy failure ruled out before any
// connection (an MTA-STS MX mismatch, a failed TLSA lookup).
struct TlsAttemptReport {
  enum class PolicyType : uint8_t { Sts, Tlsa, NoPolicyFound };
  PolicyType policy_type = PolicyType::NoPolicyFound;
  std::string policy_domain;              // the recipient domain
  StsMode sts_mode = StsMode::None;       // Sts: the policy's mode, id and mx patterns
  std::string sts_id;
  std::vector<std::string> sts_mx;
  std::vector<core::DaneRecord> tlsa;     // Tlsa: the host's usable TLSA records
  std::string mx_host;                    // receiving-mx-hostname
  std::string receiving_ip;               // "" when no connection was made
  std::string sending_ip;                 // sending-mta-ip: this side's address of that connection
  core::TlsResult result = core::TlsResult::Success;
  std::string detail;                     // failure-reason-code
};
using TlsReportSink = std::function<void(const TlsAttemptReport&)>;

struct MxConfig {
  int port = 25;
  // MX hosts tried for one message before it is deferred, a host whose lookup failed included;
  // each host's addresses (IPv6, then IPv4, at most 4) are tried within its one attempt.
  size_t max_attempts = 5;
  // One bound for a delivery's lookups and connection attempts together: once it has passed, no
  // further MX host or address is tried and the delivery ends with the last failure.
  uint64_t deadline_ms = 5 * 60 * 1000;
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
  // Where a domain's MTA-STS policy comes from (unset: none is looked up). With one, every
  // delivery without a policy of its own asks first: enforce → only MX hosts the policy allows,
  // verified TLS 1.2+ (tls.policy "mta-sts"), else deferred naming the policy; testing → delivered
  // as without a policy, what enforce would have refused logged (mta_sts_testing_failure).
  void set_domain_policy_lookup(DomainTlsPolicyLookup lookup) { sts_lookup_ = std::move(lookup); }
  // Where MX hosts' TLSA records come from (unset: DANE is off). With one, every MX host is
  // asked before it is connected to: secure TLSA records make verified TLS against them required
  // (tls.policy "dane", over any MTA-STS or mx_tls policy); a failed lookup makes the host
  // unusable (reason dane_tlsa_failed), never a host without DANE.
  void set_dane_lookup(DaneLookup lookup) { dane_lookup_ = std::move(lookup); }
  // Where TLS-RPT results go (unset: nowhere). Under an MTA-STS testing policy the certificate is
  // then checked (TLS 1.2+, the SMTP trust store) without being enforced, so that testing-mode
  // failures are reported as RFC 8461 5 asks.
  void set_tls_report_sink(TlsReportSink sink) { report_sink_ = std::move(sink); }
  // A reload's new settings (port, attempts, timeouts, TLS policy and CA): attempts started
  // from now on use them.
  void reconfigure(MxConfig cfg);

 private:
  struct Job;
  void resolve_mx(std::shared_ptr<Job> job);
  // Applies the domain's MTA-STS policy to its MX hosts; false when the delivery has ended.
  bool apply_sts(const std::shared_ptr<Job>& job);
  void try_next(std::shared_ptr<Job> job);
  // The current host's DANE lookup, then its addresses (or the pool's idle connection).
  void lookup_host(std::shared_ptr<Job> job);
  void resolve_host(std::shared_ptr<Job> job);
  // fallback: the plaintext retry after a failed TLS handshake at addr (opportunistic only).
  void connect(std::shared_ptr<Job> job, const sockaddr_storage& addr, bool fallback = false);
  void finish(const std::shared_ptr<Job>& job, core::Outcome o);
  // One TLS-RPT result for the current host (or host, where a policy ruled it out unconnected:
  // no addresses then).
  void report_tls(const Job& job, const std::string& host, const std::string& ip, core::TlsResult result,
                  std::string detail, const std::string& local_ip = {});
  void set_config(MxConfig cfg);

  dns::Resolver& resolver_;
  SessionPool& pool_;
  MxConfig cfg_;
  DomainTlsPolicyLookup sts_lookup_;
  DaneLookup dane_lookup_;
  TlsReportSink report_sink_;
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
// DANE connections are verified against one host's TLSA records: their key names the host too.
std::string mx_pool_key(const std::string& domain, TlsPolicy policy, const std::string& dane_host = "");

}  // namespace deliverd::smtp
