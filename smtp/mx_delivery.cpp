#include "smtp/mx_delivery.h"

#include <arpa/inet.h>

#include <algorithm>

#include "core/ascii.h"
#include "core/log.h"

namespace deliverd::smtp {

struct MxDelivery::Job {
  std::string domain;
  Envelope env;
  Session::Done done;
  std::vector<std::string> hosts;  // in preference order
  size_t next_host = 0;
  size_t attempts = 0;
  core::Outcome last;  // the most telling failure so far
  bool skip_idle = false;
};

bool try_next_host(const core::Outcome& o) {
  if (o.status == core::Status::Delivered || o.status == core::Status::Bounced) return false;
  if (o.reply.code == 0) {  // nothing was said about the message: connect, TLS, timeouts, garbage
    return o.phase == "connect" || o.phase == "tls" || o.phase == "banner" || o.phase == "ehlo" || o.phase == "helo" ||
           o.phase == "starttls" || o.reason == "session_timeout";
  }
  // A server that will not talk to us now (421, 4xx/5xx greeting) may have a healthier sibling.
  return (o.phase == "banner" || o.phase == "ehlo" || o.phase == "helo") && o.reply.code >= 400 && o.reply.code < 500;
}

MxDelivery::MxDelivery(dns::Resolver& resolver, SessionPool& pool, MxConfig cfg)
    : resolver_(resolver), pool_(pool), cfg_(std::move(cfg)) {
  if (cfg_.max_attempts == 0) cfg_.max_attempts = 1;
  cfg_.session.relay = false;
}

MxDelivery::~MxDelivery() {
  *alive_ = false;
  for (auto id : pending_) resolver_.cancel(id);
}

void MxDelivery::finish(const std::shared_ptr<Job>& job, core::Outcome o) {
  Session::Done done = std::move(job->done);
  job->done = nullptr;
  if (done) done(o);
}

void MxDelivery::deliver(const std::string& rcpt_domain, Envelope env, Session::Done done) {
  auto job = std::make_shared<Job>();
  job->domain = core::ascii_lowercase(rcpt_domain);
  job->env = std::move(env);
  job->done = std::move(done);
  auto id = std::make_shared<dns::Resolver::RequestId>(0);
  *id = resolver_.resolve_mx(job->domain, [this, job, id, alive = alive_](const dns::MxResult& mx) {
    if (!*alive) return;
    pending_.erase(*id);
    core::Outcome o;
    o.phase = "resolve";
    o.host = job->domain;
    if (mx.null_mx) {
      o.status = core::Status::Bounced;
      o.reason = "null_mx";
      o.detail = "the domain publishes a null MX (RFC 7505): it accepts no mail";
      o.fault = "recipient_permanent";
      return finish(job, o);
    }
    if (!mx.error.empty() && !mx.no_mx) {
      bool permanent = mx.error == "nxdomain";
      o.status = permanent ? core::Status::Bounced : core::Status::Deferred;
      o.reason = "mx_" + mx.error;
      o.detail = "MX lookup for " + job->domain + " failed: " + mx.error;
      o.fault = permanent ? "recipient_permanent" : "recipient_transient";
      if (mx.error == "refused_by_policy" || mx.error == "invalid_name") o.status = core::Status::Rejected;
      if (mx.error == "refused_by_policy") {  // as a refused address is (dns::resolve_failure_outcome)
        o.reason = "ssrf_refused";
        o.detail = mx.detail;
      }
      return finish(job, o);
    }
    if (mx.no_mx || mx.hosts.empty()) {
      job->hosts.push_back(job->domain);  // RFC 5321 5.1: the implicit MX
    } else {
      for (const auto& [pref, host] : mx.hosts) job->hosts.push_back(host);
    }
    try_next(job);
  });
  pending_.insert(*id);
}

void MxDelivery::try_next(std::shared_ptr<Job> job) {
  if (job->next_host >= job->hosts.size() || job->attempts >= cfg_.max_attempts) {
    core::Outcome o = job->last;
    if (o.reason.empty()) {
      o.status = core::Status::Deferred;
      o.phase = "resolve";
      o.reason = "no_usable_mx";
      o.detail = "no mail exchanger of " + job->domain + " could be used";
      o.host = job->domain;
      o.fault = "recipient_transient";
    }
    return finish(job, o);
  }
  std::string host = job->hosts[job->next_host++];
  std::string key = "mx:" + job->domain;
  auto submit = [this, job, key, host](const sockaddr_storage& addr) {
    ++job->attempts;
    Route route;
    route.key = key;
    route.cfg = cfg_.session;
    route.cfg.tls_name = host;
    route.addr = addr;
    route.host = host;
    // The pool may reuse an open connection to this domain instead of the address given here.
    pool_.submit(std::move(route), job->env, [this, job, alive = alive_](const core::Outcome& o) {
      if (*alive && o.reason == "no_idle_connection") {  // it closed meanwhile: connect as usual
        --job->attempts;
        --job->next_host;
        job->skip_idle = true;
        return try_next(job);
      }
      if (*alive && try_next_host(o) && job->next_host < job->hosts.size() && job->attempts < cfg_.max_attempts) {
        job->last = o;
        return try_next(job);
      }
      finish(job, o);
    });
  };
  if (!job->skip_idle && pool_.has_idle(key)) return submit(sockaddr_storage{});
  auto id = std::make_shared<dns::Resolver::RequestId>(0);
  *id = resolver_.resolve_host(host, [this, job, id, submit, host, alive = alive_](const dns::ResolvedHost& r) {
    if (!*alive) return;
    pending_.erase(*id);
    if (r.allowed.empty()) {
      core::Outcome o;
      o.status = r.error == "refused_by_policy" ? core::Status::Rejected : core::Status::Deferred;
      o.phase = "resolve";
      o.reason = r.error.empty() ? "no_address" : r.error;
      o.detail = "no usable address for MX host " + host;
      for (const auto& [ip, why] : r.refused) o.detail += "; " + ip + " refused (" + why + ")";
      o.host = host;
      o.fault = "recipient_transient";
      job->last = o;
      return try_next(job);
    }
    sockaddr_storage addr = r.allowed.front();
    if (addr.ss_family == AF_INET)
      reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(static_cast<uint16_t>(cfg_.port));
    else
      reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(static_cast<uint16_t>(cfg_.port));
    submit(addr);
  });
  pending_.insert(*id);
}

}  // namespace deliverd::smtp
