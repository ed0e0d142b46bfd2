#include "daemon/tls_reports.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include "core/domain.h"
#include "core/log.h"
#include "core/metrics.h"
#include "tlspolicy/mx_policy.h"
#include "tlspolicy/tls_rpt_record.h"

namespace deliverd::daemon {

namespace {

struct Metrics {
  core::Family<core::Counter>& results;
  core::Family<core::Counter>& reports;
  core::Counter& dropped;
};

Metrics& metrics() {
  auto& r = core::Registry::global();
  static Metrics m{
      r.counter("deliverd_tls_rpt_results_total", "TLS results counted for TLS-RPT reports, by result type",
                {"result"}),
      r.counter("deliverd_tls_rpt_reports_total",
                "TLS-RPT report deliveries and domains without one, by way and status", {"via", "status"}),
      r.counter("deliverd_tls_rpt_dropped_total",
                "TLS-RPT results not kept because a domain or day reached its cap")
          .get(),
  };
  return m;
}

// Adds one flush's counters of one domain and day, under the caps, and keeps the keys expiring.
// KEYS: the domain's hash, the day's domain set. ARGV: ttl, max_domains, max_policy_fields,
// max_details, domain, then (kind, field, n) triples. Answers how many results were dropped.
const queue::LuaScript kRecord{R"lua(
local h, set = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[1])
local total = 0
for i = 6, #ARGV, 3 do total = total + tonumber(ARGV[i + 2]) end
if redis.call('SISMEMBER', set, ARGV[5]) == 0 then
  if redis.call('SCARD', set) >= tonumber(ARGV[2]) then return total end
  redis.call('SADD', set, ARGV[5])
end
redis.call('EXPIRE', set, ttl)
local dropped = 0
for i = 6, #ARGV, 3 do
  local kind, field, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if redis.call('HEXISTS', h, field) == 1 then
    redis.call('HINCRBY', h, field, n)
  else
    local cap_field, cap = '#p', tonumber(ARGV[3])
    if kind == 'd' then cap_field, cap = '#d', tonumber(ARGV[4]) end
    if tonumber(redis.call('HINCRBY', h, cap_field, 0)) < cap then
      redis.call('HINCRBY', h, cap_field, 1)
      redis.call('HINCRBY', h, field, n)
    else
      dropped = dropped + n
    end
  end
end
if dropped > 0 then redis.call('HINCRBY', h, '#dropped', dropped) end
redis.call('EXPIRE', h, ttl)
return dropped
)lua"};

std::string domain_of(const std::string& address) {
  size_t at = address.rfind('@');
  return at == std::string::npos ? "" : address.substr(at + 1);
}

}  // namespace

struct TlsReports::Run {
  TlsReportDay day;
  std::vector<std::string> domains;
  size_t next = 0;
  std::function<void(const TlsReportDay&)> done;
};

TlsReports::TlsReports(uv_loop_t* loop, queue::RedisClient* redis, dns::Resolver* resolver, smtp::MxDelivery* mx,
                       std::shared_ptr<core::TlsContext> tls, TlsReportsConfig cfg, Clock clock)
    : loop_(loop),
      redis_(redis),
      mx_(mx),
      cfg_(std::move(cfg)),
      clock_(std::move(clock)),
      txt_(tlspolicy::resolver_txt_lookup(resolver)),
      hosts_(std::make_unique<dns::ResolverLookup>(resolver)),
      flush_timer_(loop),
      daily_timer_(loop),
      rng_(std::random_device{}()),
      alive_(std::make_shared<bool>(true)) {
  core::HttpsClientOptions opts;
  opts.tls = std::move(tls);
  opts.max_response_bytes = 64 * 1024;  // only the status matters
  opts.max_in_flight = 64;
  https_ = core::HttpsClient::create(loop_, hosts_.get(), std::move(opts));
}

TlsReports::~TlsReports() {
  *alive_ = false;
  if (https_) https_->close();
}

void TlsReports::reconfigure(TlsReportsConfig cfg) { cfg_ = std::move(cfg); }

void TlsReports::set_tls(std::shared_ptr<core::TlsContext> tls) {
  core::HttpsClientOptions opts = https_->options();
  opts.tls = std::move(tls);
  https_->set_options(std::move(opts));
}

