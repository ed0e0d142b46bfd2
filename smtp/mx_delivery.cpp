#include "smtp/mx_delivery.h"

#include <arpa/inet.h>

#include <algorithm>
#include <chrono>

#include "core/ascii.h"
#include "core/log.h"

namespace deliverd::smtp {

struct MxDelivery::Job {
  std::string domain;
  Envelope env;
  Session::Done done;
  std::vector<std::string> hosts;  // in preference order
  size_t next_host = 0;
  size_t attempts = 0;  // hosts tried, a failed address lookup included
  // The current host's vetted addresses (IPv6 first, then IPv4, each in the order DNS gave).
  std::vector<sockaddr_storage> addrs;
  size_t next_addr = 0;
  std::string host;
  core::Outcome last;  // the most telling failure so far
  std::chrono::steady_clock::time_point deadline;
  bool skip_idle = false;
  TlsPolicy tls_policy = TlsPolicy::Opportunistic;
  DomainTlsPolicy sts;
  // The current host's DANE state: Secure → this host's connection is under policy dane.
  HostDane dane;
  // The policy of the current host's connection: dane where the host has secure TLSA records,
  // else the delivery's.
  TlsPolicy host_policy() const { return dane.status == HostDane::Status::Secure ? TlsPolicy::Dane : tls_policy; }
  std::string pool_key() const {
    return mx_pool_key(domain, host_policy(), dane.status == HostDane::Status::Secure ? host : "");
  }
};

namespace {

bool greeting(core::Phase p) { return p == core::Phase::Banner || p == core::Phase::Ehlo || p == core::Phase::Helo; }

// The recipient's MX lookup failed: the reason an outcome names.
core::Reason mx_reason(dns::Code c) {
  using R = core::Reason;
  switch (c) {
    case dns::Code::Nxdomain: return R::MxNxdomain;
    case dns::Code::Timeout: return R::MxTimeout;
    case dns::Code::Servfail: return R::MxServfail;
    case dns::Code::ServerRefused: return R::MxServerRefused;
    case dns::Code::ConnectionRefused: return R::MxConnectionRefused;
    case dns::Code::BadResponse: return R::MxBadResponse;
    case dns::Code::Cancelled: return R::MxCancelled;
    case dns::Code::RefusedByPolicy: return R::MxRefusedByPolicy;
    case dns::Code::InvalidName: return R::MxInvalidName;
    case dns::Code::Overloaded: return R::MxOverloaded;
    default: return R::MxError;
  }
}

// An MX host's address lookup failed: the reason names the lookup's own code.
core::Reason host_reason(dns::Code c) {
  using R = core::Reason;
  switch (c) {
    case dns::Code::None: return R::NoAddress;
    case dns::Code::Nxdomain: return R::Nxdomain;
    case dns::Code::Timeout: return R::Timeout;
    case dns::Code::Servfail: return R::Servfail;
    case dns::Code::ServerRefused: return R::ServerRefused;
    case dns::Code::ConnectionRefused: return R::ConnectionRefused;
    case dns::Code::BadResponse: return R::BadResponse;
    case dns::Code::Cancelled: return R::Cancelled;
    case dns::Code::NoAddress: return R::NoAddress;
    case dns::Code::RefusedByPolicy: return R::RefusedByPolicy;
    case dns::Code::InvalidName: return R::InvalidName;
    case dns::Code::Overloaded: return R::Overloaded;
    default: return R::Error;
  }
}

// A name with dozens of addresses must not hold one delivery for dozens of connect timeouts.
constexpr size_t kAddressesPerHost = 4;

// IPv6 first, then IPv4, each family in the order DNS gave (stable_partition keeps it).
std::vector<sockaddr_storage> in_connect_order(std::vector<sockaddr_storage> addrs) {
  std::stable_partition(addrs.begin(), addrs.end(), [](const sockaddr_storage& a) { return a.ss_family == AF_INET6; });
  if (addrs.size() > kAddressesPerHost) addrs.resize(kAddressesPerHost);
  return addrs;
}

}  // namespace

HostDane host_dane(const dns::TlsaResult& r) {
  using S = dns::TlsaResult::Status;
  HostDane d;
  switch (r.status) {
    case S::Secure:
      d.status = HostDane::Status::Secure;
      d.records = r.records;
      break;
    case S::NoRecords:
    case S::Insecure:
      break;
    case S::Bogus:
    case S::Failed:
      d.status = HostDane::Status::Failed;
      d.detail = std::string(dns::to_string(r.status)) + (r.detail.empty() ? "" : ": " + r.detail);
      break;
  }
  return d;
}

DaneLookup tlsa_dane_lookup(dns::TlsaResolver* resolver) {
  return [resolver](const std::string& host, int port, std::function<void(HostDane)> cb) {
    resolver->lookup(dns::tlsa_name(host, port), [cb = std::move(cb)](const dns::TlsaResult& r) { cb(host_dane(r)); });
  };
}

bool try_next_host(const core::Outcome& o) {
  if (o.status == core::Status::Delivered || o.status == core::Status::Bounced) return false;
  if (o.reply.code == 0) {  // nothing was said about the message: connect, TLS, timeouts, garbage
    return o.phase == core::Phase::Connect || o.phase == core::Phase::Tls || greeting(o.phase) || o.phase == core::Phase::StartTls ||
           o.reason == core::Reason::SessionTimeout;
  }
  // A server that will not talk to us now (421, 4xx/5xx greeting) may have a healthier sibling.
  return greeting(o.phase) && o.reply.code >= 400 && o.reply.code < 500;
}

bool tls_handshake_failed(const core::Outcome& o) {
  return o.status == core::Status::Deferred && o.phase == core::Phase::Tls && o.reply.code == 0 &&
         o.tls_policy == TlsPolicy::Opportunistic;
}

std::string mx_pool_key(const std::string& domain, TlsPolicy policy, const std::string& dane_host) {
  std::string key = "mx:" + domain + "#" + std::string(core::to_string(policy));
  if (!dane_host.empty()) key += ":" + dane_host;
  return key;
}

MxDelivery::MxDelivery(dns::Resolver& resolver, SessionPool& pool, MxConfig cfg) : resolver_(resolver), pool_(pool) {
  core::TlsClientOptions any;
  any.opportunistic = true;
  if (auto ctx = core::TlsContext::client(any)) {
    opportunistic_ = *ctx;
  } else {
    // Then the verified context serves unverified, TLS 1.2+ only: less mail over TLS, none lost.
    core::log_error("mx_opportunistic_tls_unavailable", {{"error", ctx.error()}});
  }
  set_config(std::move(cfg));
}

void MxDelivery::reconfigure(MxConfig cfg) { set_config(std::move(cfg)); }

void MxDelivery::set_config(MxConfig cfg) {
  cfg_ = std::move(cfg);
  if (cfg_.max_attempts == 0) cfg_.max_attempts = 1;
  cfg_.session.relay = false;
  if (!cfg_.session.tls_opportunistic) cfg_.session.tls_opportunistic = opportunistic_;
}

MxDelivery::~MxDelivery() {
  alive_.end();
  for (auto id : pending_) resolver_.cancel(id);
}

void MxDelivery::finish(const std::shared_ptr<Job>& job, core::Outcome o) {
  // Also where no session ran (lookups, pool); a session's outcome already names its policy.
  if (o.tls_policy != TlsPolicy::Dane) o.tls_policy = job->tls_policy;
  // A TLS deferral names the policy that refused plaintext or an unverified peer.
  const bool tls_deferral =
      o.status == core::Status::Deferred &&
      (o.phase == core::Phase::Tls || o.phase == core::Phase::StartTls || o.reason == core::Reason::StarttlsUnavailable);
  if (tls_deferral && o.tls_policy == TlsPolicy::Dane)
    o.detail = "DANE (TLSA records of " + o.host + "): " + o.detail;
  else if (tls_deferral && job->sts.mode == StsMode::Enforce)
    o.detail = "MTA-STS policy of " + job->domain + " (enforce, id " + job->sts.id + "): " + o.detail;
  Session::Done done = std::move(job->done);
  job->done = nullptr;
  if (done) done(o);
}

void MxDelivery::report_tls(const Job& job, const std::string& host, const std::string& ip, core::TlsResult result,
                            std::string detail, const std::string& local_ip) {
  if (!report_sink_ || result == core::TlsResult::None) return;
  TlsAttemptReport r;
  if (host == job.host && job.dane.status != HostDane::Status::None) {
    r.policy_type = TlsAttemptReport::PolicyType::Tlsa;
    r.tlsa = job.dane.records;
  } else if (job.sts.mode != StsMode::None) {
    r.policy_type = TlsAttemptReport::PolicyType::Sts;
    r.sts_mode = job.sts.mode;
    r.sts_id = job.sts.id;
    r.sts_mx = job.sts.mx;
  }
  r.policy_domain = job.domain;
  r.mx_host = host;
  r.receiving_ip = ip;
  r.sending_ip = local_ip;
  r.result = result;
  r.detail = std::move(detail);
  report_sink_(r);
}

void MxDelivery::deliver(const std::string& rcpt_domain, Envelope env, Session::Done done,
                         std::optional<TlsPolicy> tls_policy) {
  auto job = std::make_shared<Job>();
  job->tls_policy = tls_policy.value_or(cfg_.session.tls_policy);
  job->deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(cfg_.deadline_ms);
  job->domain = core::ascii_lowercase(rcpt_domain);
  job->env = std::move(env);
  job->done = std::move(done);
  if (tls_policy || !sts_lookup_) return resolve_mx(job);
  sts_lookup_(job->domain, [this, job, alive = alive_.token()](DomainTlsPolicy p) {
    if (!alive) return;
    if (p.mode == StsMode::Enforce) job->tls_policy = TlsPolicy::MtaSts;
    job->sts = std::move(p);
    resolve_mx(job);
  });
}

namespace {

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

}  // namespace

// RFC 8461 4.2: an MX host that does not match the policy fails validation; in enforce mode it
// is not used, in testing mode it is used and the failure reported.
bool MxDelivery::apply_sts(const std::shared_ptr<Job>& job) {
  if (job->sts.mode == StsMode::None || !job->sts.allows_mx) return true;
  std::vector<std::string> allowed, refused;
  for (auto& h : job->hosts) (job->sts.allows_mx(h) ? allowed : refused).push_back(h);
  if (refused.empty()) return true;
  const bool enforce = job->sts.mode == StsMode::Enforce;
  core::log_info(enforce ? "mta_sts_mx_refused" : "mta_sts_testing_failure",
                 {{"domain", job->domain},
                  {"id", job->sts.id},
                  {"reason", "mx_mismatch"},
                  {"refused", joined(refused)},
                  {"policy_mx", joined(job->sts.mx)}});
  for (const auto& h : refused)
    report_tls(*job, h, "", core::TlsResult::ValidationFailure, "mx-mismatch: " + h + " does not match the policy's mx");
  if (!enforce) return true;
  if (allowed.empty()) {
    core::Outcome o;
    o.status = core::Status::Deferred;
    o.phase = core::Phase::Resolve;
    o.reason = core::Reason::MtaStsMxMismatch;
    o.host = job->domain;
    o.fault = core::Fault::RecipientTransient;
    o.detail = "MTA-STS policy of " + job->domain + " (enforce, id " + job->sts.id + ") allows mx " +
               joined(job->sts.mx) + "; no MX host matches (" + joined(refused) + ")";
    finish(job, o);
    return false;
  }
  job->hosts = std::move(allowed);
  return true;
}

void MxDelivery::resolve_mx(std::shared_ptr<Job> job) {
  auto id = std::make_shared<dns::Resolver::RequestId>(0);
  *id = resolver_.resolve_mx(job->domain, [this, job, id, alive = alive_.token()](const dns::MxResult& mx) {
    if (!alive) return;
    pending_.erase(*id);
    core::Outcome o;
    o.phase = core::Phase::Resolve;
    o.host = job->domain;
    if (mx.null_mx) {
      o.status = core::Status::Bounced;
      o.reason = core::Reason::NullMx;
      o.detail = "the domain publishes a null MX (RFC 7505): it accepts no mail";
      o.fault = core::Fault::RecipientPermanent;
      return finish(job, o);
    }
    if (mx.error != dns::Code::None && !mx.no_mx) {
      bool permanent = mx.error == dns::Code::Nxdomain;
      o.status = permanent ? core::Status::Bounced : core::Status::Deferred;
      o.reason = mx_reason(mx.error);
      o.detail = "MX lookup for " + job->domain + " failed: " + std::string(dns::to_string(mx.error));
      o.fault = permanent ? core::Fault::RecipientPermanent : core::Fault::RecipientTransient;
      if (mx.error == dns::Code::RefusedByPolicy || mx.error == dns::Code::InvalidName)
        o.status = core::Status::Rejected;
      if (mx.error == dns::Code::RefusedByPolicy) {  // as a refused address is (dns::resolve_failure_outcome)
        o.reason = core::Reason::SsrfRefused;
        o.detail = mx.detail;
      }
      return finish(job, o);
    }
    if (mx.no_mx || mx.hosts.empty()) {
      job->hosts.push_back(job->domain);  // RFC 5321 5.1: the implicit MX
    } else {
      for (const auto& [pref, host] : mx.hosts) job->hosts.push_back(host);
    }
    if (apply_sts(job)) try_next(job);
  });
  pending_.insert(*id);
}

void MxDelivery::try_next(std::shared_ptr<Job> job) {
  const bool out_of_time = std::chrono::steady_clock::now() >= job->deadline;
  if (!out_of_time && job->next_addr < job->addrs.size()) return connect(job, job->addrs[job->next_addr++]);
  if (out_of_time || job->next_host >= job->hosts.size() || job->attempts >= cfg_.max_attempts) {
    core::Outcome o = job->last;
    if (out_of_time && job->next_host < job->hosts.size())
      o.detail += (o.detail.empty() ? "" : "; ") + std::string("the delivery's deadline passed before ") +
                  job->hosts[job->next_host] + " was tried";
    if (o.reason == core::Reason::None) {
      o.status = core::Status::Deferred;
      o.phase = core::Phase::Resolve;
      o.reason = core::Reason::NoUsableMx;
      o.detail = "no mail exchanger of " + job->domain + " could be used";
      o.host = job->domain;
      o.fault = core::Fault::RecipientTransient;
    }
    return finish(job, o);
  }
  job->host = job->hosts[job->next_host++];
  job->addrs.clear();
  job->next_addr = 0;
  job->dane = HostDane{};
  ++job->attempts;  // a host counts whether its lookups fail or one of its addresses answers
  lookup_host(job);
}

void MxDelivery::lookup_host(std::shared_ptr<Job> job) {
  if (!dane_lookup_) return resolve_host(job);
  dane_lookup_(job->host, cfg_.port, [this, job, alive = alive_.token()](HostDane d) {
    if (!alive) return;
    if (d.status == HostDane::Status::Failed) {
      core::Outcome o;
      o.status = core::Status::Deferred;
      o.phase = core::Phase::Resolve;
      o.reason = core::Reason::DaneTlsaFailed;
      o.detail = "DANE: the TLSA lookup for MX host " + job->host + " failed (" + d.detail +
                 "); the host is not used without it";
      o.host = job->host;
      o.fault = core::Fault::RecipientTransient;
      o.tls_policy = TlsPolicy::Dane;
      job->last = o;
      job->dane = std::move(d);  // so that the report names the DANE policy
      report_tls(*job, job->host, "", core::TlsResult::DnssecInvalid, "tlsa lookup: " + job->dane.detail);
      return try_next(job);
    }
    if (d.status == HostDane::Status::Secure) {
      // RFC 7672 2.2: unusable records are ignored; none usable still means TLS, unauthenticated.
      std::erase_if(d.records, [](const core::DaneRecord& r) { return !core::dane_usable(r); });
    }
    job->dane = std::move(d);
    resolve_host(job);
  });
}

void MxDelivery::resolve_host(std::shared_ptr<Job> job) {
  if (!job->skip_idle && pool_.has_idle(job->pool_key())) return connect(job, sockaddr_storage{});
  auto id = std::make_shared<dns::Resolver::RequestId>(0);
  *id = resolver_.resolve_host(job->host, [this, job, id, alive = alive_.token()](const dns::ResolvedHost& r) {
    if (!alive) return;
    pending_.erase(*id);
    if (r.allowed.empty()) {
      core::Outcome o;
      o.status = r.error == dns::Code::RefusedByPolicy ? core::Status::Rejected : core::Status::Deferred;
      o.phase = core::Phase::Resolve;
      o.reason = host_reason(r.error);
      o.detail = "no usable address for MX host " + job->host;
      for (const auto& [ip, why] : r.refused) o.detail += "; " + ip + " refused (" + why + ")";
      o.host = job->host;
      o.fault = core::Fault::RecipientTransient;
      job->last = o;
      return try_next(job);
    }
    job->addrs = in_connect_order(r.allowed);
    for (auto& addr : job->addrs) {
      if (addr.ss_family == AF_INET)
        reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(static_cast<uint16_t>(cfg_.port));
      else
        reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(static_cast<uint16_t>(cfg_.port));
    }
    try_next(job);
  });
  pending_.insert(*id);
}

// One connection (or the pool's idle one, when addr is empty) to the current host.
void MxDelivery::connect(std::shared_ptr<Job> job, const sockaddr_storage& addr, bool fallback) {
  Route route;
  route.key = job->pool_key();
  route.cfg = cfg_.session;
  route.cfg.tls_policy = job->host_policy();
  route.cfg.tls_name = job->host;
  if (route.cfg.tls_policy == TlsPolicy::Dane) route.cfg.dane = job->dane.records;
  // RFC 8461 5: a testing policy's failures are reported, so its certificates are checked.
  route.cfg.tls_check = report_sink_ && job->sts.mode == StsMode::Testing && route.cfg.tls_policy == TlsPolicy::Opportunistic;
  if (fallback) route.cfg.tls_fallback = core::TlsFallback::HandshakeFailed;
  route.addr = addr;
  route.host = job->host;
  // The pool may reuse an open connection to this domain instead of the address given here.
  pool_.submit(std::move(route), job->env, [this, job, addr, fallback, alive = alive_.token()](const core::Outcome& o) {
    if (alive) report_tls(*job, o.host.empty() ? job->host : o.host, o.ip, o.tls_result, o.tls_result_detail, o.tls_local_ip);
    if (alive && o.reason == core::Reason::NoIdleConnection) {  // it closed meanwhile: look the host up
      --job->attempts;
      --job->next_host;
      job->skip_idle = true;
      return try_next(job);
    }
    // Postfix's "may": a server that says 220 to STARTTLS and then cannot finish a handshake
    // with us (an old or broken TLS stack, a middlebox eating it) still gets its mail, in
    // plaintext, on a new connection to the same address: that address, not the host, failed.
    // Once per address; the retry's own failure is judged like any other.
    if (alive && !fallback && addr.ss_family != AF_UNSPEC && tls_handshake_failed(o)) {
      core::log_info("mx_tls_fallback", {{"domain", job->domain},
                                         {"host", o.host},
                                         {"ip", o.ip},
                                         {"reason", core::to_string(o.reason)},
                                         {"detail", o.detail},
                                         {"note", "TLS handshake failed; retrying once in plaintext"}});
      return connect(job, addr, true);
    }
    const bool more = job->next_addr < job->addrs.size() ||
                      (job->next_host < job->hosts.size() && job->attempts < cfg_.max_attempts);
    if (alive && try_next_host(o) && more) {
      job->last = o;
      return try_next(job);
    }
    finish(job, o);
  });
}

}  // namespace deliverd::smtp
