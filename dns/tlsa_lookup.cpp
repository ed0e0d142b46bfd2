#include "dns/tlsa_lookup.h"

#include <algorithm>
#include <stdexcept>

#include "core/log.h"
#include "core/metrics.h"
#include "dns/dns_message.h"

namespace deliverd::dns {

namespace {

struct Metrics {
  core::Family<core::Counter>& lookups;
  core::Counter& cache_hits;
  core::Gauge& entries;
  core::Counter& result(TlsaResult::Status s) { return lookups.with({std::string(to_string(s))}); }
};

Metrics& metrics() {
  auto& r = core::Registry::global();
  static Metrics m{
      r.counter("deliverd_dane_tlsa_lookups_total",
                "TLSA lookups answered by the validating resolver (or failed), by DANE result", {"result"}),
      r.counter("deliverd_dane_tlsa_cache_hits_total", "TLSA lookups answered from the cache").get(),
      r.gauge("deliverd_dane_tlsa_cache_entries", "TLSA answers held in the cache").get(),
  };
  return m;
}

TlsaResult failed(std::string detail) {
  TlsaResult r;
  r.status = TlsaResult::Status::Failed;
  r.detail = std::move(detail);
  return r;
}

std::string rcode_text(const TlsaResponse& r) {
  switch (r.rcode) {
    case Rcode::NoError:
      return "NOERROR";
    case Rcode::NxDomain:
      return "NXDOMAIN";
    case Rcode::ServFail:
      return "SERVFAIL";
    case Rcode::Refused:
      return "REFUSED";
    default:
      return "rcode " + std::to_string(r.rcode_value);
  }
}

}  // namespace

std::string tlsa_name(std::string_view host, int port) {
  std::string h = normalize_host_name(host).value_or(std::string(host));
  return "_" + std::to_string(port) + "._tcp." + h;
}

TlsaResult tlsa_result_from(const TlsaResponse& r) {
  if (!r.ok()) return failed("malformed answer: " + r.error);
  if (r.truncated) return failed("truncated answer (TC) from the validating resolver");
  TlsaResult out;
  std::string flags = rcode_text(r) + (r.authenticated ? ", AD=1" : ", AD=0");
  if (r.rcode == Rcode::ServFail) {
    // A validating resolver answers SERVFAIL for a bogus signature (RFC 4035 §5.5): a lookup
    // failure, never "no DANE" (RFC 7672 §2.2).
    out.status = TlsaResult::Status::Bogus;
    out.detail = "SERVFAIL from the validating resolver (bogus DNSSEC or no answer upstream)";
    return out;
  }
  if (r.rcode != Rcode::NoError && r.rcode != Rcode::NxDomain) return failed(flags + " from the validating resolver");
  if (!r.authenticated) {
    out.status = TlsaResult::Status::Insecure;
    out.detail = flags + ": not authenticated";
    if (!r.records.empty()) out.detail += ", " + std::to_string(r.records.size()) + " TLSA record(s) ignored";
    return out;
  }
  if (r.rcode == Rcode::NoError && !r.records.empty()) {
    out.status = TlsaResult::Status::Secure;
    out.records = r.records;
    out.detail = flags + ", " + std::to_string(r.records.size()) + " TLSA record(s) at " + r.owner;
    if (r.malformed_records) out.detail += ", " + std::to_string(r.malformed_records) + " malformed ignored";
    return out;
  }
  out.status = TlsaResult::Status::NoRecords;
  out.detail = flags + (r.rcode == Rcode::NxDomain ? ": authenticated denial (no such name)"
                                                   : ": authenticated denial (no TLSA record)");
  if (r.malformed_records) out.detail += ", " + std::to_string(r.malformed_records) + " malformed ignored";
  return out;
}

TlsaResolver* TlsaResolver::create(uv_loop_t* loop, const TlsaResolverConfig& cfg) {
  if (cfg.servers.empty()) throw std::runtime_error("dns: dnssec_resolver: a validating resolver must be configured");
  if (cfg.timeout_ms < 1 || cfg.tries < 1 || cfg.max_ttl_s < 0 || cfg.negative_ttl_s < 0)
    throw std::runtime_error("dns: dnssec_resolver: timeout_ms and tries must be at least 1, TTLs not negative");
  auto* r = new TlsaResolver(loop, cfg);
  core::log_info("dane_tlsa_resolver_started",
                 {{"servers", r->ares_.servers_csv()}, {"timeout_ms", std::to_string(cfg.timeout_ms)}});
  return r;
}

// NOCHECKRESP: SERVFAIL and REFUSED come back to us as answers instead of making c-ares try the
// next server and report a bare error; a SERVFAIL is what a bogus signature looks like.
TlsaResolver::TlsaResolver(uv_loop_t* loop, const TlsaResolverConfig& cfg)
    : loop_(loop), cfg_(cfg),
      ares_(loop, AresOptions{cfg.servers, cfg.timeout_ms, cfg.tries, ARES_FLAG_NOCHECKRESP}, [this] { delete this; }),
      cache_(cfg.max_cache_entries, metrics().entries) {}

TlsaResolver::~TlsaResolver() = default;

TlsaResolver::RequestId TlsaResolver::lookup(const std::string& name, Callback cb) {
  RequestId id = next_id_++;
  if (closing_) return id;
  auto key = normalize_host_name(name);
  bool overloaded = waiters_.size() >= cfg_.max_pending;
  waiters_.emplace(id, std::move(cb));
  if (!key || overloaded) {
    TlsaResult r = failed(key ? "overloaded: " + std::to_string(cfg_.max_pending) + " TLSA lookups outstanding"
                              : "not a valid DNS name: '" + name.substr(0, 300) + "'");
    metrics().result(r.status).inc();
    ares_.schedule([this, id, r = std::move(r)]() mutable { deliver(id, std::move(r)); });
    return id;
  }
  if (const TlsaResult* hit = cache_get(*key)) {
    metrics().cache_hits.inc();
    TlsaResult r = *hit;
    r.from_cache = true;
    ares_.schedule([this, id, r = std::move(r)]() mutable { deliver(id, std::move(r)); });
    return id;
  }
  auto [it, fresh] = inflight_.try_emplace(*key);
  it->second.push_back(id);
  if (!fresh) return id;  // the same name is already on the wire: share its answer
  std::string error;
  std::string query = build_tlsa_query(next_query_id_++, *key, &error);
  if (query.empty()) {
    finish_query(*key, failed(error), 0);
    return id;
  }
  // c-ares may call back at once (no usable server): finish_query defers delivery to the loop.
  ares_send(ares_.channel(), reinterpret_cast<const unsigned char*>(query.data()), static_cast<int>(query.size()),
            &TlsaResolver::on_answer, new QueryCtx{this, *key});
  ares_.sent();
  return id;
}

void TlsaResolver::on_answer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<QueryCtx> ctx(static_cast<QueryCtx*>(arg));
  TlsaResolver* self = ctx->self;
  if (self->closing_ || status == ARES_EDESTRUCTION) return;
  TlsaResult result;
  uint32_t ttl = 0;
  if (status != ARES_SUCCESS) {
    result = failed(status == ARES_ETIMEOUT ? std::string("timeout: no answer from the validating resolver")
                                            : std::string("lookup failed: ") + ares_strerror(status));
  } else {
    // ares_send sets its own query id and matches the reply to it: no id to check here.
    TlsaResponse resp = parse_tlsa_response(abuf, static_cast<size_t>(std::max(alen, 0)), std::nullopt, ctx->name);
    result = tlsa_result_from(resp);
    uint32_t max_ttl = static_cast<uint32_t>(self->cfg_.max_ttl_s);
    uint32_t neg_cap = std::min(static_cast<uint32_t>(self->cfg_.negative_ttl_s), max_ttl);
    switch (result.status) {
      case TlsaResult::Status::Secure:
        ttl = std::min(resp.answer_ttl, max_ttl);
        break;
      case TlsaResult::Status::Insecure:
        ttl = resp.records.empty() ? std::min(resp.negative_ttl.value_or(neg_cap), neg_cap)
                                   : std::min(resp.answer_ttl, max_ttl);
        break;
      case TlsaResult::Status::NoRecords:
        ttl = std::min(resp.negative_ttl.value_or(neg_cap), neg_cap);
        break;
      default:
        ttl = 0;  // a failure is asked again next time, never remembered as an answer
        break;
    }
  }
  core::log_debug("dane_tlsa_lookup", {{"name", ctx->name},
                                       {"result", to_string(result.status)},
                                       {"detail", result.detail},
                                       {"ttl", std::to_string(ttl)}});
  self->finish_query(ctx->name, std::move(result), ttl);
}