int64_t TlsReports::now_s() const {
  if (clock_) return clock_();
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string TlsReports::domains_key(int64_t day) const {
  return cfg_.redis_prefix + "tlsrpt:" + std::to_string(day) + ":domains";
}
std::string TlsReports::domain_key(int64_t day, const std::string& domain) const {
  return cfg_.redis_prefix + "tlsrpt:" + std::to_string(day) + ":d:" + domain;
}
std::string TlsReports::lock_key(int64_t day, const std::string& domain) const {
  return cfg_.redis_prefix + "tlsrpt:" + std::to_string(day) + ":lock:" + domain;
}

smtp::TlsReportSink TlsReports::sink() {
  return [this, alive = alive_](const smtp::TlsAttemptReport& a) {
    if (*alive) record(a);
  };
}

void TlsReports::record(const smtp::TlsAttemptReport& a) {
  if (a.result == core::TlsResult::None) return;
  auto norm = core::normalize_domain(a.policy_domain);
  if (!norm) return;  // not a domain anyone could publish a record for
  metrics().results.with({std::string(core::to_string(a.result))}).inc();
  smtp::TlsAttemptReport copy = a;
  copy.policy_domain = *norm;
  const std::string pk = tlspolicy::policy_key(tlspolicy::report_policy(copy));
  auto& fields = buffered_[utc_day(now_s())][*norm];
  auto add = [&](std::string field) {
    auto [it, inserted] = fields.try_emplace(std::move(field), 0);
    ++it->second;
    buffered_fields_ += inserted;
  };
  if (a.result == core::TlsResult::Success) {
    add("s\n" + pk);
  } else {
    add("f\n" + pk);
    add("d\n" + pk + "\n" + tlspolicy::detail_key(tlspolicy::failure_detail(copy)));
  }
  if (buffered_fields_ >= cfg_.max_buffered) flush();
}

void TlsReports::flush(std::function<void(bool)> done) {
  auto buffered = std::move(buffered_);
  buffered_.clear();
  buffered_fields_ = 0;
  struct Pending {
    size_t left = 0;
    bool ok = true;
    std::function<void(bool)> done;
  };
  auto p = std::make_shared<Pending>();
  p->done = std::move(done);
  for (auto& [day, domains] : buffered) p->left += domains.size();
  if (p->left == 0 || !redis_) {
    if (p->done) p->done(p->left == 0);
    return;
  }
  for (auto& [day, domains] : buffered) {
    for (auto& [domain, fields] : domains) {
      std::vector<std::string> args = {"2",
                                       domain_key(day, domain),
                                       domains_key(day),
                                       std::to_string(cfg_.ttl_s),
                                       std::to_string(cfg_.max_domains),
                                       std::to_string(2 * cfg_.max_policies),
                                       std::to_string(cfg_.max_details),
                                       domain};
      for (auto& [field, n] : fields) {
        args.push_back(field.substr(0, 1));
        args.push_back(field);
        args.push_back(std::to_string(n));
      }
      // Every call is written at once: the client pipelines them, one round trip per flush.
      redis_->eval(kRecord, std::move(args), [p, domain = domain](const queue::RedisReply& r) {
        if (r.is_error()) {
          p->ok = false;
          core::log_warn("tls_rpt_record_failed", {{"domain", domain}, {"error", r.str}});
        } else if (r.integer > 0) {
          metrics().dropped.inc(static_cast<double>(r.integer));
        }
        if (--p->left == 0 && p->done) p->done(p->ok);
      });
    }
  }
}

void TlsReports::start() {
  flush_timer_->start_repeating(cfg_.flush_interval_ms, [this] { flush(); });
  if (cfg_.send_daily) schedule_daily();
}

void TlsReports::stop() {
  flush_timer_->stop();
  daily_timer_->stop();
  flush();
}

void TlsReports::schedule_daily() {
  // After UTC midnight plus a random delay, so the fleet does not ask every receiver at once and
  // the daemons' last flushes of the day are in.
  const int64_t now = now_s();
  const int64_t next_midnight = (utc_day(now) + 1) * 86400;
  std::uniform_int_distribution<uint64_t> jitter(60 * 1000, std::max<uint64_t>(60 * 1000, cfg_.max_delay_ms));
  const uint64_t ms = static_cast<uint64_t>(next_midnight - now) * 1000 + jitter(rng_);
  daily_timer_->start(ms, [this] {
    send_reports(utc_day(now_s()) - 1, [this](const TlsReportDay&) { schedule_daily(); });
  });
}

void TlsReports::send_reports(int64_t day, std::function<void(const TlsReportDay&)> done) {
  auto run = std::make_shared<Run>();
  run->day.day = day;
  run->done = std::move(done);
  if (!redis_) return next_domain(run);
  // Our own counters first, so that what this daemon saw is in the report it may send.
  flush([this, alive = alive_, run](bool) {
    if (!*alive) return;
    redis_->command({"SMEMBERS", domains_key(run->day.day)}, [this, alive, run](const queue::RedisReply& r) {
      if (!*alive) return;
      if (r.is_error()) {
        core::log_warn("tls_rpt_run_failed", {{"day", std::to_string(run->day.day)}, {"error", r.str}});
      } else {
        for (const auto& e : r.elements) run->domains.push_back(e.str);
        std::sort(run->domains.begin(), run->domains.end());
      }
      next_domain(run);
    });
  });
}

void TlsReports::next_domain(std::shared_ptr<Run> run) {
  if (run->next >= run->domains.size()) {
    if (run->done) run->done(run->day);
    return;
  }
  report_domain(run, run->domains[run->next++]);
}

void TlsReports::finish_domain(std::shared_ptr<Run> run, TlsReportDomain d) {
  if (d.sends.empty()) metrics().reports.with({"none", d.status}).inc();
  std::string sent;
  for (const auto& s : d.sends) sent += (sent.empty() ? "" : ", ") + s.via + " " + s.target + (s.ok ? " ok" : " failed: " + s.detail);
  auto level = d.status == "sent" || d.status == "taken" || d.status == "no_results" ? core::LogLevel::Info
                                                                                     : core::LogLevel::Warn;
  core::log(level, "tls_rpt_report",
            {{"day", std::to_string(run->day.day)}, {"domain", d.domain}, {"status", d.status}, {"detail", d.detail},
             {"sends", sent}});
  run->day.domains.push_back(std::move(d));
  next_domain(run);
}

void TlsReports::report_domain(std::shared_ptr<Run> run, const std::string& domain) {
  TlsReportDomain d;
  d.domain = domain;
  // One daemon per day and domain; the lock is kept, so a failed send is not retried by another.
  redis_->command({"SET", lock_key(run->day.day, domain), "1", "NX", "EX", std::to_string(cfg_.lock_ttl_s)},
                  [this, alive = alive_, run, d](const queue::RedisReply& r) mutable {
                    if (!*alive) return;
                    if (r.is_error()) {
                      d.status = "redis_failed";
                      d.detail = r.str;
                      return finish_domain(run, std::move(d));
                    }
                    if (r.is_nil()) {
                      d.status = "taken";
                      return finish_domain(run, std::move(d));
                    }
                    redis_->command({"HGETALL", domain_key(run->day.day, d.domain)},
                                    [this, alive, run, d](const queue::RedisReply& fields) mutable {
                                      if (!*alive) return;
                                      build_and_send(run, std::move(d), fields);
                                    });
                  });
}

void TlsReports::build_and_send(std::shared_ptr<Run> run, TlsReportDomain d, const queue::RedisReply& fields) {
  if (fields.is_error()) {
    d.status = "redis_failed";
    d.detail = fields.str;
    return finish_domain(run, std::move(d));
  }
  // Counters back into per-policy results; fields this code did not write are skipped.
  std::map<std::string, tlspolicy::PolicyResults> by_policy;
  size_t bytes = 0;
  for (size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
    const std::string& field = fields.elements[i].str;
    bytes += field.size();
    if (bytes > cfg_.max_report_bytes || field.size() < 2 || field[1] != '\n') continue;
    int64_t n = 0;
    try {
      n = std::stoll(fields.elements[i + 1].str);
    } catch (...) {
      continue;
    }
    const char kind = field[0];
    std::string rest = field.substr(2);
    std::string detail;
    if (kind == 'd') {
      size_t nl = rest.find('\n');
      if (nl == std::string::npos) continue;
      detail = rest.substr(nl + 1);
      rest.resize(nl);
    }
    auto policy = tlspolicy::policy_from_key(rest);
    if (!policy || policy->domain != d.domain) continue;
    auto& pr = by_policy[rest];
    pr.policy = std::move(*policy);
    if (kind == 's') pr.successes += n;
    if (kind == 'f') pr.failures += n;
    if (kind == 'd') {
      auto fd = tlspolicy::detail_from_key(detail);
      if (!fd) continue;
      fd->count = n;
      pr.details.push_back(std::move(*fd));
    }
  }
  if (by_policy.empty()) {
    d.status = "no_results";
    return finish_domain(run, std::move(d));
  }
  auto report = std::make_shared<tlspolicy::TlsReport>();
  report->organization = cfg_.organization;
  report->contact = cfg_.contact;
  report->start_s = run->day.day * 86400;
  report->end_s = report->start_s + 86400 - 1;
  const std::string submitter = domain_of(cfg_.from);
  report->report_id = tlspolicy::rfc3339_utc(report->start_s).substr(0, 10) + "_" + d.domain + "@" + submitter;
  for (auto& [key, pr] : by_policy) report->policies.push_back(std::move(pr));
  d.report_json = tlspolicy::report_json(*report);

  txt_("_smtp._tls." + d.domain, [this, alive = alive_, run, d, report](tlspolicy::TxtAnswer a) mutable {
    if (!*alive) return;
    if (a.status == tlspolicy::TxtAnswer::Status::Failed) {
      d.status = "dns_failed";
      d.detail = a.error;
      return finish_domain(run, std::move(d));
    }
    auto rec = tlspolicy::parse_tls_rpt_record(a.records);
    if (!rec) {
      d.status = "invalid_record";
      d.detail = rec.error();
      return finish_domain(run, std::move(d));
    }
    if (!rec.value()) {
      d.status = "no_record";
      d.detail = "_smtp._tls." + d.domain + " has no v=TLSRPTv1 record";
      return finish_domain(run, std::move(d));
    }
    auto shared = std::make_shared<TlsReportDomain>(std::move(d));
    send_to(run, shared, *report, rec.value()->rua, 0);
  });
}

void TlsReports::send_to(std::shared_ptr<Run> run, std::shared_ptr<TlsReportDomain> d,
                         const tlspolicy::TlsReport& report, const std::vector<tlspolicy::ReportUri>& rua, size_t i) {
  if (i >= rua.size()) {
    bool any = std::any_of(d->sends.begin(), d->sends.end(), [](const TlsReportSend& s) { return s.ok; });
    d->status = any ? "sent" : "failed";
    return finish_domain(run, std::move(*d));
  }
  const auto& uri = rua[i];
  auto next = [this, alive = alive_, run, d, report, rua, i](TlsReportSend s) {
    if (!*alive) return;
    metrics().reports.with({s.via, s.ok ? "sent" : "failed"}).inc();
    d->sends.push_back(std::move(s));
    send_to(run, d, report, rua, i + 1);
  };
  if (uri.scheme == tlspolicy::ReportUri::Scheme::Https) {
    TlsReportSend s{"https", uri.target, false, ""};
    https_->request(tlspolicy::report_post(report, uri.target),
                    [next, s](core::Result<core::HttpsResponse, core::HttpsError> r) mutable {
                      if (!r) {
                        s.detail = std::string(core::to_string(r.error().kind)) + ": " + r.error().detail;
                      } else {
                        s.ok = r->status >= 200 && r->status < 300;
                        s.detail = "HTTP " + std::to_string(r->status);
                      }
                      next(std::move(s));
                    });
    return;
  }
  TlsReportSend s{"mailto", uri.target, false, ""};
  if (!mx_) {
    s.detail = "MX delivery is not running";
    return next(std::move(s));
  }
  tlspolicy::ReportMailSpec m;
  m.from = cfg_.from;
  m.to = uri.target;
  m.submitter = domain_of(cfg_.from);
  m.policy_domain = d->domain;
  m.now = static_cast<std::time_t>(now_s());
  m.unique = std::to_string(report.start_s / 86400) + "-" + std::to_string(rng_()) + "-" + std::to_string(++unique_);
  auto mail = tlspolicy::report_mail(report, m);
  if (!mail) {
    s.detail = mail.error();
    return next(std::move(s));
  }
  std::string message = std::move(*mail);
  if (cfg_.dkim) {
    auto signed_mail = cfg_.dkim->sign(message, m.now);
    if (!signed_mail) {
      s.detail = "DKIM: " + signed_mail.error();
      return next(std::move(s));
    }
    message = std::move(*signed_mail);
  }
  // RFC 8460 5.3: a report must get through whatever TLS the receiver has, so it goes with
  // opportunistic TLS and not under the domain's own policy.
  mx_->deliver(domain_of(uri.target), smtp::Envelope{cfg_.from, uri.target, std::move(message)},
               [next, s](const core::Outcome& o) mutable {
                 s.ok = o.status == core::Status::Delivered;
                 s.detail = std::to_string(o.reply.code) + " " + o.reply.text + (o.detail.empty() ? "" : " " + o.detail);
                 next(std::move(s));
               },
               core::TlsPolicy::Opportunistic);
}

}  // namespace deliverd::daemon
