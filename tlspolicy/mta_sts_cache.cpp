#include "tlspolicy/mta_sts_cache.h"

#include <simdjson.h>

#include <chrono>

#include "core/ascii.h"
#include "core/domain.h"
#include "core/json_writer.h"
#include "core/log.h"
#include "core/metrics.h"
#include "queue/redis_client.h"
#include "tlspolicy/mta_sts_record.h"

namespace deliverd::tlspolicy {

namespace {

// The process-wide metrics mirror StsCounters (which tests read per cache).
struct Metrics {
  core::Family<core::Counter>& fetched;
  core::Family<core::Counter>& cached;
  core::Family<core::Counter>& failures;
  core::Counter& no_policy;
  core::Counter& refreshes;
  core::Counter& shared;
};

Metrics& metrics() {
  auto& r = core::Registry::global();
  static Metrics m{
      r.counter("deliverd_mta_sts_policies_fetched_total", "MTA-STS policies fetched over HTTPS, by mode", {"mode"}),
      r.counter("deliverd_mta_sts_cached_total", "MTA-STS lookups answered from the cache (memory or Redis), by mode",
                {"mode"}),
      r.counter("deliverd_mta_sts_failures_total", "MTA-STS record or policy failures, by reason", {"reason"}),
      r.counter("deliverd_mta_sts_no_policy_total", "MTA-STS lookups that ended without a policy").get(),
      r.counter("deliverd_mta_sts_refreshes_total", "Background MTA-STS refreshes started (the TXT id changed)").get(),
      r.counter("deliverd_mta_sts_shared_total", "MTA-STS policies taken from Redis that another daemon fetched").get(),
  };
  return m;
}

void count_fetched(StsCounters& c, StsMode m) {
  ++c.fetched[static_cast<size_t>(m)];
  metrics().fetched.with({std::string(to_string(m))}).inc();
}
void count_cached(StsCounters& c, StsMode m, size_t n) {
  c.cached[static_cast<size_t>(m)] += n;
  metrics().cached.with({std::string(to_string(m))}).inc(static_cast<double>(n));
}
void count_failed(StsCounters& c, StsFailure f) {
  ++c.failures[static_cast<size_t>(f)];
  metrics().failures.with({std::string(to_string(f))}).inc();
}
void count_no_policy(StsCounters& c, size_t n) {
  c.no_policy += n;
  metrics().no_policy.inc(static_cast<double>(n));
}

int64_t system_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

MtaStsCache::MtaStsCache(uv_loop_t* loop, TxtLookup txt, PolicyFetcher* fetcher, queue::RedisClient* redis,
                         StsCacheOptions opts, WallClock clock)
    : loop_(loop), txt_(std::move(txt)), fetcher_(fetcher), redis_(redis), opts_(std::move(opts)),
      clock_(std::move(clock)), alive_(std::make_shared<bool>(true)) {}

MtaStsCache::~MtaStsCache() {
  *alive_ = false;
  for (const auto& [domain, id] : fetching_) fetcher_->cancel(id);
  for (const auto& [domain, id] : refreshing_) fetcher_->cancel(id);
}

int64_t MtaStsCache::now_ms() const { return clock_ ? clock_() : system_ms(); }

std::string MtaStsCache::redis_key(std::string_view domain) const {
  return opts_.redis_prefix + "mta-sts:" + std::string(domain);
}

std::string MtaStsCache::to_json(const Entry& e) {
  core::JsonWriter w;
  w.begin_object().field("id", e.id).field("fetched_at", e.fetched_at_ms).key("policy").begin_object();
  w.field("mode", to_string(e.policy.mode)).field("max_age", e.policy.max_age_s).key("mx").begin_array();
  for (const auto& mx : e.policy.mx) w.value(mx);
  w.end_array().end_object().end_object();
  return w.take();
}

std::optional<MtaStsCache::Entry> MtaStsCache::from_json(std::string_view json) {
  // Another daemon wrote it, but Redis is shared: what is read back is checked like any input,
  // and the policy goes through the same rules as a fetched one.
  namespace od = simdjson::ondemand;
  if (json.size() > 2 * kMaxPolicyBytes) return std::nullopt;
  simdjson::padded_string padded(json);
  od::parser parser;
  od::document doc;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) return std::nullopt;
  Entry e;
  std::string_view s;
  int64_t n = 0;
  if (doc["id"].get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
  e.id = std::string(s);
  if (doc["fetched_at"].get_int64().get(n) != simdjson::SUCCESS) return std::nullopt;
  e.fetched_at_ms = n;
  od::object pol;
  if (doc["policy"].get_object().get(pol) != simdjson::SUCCESS) return std::nullopt;
  // Rebuilt as policy text and parsed, so one parser decides what a valid policy is.
  std::string text = "version: STSv1\n";
  if (pol["mode"].get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
  text += "mode: " + std::string(s) + "\n";
  if (pol["max_age"].get_int64().get(n) != simdjson::SUCCESS || n < 0) return std::nullopt;
  text += "max_age: " + std::to_string(n) + "\n";
  od::array mx;
  if (pol["mx"].get_array().get(mx) != simdjson::SUCCESS) return std::nullopt;
  for (auto v : mx) {
    if (v.get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
    if (s.find_first_of("\r\n") != std::string_view::npos) return std::nullopt;
    text += "mx: " + std::string(s) + "\n";
  }
  auto p = parse_mta_sts_policy(text);
  if (!p) return std::nullopt;
  if (e.id.empty() || e.id.size() > kMaxStsIdLength) return std::nullopt;
  for (char c : e.id)
    if (!core::ascii_is_alnum(c)) return std::nullopt;
  e.policy = std::move(p.value());
  return e;
}

void MtaStsCache::lookup(const std::string& domain_in, Callback cb) {
  auto norm = core::normalize_domain(domain_in);
  if (!norm) {
    StsDecision d;
    d.domain = domain_in;
    d.failure = StsError{StsFailure::Other, norm.error()};
    count_no_policy(counters_, 1);
    return cb(d);
  }
  const std::string& domain = norm.value();
  if (auto it = flights_.find(domain); it != flights_.end()) {
    it->second.waiters.push_back(std::move(cb));
    return;
  }
  if (flights_.size() >= opts_.max_in_flight) {
    StsDecision d;
    d.domain = domain;
    d.failure = StsError{StsFailure::Other, "too many MTA-STS lookups in flight (" +
                                                std::to_string(opts_.max_in_flight) + ")"};
    count_no_policy(counters_, 1);
    return cb(d);
  }
  flights_[domain].waiters.push_back(std::move(cb));
  txt_("_mta-sts." + domain, [this, alive = alive_, domain](TxtAnswer a) {
    if (!*alive) return;
    on_txt(domain, std::move(a));
  });
}

const MtaStsCache::Entry* MtaStsCache::fresh_entry(const std::string& domain) {
  auto it = entries_.find(domain);
  if (it == entries_.end()) return nullptr;
  if (it->second.expires_ms() <= now_ms()) {
    entries_.erase(it);
    return nullptr;
  }
  return &it->second;
}

void MtaStsCache::on_txt(const std::string& domain, TxtAnswer a) {
  auto fit = flights_.find(domain);
  if (fit == flights_.end()) return;
  Flight& f = fit->second;
  if (a.status == TxtAnswer::Status::Found) {
    auto rec = parse_mta_sts_record(a.records);
    if (!rec) f.txt_failure = StsError{StsFailure::InvalidRecord, rec.error()};
    else if (rec.value()) f.txt_id = rec.value()->id;
  }
  // Nothing else to learn when what this process holds already answers: the TXT id matches, or
  // there is no (usable) record and the policy stays (RFC 8461 10.2).
  if (const Entry* e = fresh_entry(domain); e && (!f.txt_id || *f.txt_id == e->id)) {
    StsDecision d;
    d.policy = e->policy;
    d.id = e->id;
    d.source = StsSource::Cache;
    d.failure = f.txt_failure;
    return finish(domain, std::move(d));
  }
  read_shared(domain);
}

void MtaStsCache::read_shared(const std::string& domain) {
  if (!redis_) return decide(domain, std::nullopt);
  redis_->command({"GET", redis_key(domain)}, [this, alive = alive_, domain](const queue::RedisReply& r) {
    if (!*alive) return;
    std::optional<Entry> shared;
    if (r.type == queue::RedisReply::Type::String) {
      shared = from_json(r.str);
      if (!shared) core::log_warn("mta_sts_shared_unreadable", {{"domain", domain}});
    } else if (r.is_error()) {
      // Redis down is not a reason to go without a policy: the fetch still works.
      core::log_warn("mta_sts_shared_read_failed", {{"domain", domain}, {"error", r.str}});
    }
    decide(domain, std::move(shared));
  });
}

void MtaStsCache::decide(const std::string& domain, std::optional<Entry> shared) {
  auto fit = flights_.find(domain);
  if (fit == flights_.end()) return;
  Flight& f = fit->second;
  int64_t now = now_ms();
  if (shared && shared->expires_ms() <= now) shared.reset();
  const Entry* mine = fresh_entry(domain);
  // The newer of the two wins: another daemon may have fetched since this one did.
  if (shared && (!mine || shared->fetched_at_ms > mine->fetched_at_ms)) {
    if (!mine || mine->id != shared->id) {
      ++counters_.shared;
      metrics().shared.inc();
    }
    store(domain, *shared);
    mine = fresh_entry(domain);
  }
  StsDecision d;
  d.failure = f.txt_failure;
  if (mine) {
    d.policy = mine->policy;
    d.id = mine->id;
    d.source = StsSource::Cache;
    if (f.txt_id && *f.txt_id != mine->id) {
      refresh(domain, *f.txt_id);
      d.refreshing = true;
    }
    return finish(domain, std::move(d));
  }
  if (!f.txt_id) return finish(domain, std::move(d));  // no policy, nothing cached
  fetch_now(domain, *f.txt_id);
}

void MtaStsCache::fetch_now(const std::string& domain, const std::string& id) {
  auto rid = fetcher_->fetch(domain, [this, alive = alive_, domain, id](core::Result<MtaStsPolicy, StsError> r) {
    if (!*alive) return;
    fetching_.erase(domain);
    StsDecision d;
    if (!r) {
      count_failure(domain, r.error(), false);
      d.failure = r.error();
      return finish(domain, std::move(d));
    }
    count_fetched(counters_, r->mode);
    Entry e{id, r.value(), now_ms()};
    store(domain, e);
    publish(domain, e);
    d.policy = std::move(r.value());
    d.id = id;
    d.source = StsSource::Fetched;
    finish(domain, std::move(d));
  });
  fetching_[domain] = rid;
}

void MtaStsCache::refresh(const std::string& domain, const std::string& id) {
  if (refreshing_.count(domain)) return;
  ++counters_.refreshes;
  metrics().refreshes.inc();
  auto rid = fetcher_->fetch(domain, [this, alive = alive_, domain, id](core::Result<MtaStsPolicy, StsError> r) {
    if (!*alive) return;
    refreshing_.erase(domain);
    if (!r) return count_failure(domain, r.error(), true);
    count_fetched(counters_, r->mode);
    Entry e{id, std::move(r.value()), now_ms()};
    store(domain, e);
    publish(domain, e);
  });
  refreshing_[domain] = rid;
}

void MtaStsCache::store(const std::string& domain, const Entry& e) {
  if (!entries_.count(domain) && entries_.size() >= opts_.max_entries) {
    int64_t now = now_ms();
    for (auto it = entries_.begin(); it != entries_.end();)
      it = it->second.expires_ms() <= now ? entries_.erase(it) : std::next(it);
    // Still full: any one goes; Redis still has it for the next lookup.
    if (entries_.size() >= opts_.max_entries) entries_.erase(entries_.begin());
  }
  entries_[domain] = e;
}

void MtaStsCache::publish(const std::string& domain, const Entry& e) {
  // max_age 0 means "do not keep"; SET EX 0 would be an error anyway.
  if (!redis_ || e.policy.max_age_s <= 0) return;
  redis_->command({"SET", redis_key(domain), to_json(e), "EX", std::to_string(e.policy.max_age_s)},
                  [domain](const queue::RedisReply& r) {
                    if (r.is_error())
                      core::log_warn("mta_sts_shared_write_failed", {{"domain", domain}, {"error", r.str}});
                  });
}

void MtaStsCache::count_failure(const std::string& domain, const StsError& e, bool background) {
  count_failed(counters_, e.kind);
  std::string text = e.text();
  core::log_warn("mta_sts_fetch_failed",
                 {{"domain", domain}, {"reason", to_string(e.kind)}, {"detail", text},
                  {"background", background ? "true" : "false"}});
}

void MtaStsCache::finish(const std::string& domain, StsDecision d) {
  auto it = flights_.find(domain);
  if (it == flights_.end()) return;
  std::vector<Callback> waiters = std::move(it->second.waiters);
  flights_.erase(it);
  d.domain = domain;
  if (d.failure && d.failure->kind == StsFailure::InvalidRecord)
    count_failed(counters_, StsFailure::InvalidRecord);
  if (!d.policy) count_no_policy(counters_, waiters.size());
  else if (d.source == StsSource::Cache) count_cached(counters_, d.policy->mode, waiters.size());
  // A waiter may destroy the cache (a daemon shutting down); the others are then not called.
  auto alive = alive_;
  for (auto& w : waiters) {
    w(d);
    if (!*alive) return;
  }
}

}  // namespace deliverd::tlspolicy