void TlsaResolver::finish_query(const std::string& name, TlsaResult result, uint32_t ttl_s) {
  metrics().result(result.status).inc();
  cache_put(name, result, ttl_s);
  auto node = inflight_.extract(name);
  if (node.empty()) return;
  auto shared = std::make_shared<const TlsaResult>(std::move(result));
  for (RequestId id : node.mapped()) ares_.schedule([this, id, shared] { deliver(id, *shared); });
}

void TlsaResolver::deliver(RequestId id, TlsaResult result) {
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return;  // cancelled
  Callback cb = std::move(it->second);
  waiters_.erase(it);
  cb(result);
}

void TlsaResolver::cancel(RequestId id) { waiters_.erase(id); }

void TlsaResolver::cache_put(const std::string& name, const TlsaResult& result, uint32_t ttl_s) {
  cache_.put(name, result, ttl_s, uv_now(loop_));
}

const TlsaResult* TlsaResolver::cache_get(const std::string& name) { return cache_.get(name, uv_now(loop_)); }

void TlsaResolver::clear_cache() { cache_.clear(); }

void TlsaResolver::close() {
  if (closing_) return;
  closing_ = true;
  waiters_.clear();
  inflight_.clear();
  clear_cache();
  ares_.close();  // query callbacks see closing_; frees this once its handles are closed
}

}  // namespace deliverd::dns
