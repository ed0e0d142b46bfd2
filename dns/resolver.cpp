#include "dns/resolver.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/domain.h"
#include "core/log.h"
#include "core/metrics.h"
#include "dns/dns_message.h"

namespace deliverd::dns {

namespace {

constexpr int kTypeA = 1;
constexpr int kTypeMx = 15;
constexpr int kTypeTxt = 16;
constexpr int kTypeAaaa = 28;
constexpr int kMaxAddrsPerAnswer = 32;
constexpr size_t kMaxMxHosts = 64;
constexpr size_t kMaxTxtRecords = 16;
constexpr size_t kMaxTxtRecordBytes = 4096;

const char* type_label(int type) {
  switch (type) {
    case kTypeA:
      return "a";
    case kTypeAaaa:
      return "aaaa";
    case kTypeTxt:
      return "txt";
    default:
      return "mx";
  }
}

struct Metrics {
  core::Family<core::Counter>& queries;
  core::Family<core::Counter>& hits;
  core::Gauge& entries;
  core::Family<core::Counter>& refused;
  // Children looked up once: a cache hit should not build a label vector.
  core::Counter& hits_a = hits.with({"a"});
  core::Counter& hits_aaaa = hits.with({"aaaa"});
  core::Counter& hits_mx = hits.with({"mx"});
  core::Counter& hits_txt = hits.with({"txt"});
  core::Counter& hit_counter(int type) {
    return type == kTypeA ? hits_a : type == kTypeAaaa ? hits_aaaa : type == kTypeTxt ? hits_txt : hits_mx;
  }
};

Metrics& metrics() {
  auto& r = core::Registry::global();
  static Metrics m{
      r.counter("deliverd_dns_queries_total", "DNS queries sent, by record type and result", {"type", "result"}),
      r.counter("deliverd_dns_cache_hits_total", "DNS lookups answered from the cache", {"type"}),
      r.gauge("deliverd_dns_cache_entries", "Answers held in the DNS cache").get(),
      r.counter("deliverd_targets_refused_total", "Addresses refused by the address policy", {"reason"}),
  };
  return m;
}

Code ares_code(int status) {
  switch (status) {
    case ARES_SUCCESS:
      return Code::Ok;
    case ARES_ENOTFOUND:
      return Code::Nxdomain;
    case ARES_ENODATA:
      return Code::Nodata;
    case ARES_ETIMEOUT:
      return Code::Timeout;
    case ARES_ESERVFAIL:
      return Code::Servfail;
    case ARES_EREFUSED:
      return Code::ServerRefused;
    case ARES_ECONNREFUSED:
      return Code::ConnectionRefused;
    case ARES_EBADRESP:
    case ARES_EFORMERR:
      return Code::BadResponse;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return Code::Cancelled;
    default:
      return Code::Error;
  }
}

void add_unique(std::vector<sockaddr_storage>& out, const sockaddr_storage& ss) {
  for (const auto& o : out) {
    if (o.ss_family != ss.ss_family) continue;
    if (ss.ss_family == AF_INET && std::memcmp(&reinterpret_cast<const sockaddr_in&>(o).sin_addr,
                                               &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, 4) == 0)
      return;
    if (ss.ss_family == AF_INET6 && std::memcmp(&reinterpret_cast<const sockaddr_in6&>(o).sin6_addr,
                                                &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, 16) == 0)
      return;
  }
  out.push_back(ss);
}

// When no address came back, the most telling reason: an authoritative "no such name" first.
Code combine_errors(Code a, Code b) {
  for (Code c : {Code::Nxdomain, Code::Timeout, Code::Servfail})
    if (a == c || b == c) return c;
  if (a != Code::Ok && a != Code::Nodata) return a;
  if (b != Code::Ok && b != Code::Nodata) return b;
  return Code::NoAddress;
}

// The relay host's name did not resolve: the reason an outcome names.
core::Reason dns_reason(Code c) {
  switch (c) {
    case Code::Nxdomain: return core::Reason::DnsNxdomain;
    case Code::NoAddress: return core::Reason::DnsNoAddress;
    case Code::Timeout: return core::Reason::DnsTimeout;
    case Code::Servfail: return core::Reason::DnsServfail;
    case Code::ServerRefused: return core::Reason::DnsServerRefused;
    case Code::ConnectionRefused: return core::Reason::DnsConnectionRefused;
    case Code::BadResponse: return core::Reason::DnsBadResponse;
    case Code::Cancelled: return core::Reason::DnsCancelled;
    case Code::Overloaded: return core::Reason::DnsOverloaded;
    case Code::RefusedByPolicy: return core::Reason::SsrfRefused;
    case Code::InvalidName: return core::Reason::InvalidHost;
    default: return core::Reason::DnsError;
  }
}

// A name that must never be a target, whatever DNS would say: refused without asking, counted
// and logged like a refused address.
std::optional<std::string_view> refused_name(const std::string& name) {
  auto rule = core::special_use_rule(name);
  if (!rule) return std::nullopt;
  metrics().refused.with({"special_use_name"}).inc();
  core::log_warn("dns_target_refused", {{"host", name}, {"reason", "special_use_name"}, {"rule", *rule}});
  return rule;
}

}  // namespace

std::optional<core::Outcome> resolve_failure_outcome(const ResolvedHost& r) {
  if (r.error == Code::None) return std::nullopt;
  core::Outcome o;
  o.phase = core::Phase::Resolve;
  o.host = r.host;
  o.reason = dns_reason(r.error);
  if (r.error == Code::RefusedByPolicy || r.error == Code::InvalidName) {
    o.status = core::Status::Rejected;
    std::string detail = "no usable address for " + r.host;
    for (const auto& [ip, why] : r.refused) detail += "; " + ip + " refused (" + why + ")";
    o.detail = detail;
  } else if (r.error == Code::Nxdomain || r.error == Code::NoAddress) {
    o.status = core::Status::Bounced;
    o.detail = r.host + ": " + (r.error == Code::Nxdomain ? "no such domain" : "no A or AAAA record");
  } else {
    o.status = core::Status::Deferred;
    o.detail = r.host + ": lookup failed (" + std::string(to_string(r.error)) + ")";
  }
  return o;
}

Resolver* Resolver::create(uv_loop_t* loop, const ResolverConfig& cfg, const AddressPolicy* policy) {
  if (cfg.timeout_ms < 1 || cfg.tries < 1 || cfg.max_ttl_s < 0 || cfg.negative_ttl_s < 0)
    throw std::runtime_error("dns: timeout_ms and tries must be at least 1, TTLs not negative");
  auto* r = new Resolver(loop, cfg, policy);
  const std::string& csv = r->ares_.servers_csv();
  core::log_info("dns_resolver_started", {{"servers", csv.empty() ? std::string_view("system") : std::string_view(csv)},
                                          {"timeout_ms", std::to_string(cfg.timeout_ms)}});
  return r;
}

Resolver::Resolver(uv_loop_t* loop, const ResolverConfig& cfg, const AddressPolicy* policy)
    : loop_(loop), cfg_(cfg), policy_(policy),
      ares_(loop, AresOptions{cfg.servers, cfg.timeout_ms, cfg.tries, 0}, [this] { delete this; }),
      cache_(cfg.max_cache_entries, metrics().entries) {}

Resolver::~Resolver() = default;

void Resolver::set_policy(const AddressPolicy* policy) { policy_ = policy; }

Resolver::RequestId Resolver::resolve_host(const std::string& host, std::function<void(const ResolvedHost&)> cb) {
  RequestId id = next_id_++;
  if (closing_) return id;
  HostReq& req = host_reqs_[id];
  req.host = host;
  req.cb = std::move(cb);
  if (auto lit = parse_ip_literal(host)) {
    req.a = std::make_shared<Answer>(Answer{Code::Ok, {*lit}, {}, false, {}});
    req.aaaa = std::make_shared<Answer>(Answer{Code::Nodata, {}, {}, false, {}});
    ares_.schedule([this, id] { finish_host(id); });
    return id;
  }
  auto name = normalize_host_name(host);
  if (auto rule = name ? refused_name(*name) : std::nullopt) {
    req.ready = ResolvedHost{host, {}, {{*name, std::string(*rule)}}, Code::RefusedByPolicy};
    ares_.schedule([this, id] { finish_host(id); });
    return id;
  }
  if (!name || pending() > cfg_.max_pending) {
    req.ready = ResolvedHost{host, {}, {}, name ? Code::Overloaded : Code::InvalidName};
    ares_.schedule([this, id] { finish_host(id); });
    return id;
  }
  req.pending = 2;
  auto on = [this, id](bool v6) {
    return [this, id, v6](const AnswerPtr& ans) {
      auto it = host_reqs_.find(id);
      if (it == host_reqs_.end()) return;
      (v6 ? it->second.aaaa : it->second.a) = ans;
      if (--it->second.pending == 0) finish_host(id);
    };
  };
  fetch(kTypeA, *name, on(false));
  fetch(kTypeAaaa, *name, on(true));
  return id;
}

void Resolver::finish_host(RequestId id) {
  auto it = host_reqs_.find(id);
  if (it == host_reqs_.end()) return;
  HostReq req = std::move(it->second);
  host_reqs_.erase(it);
  ResolvedHost out;
  if (req.ready) {
    out = std::move(*req.ready);
  } else {
    out.host = req.host;
    std::vector<sockaddr_storage> addrs;
    for (const auto& ans : {req.a, req.aaaa})
      if (ans)
        for (const auto& ss : ans->addrs) add_unique(addrs, ss);
    if (addrs.empty())
      out.error = combine_errors(req.a ? req.a->code : Code::Error, req.aaaa ? req.aaaa->code : Code::Error);
    for (const auto& ss : addrs) {
      auto verdict = policy_ ? policy_->check(reinterpret_cast<const sockaddr*>(&ss))
                             : default_policy_.check(reinterpret_cast<const sockaddr*>(&ss));
      if (verdict.allowed) {
        out.allowed.push_back(ss);
      } else {
        metrics().refused.with({verdict.reason}).inc();
        out.refused.emplace_back(address_to_string(reinterpret_cast<const sockaddr*>(&ss)), verdict.reason);
      }
    }
    if (out.allowed.empty() && !out.refused.empty()) {
      out.error = Code::RefusedByPolicy;
      core::log_warn("dns_target_refused", {{"host", out.host},
                                            {"ip", out.refused.front().first},
                                            {"reason", out.refused.front().second},
                                            {"refused", std::to_string(out.refused.size())}});
    } else if (!out.refused.empty()) {
      core::log_info("dns_addresses_dropped",
                     {{"host", out.host}, {"ip", out.refused.front().first}, {"reason", out.refused.front().second}});
    }
  }
  req.cb(out);
}

Resolver::RequestId Resolver::resolve_mx(const std::string& domain, std::function<void(const MxResult&)> cb) {
  RequestId id = next_id_++;
  if (closing_) return id;
  MxReq& req = mx_reqs_[id];
  req.cb = std::move(cb);
  auto name = normalize_host_name(domain);
  if (auto rule = name ? refused_name(*name) : std::nullopt) {
    MxResult r;
    r.error = Code::RefusedByPolicy;
    r.detail = *name + " is refused: " + std::string(*rule);
    req.ready = r;
    ares_.schedule([this, id] { finish_mx(id, nullptr); });
    return id;
  }
  if (!name || pending() > cfg_.max_pending) {
    MxResult r;
    r.error = name ? Code::Overloaded : Code::InvalidName;
    req.ready = r;
    ares_.schedule([this, id] { finish_mx(id, nullptr); });
    return id;
  }
  fetch(kTypeMx, *name, [this, id](const AnswerPtr& ans) { finish_mx(id, ans); });
  return id;
}

Resolver::RequestId Resolver::resolve_txt(const std::string& name, std::function<void(const TxtResult&)> cb) {
  RequestId id = next_id_++;
  if (closing_) return id;
  TxtReq& req = txt_reqs_[id];
  req.cb = std::move(cb);
  auto normal = normalize_host_name(name);
  if (auto rule = normal ? refused_name(*normal) : std::nullopt) req.ready = Code::RefusedByPolicy;
  else if (!normal) req.ready = Code::InvalidName;
  else if (pending() > cfg_.max_pending) req.ready = Code::Overloaded;
  if (req.ready != Code::None) {
    ares_.schedule([this, id] { finish_txt(id, nullptr); });
    return id;
  }
  fetch(kTypeTxt, *normal, [this, id](const AnswerPtr& ans) { finish_txt(id, ans); });
  return id;
}

void Resolver::finish_txt(RequestId id, const AnswerPtr& ans) {
  auto it = txt_reqs_.find(id);
  if (it == txt_reqs_.end()) return;
  TxtReq req = std::move(it->second);
  txt_reqs_.erase(it);
  TxtResult out;
  if (req.ready != Code::None) out.error = req.ready;
  else if (ans->code == Code::Ok) out.records = ans->txt;
  else out.error = ans->code;
  req.cb(out);
}

void Resolver::finish_mx(RequestId id, const AnswerPtr& ans) {
  auto it = mx_reqs_.find(id);
  if (it == mx_reqs_.end()) return;
  MxReq req = std::move(it->second);
  mx_reqs_.erase(it);
  MxResult out;
  if (req.ready) {
    out = std::move(*req.ready);
  } else if (ans->code == Code::Ok) {
    out.hosts = ans->mx;
    out.null_mx = ans->null_mx;
  } else if (ans->code == Code::Nodata) {
    out.no_mx = true;
  } else {
    out.error = ans->code;
  }
  req.cb(out);
}

Resolver::RequestId Resolver::resolve_service_host(const std::string& host, ServiceHostCallback cb) {
  RequestId id = next_id_++;
  if (closing_) return id;
  service_reqs_.emplace(id, std::move(cb));
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  // c-ares may answer at once (a hosts-file entry, a bad name): the callback defers delivery.
  ares_getaddrinfo(ares_.channel(), host.c_str(), nullptr, &hints, &Resolver::on_service_host_done, new ServiceCtx{this, id});
  ares_.sent();
  return id;
}

void Resolver::on_service_host_done(void* arg, int status, int /*timeouts*/, struct ares_addrinfo* info) {
  std::unique_ptr<ServiceCtx> ctx(static_cast<ServiceCtx*>(arg));
  std::vector<std::string> ips;
  if (status == ARES_SUCCESS && info) {
    for (auto* n = info->nodes; n; n = n->ai_next) {
      std::string ip = address_to_string(n->ai_addr);
      if (!ip.empty() && std::find(ips.begin(), ips.end(), ip) == ips.end()) ips.push_back(std::move(ip));
    }
  }
  if (info) ares_freeaddrinfo(info);
  if (status == ARES_EDESTRUCTION) return;  // closing: the request map is already gone
  Resolver* self = ctx->self;
  if (self->closing_) return;
  std::string error = status == ARES_SUCCESS ? (ips.empty() ? "no address" : "") : ares_strerror(status);
  self->ares_.schedule([self, id = ctx->id, ips = std::move(ips), error = std::move(error)]() mutable {
    auto it = self->service_reqs_.find(id);
    if (it == self->service_reqs_.end()) return;  // cancelled
    auto cb = std::move(it->second);
    self->service_reqs_.erase(it);
    cb(std::move(ips), std::move(error));
  });
}

void Resolver::cancel(RequestId id) {
  host_reqs_.erase(id);
  mx_reqs_.erase(id);
  txt_reqs_.erase(id);
  service_reqs_.erase(id);
}

void Resolver::fetch(int type, const std::string& name, std::function<void(const AnswerPtr&)> on_answer) {
  std::string key = std::string(type_label(type)) + ":" + name;
  if (AnswerPtr hit = cache_get(key)) {
    metrics().hit_counter(type).inc();
    ares_.schedule([hit, cb = std::move(on_answer)] { cb(hit); });
    return;
  }
  auto [it, fresh] = inflight_.try_emplace(key);
  it->second.push_back(std::move(on_answer));
  if (!fresh) return;  // an identical question is already on the wire
  auto* ctx = new QueryCtx{this, key, type};
  ares_query(ares_.channel(), name.c_str(), ns_c_in, type, &Resolver::on_query_done, ctx);
  ares_.sent();
}

void Resolver::on_query_done(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<QueryCtx> ctx(static_cast<QueryCtx*>(arg));
  Resolver* self = ctx->self;
  if (self->closing_) return;
  auto ans = std::make_shared<Answer>();
  uint32_t ttl = 0;
  if (status == ARES_SUCCESS && ctx->type == kTypeA) {
    ares_addrttl ttls[kMaxAddrsPerAnswer];
    int n = kMaxAddrsPerAnswer;
    status = ares_parse_a_reply(abuf, alen, nullptr, ttls, &n);
    if (status == ARES_SUCCESS && n == 0) status = ARES_ENODATA;
    for (int i = 0; status == ARES_SUCCESS && i < n; ++i) {
      sockaddr_storage ss{};
      auto* in = reinterpret_cast<sockaddr_in*>(&ss);
      in->sin_family = AF_INET;
      in->sin_addr = ttls[i].ipaddr;
      ans->addrs.push_back(ss);
      uint32_t t = static_cast<uint32_t>(std::max(0, ttls[i].ttl));
      ttl = i == 0 ? t : std::min(ttl, t);
    }
  } else if (status == ARES_SUCCESS && ctx->type == kTypeAaaa) {
    ares_addr6ttl ttls[kMaxAddrsPerAnswer];
    int n = kMaxAddrsPerAnswer;
    status = ares_parse_aaaa_reply(abuf, alen, nullptr, ttls, &n);
    if (status == ARES_SUCCESS && n == 0) status = ARES_ENODATA;
    for (int i = 0; status == ARES_SUCCESS && i < n; ++i) {
      sockaddr_storage ss{};
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
      in6->sin6_family = AF_INET6;
      std::memcpy(&in6->sin6_addr, &ttls[i].ip6addr, 16);
      ans->addrs.push_back(ss);
      uint32_t t = static_cast<uint32_t>(std::max(0, ttls[i].ttl));
      ttl = i == 0 ? t : std::min(ttl, t);
    }
  } else if (status == ARES_SUCCESS && ctx->type == kTypeTxt) {
    ares_txt_ext* txt = nullptr;
    status = ares_parse_txt_reply_ext(abuf, alen, &txt);
    if (status == ARES_SUCCESS) {
      // A record's strings arrive as separate entries; record_start marks the first of each.
      bool keep = false;
      for (ares_txt_ext* t = txt; t; t = t->next) {
        if (t->record_start) {
          keep = ans->txt.size() < kMaxTxtRecords;
          if (keep) ans->txt.emplace_back();
        }
        if (!keep || ans->txt.empty()) continue;
        std::string& rec = ans->txt.back();
        // Cut, not dropped: a record's presence counts (MTA-STS wants exactly one v=STSv1).
        size_t room = kMaxTxtRecordBytes - rec.size();
        rec.append(reinterpret_cast<const char*>(t->txt), std::min(room, t->length));
      }
      ares_free_data(txt);
      if (ans->txt.empty()) status = ARES_ENODATA;
      ttl = min_answer_ttl(abuf, static_cast<size_t>(std::max(alen, 0))).value_or(0);
    }
  } else if (status == ARES_SUCCESS) {
    ares_mx_reply* mx = nullptr;
    status = ares_parse_mx_reply(abuf, alen, &mx);
    if (status == ARES_SUCCESS) {
      size_t records = 0;
      bool root_target = false;
      for (ares_mx_reply* m = mx; m; m = m->next) {
        ++records;
        std::string_view host = m->host ? m->host : "";
        if (host.empty() || host == ".") {
          root_target = true;
          continue;
        }
        auto name = normalize_host_name(host);
        if (!name) {
          // Kept as given so resolve_host can vet it: an MX "name" that is really an IP literal
          // must meet the address policy, not vanish silently.
          if (!parse_ip_literal(host)) continue;
          name = std::string(host);
        }
        if (ans->mx.size() < kMaxMxHosts) ans->mx.emplace_back(m->priority, *name);
      }
      ares_free_data(mx);
      ans->null_mx = root_target && records == 1;
      std::sort(ans->mx.begin(), ans->mx.end());
      if (ans->mx.empty() && !ans->null_mx) status = ARES_ENODATA;
      ttl = min_answer_ttl(abuf, static_cast<size_t>(std::max(alen, 0))).value_or(0);
    }
  }
  ans->code = ares_code(status);
  metrics().queries.with({type_label(ctx->type), std::string(to_string(ans->code))}).inc();
  if (ans->code == Code::Ok) {
    self->cache_put(ctx->key, ans, std::min<uint32_t>(ttl, static_cast<uint32_t>(self->cfg_.max_ttl_s)));
  } else if (ans->code == Code::Nxdomain || ans->code == Code::Nodata) {
    self->cache_put(ctx->key, ans, static_cast<uint32_t>(std::min(self->cfg_.negative_ttl_s, self->cfg_.max_ttl_s)));
  } else if (ans->code == Code::Timeout) {
    self->cache_put(ctx->key, ans, static_cast<uint32_t>(std::max(0, self->cfg_.timeout_ttl_s)));
  }
  auto node = self->inflight_.extract(ctx->key);
  if (node.empty()) return;
  AnswerPtr shared = ans;
  for (auto& waiter : node.mapped()) self->ares_.schedule([shared, cb = std::move(waiter)] { cb(shared); });
}

void Resolver::cache_put(const std::string& key, AnswerPtr answer, uint32_t ttl_s) {
  cache_.put(key, std::move(answer), ttl_s, uv_now(loop_));
}

Resolver::AnswerPtr Resolver::cache_get(const std::string& key) {
  const AnswerPtr* hit = cache_.get(key, uv_now(loop_));
  return hit ? *hit : nullptr;
}

void Resolver::clear_cache() { cache_.clear(); }

void Resolver::close() {
  if (closing_) return;
  closing_ = true;
  host_reqs_.clear();
  mx_reqs_.clear();
  txt_reqs_.clear();
  service_reqs_.clear();
  inflight_.clear();
  clear_cache();
  ares_.close();  // runs the query callbacks (they see closing_); frees this once its handles are closed
}

}  // namespace deliverd::dns
