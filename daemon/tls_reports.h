#pragma once
// TLS-RPT (RFC 8460; docs/smtp.md "TLS-RPT"): what MX delivery says about each connection's TLS
// is counted fleet-wide in Redis per UTC day and recipient (policy) domain, and once a day one
// daemon of the fleet sends each domain that asked for it (its `_smtp._tls` record) the report of
// the day before: by mail through MX delivery, or POSTed over HTTPS.
//
// Redis (prefix as everywhere, default "deliverd:"), all with a TTL of a few days:
//   <prefix>tlsrpt:<day>:domains        set of the day's policy domains (at most max_domains)
//   <prefix>tlsrpt:<day>:d:<domain>     hash: "s\n<policy>" successes, "f\n<policy>" failures,
//                                       "d\n<policy>\n<detail>" failure details (at most
//                                       max_details per domain), "#…" bookkeeping
//   <prefix>tlsrpt:<day>:lock:<domain>  SET NX: the daemon that sends the report
// where <day> is days since the epoch (UTC) and <policy>, <detail> the text forms of
// tlspolicy/tls_report.h. Results are added up in memory and written every flush interval by
// one script call per domain, all pipelined, so a delivery costs no Redis round trip.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/https_client.h"
#include "core/timer.h"
#include "dns/resolver.h"
#include "dns/resolver_lookup.h"
#include "queue/redis_client.h"
#include "smtp/dkim.h"
#include "smtp/mx_delivery.h"
#include "tlspolicy/mta_sts_cache.h"
#include "tlspolicy/tls_report.h"
#include "tlspolicy/tls_rpt_record.h"

namespace deliverd::daemon {

struct TlsReportsConfig {
  std::string redis_prefix = "deliverd:";
  std::string organization;  // organization-name ([smtp] tls_rpt_org)
  std::string contact;       // contact-info ([smtp] tls_rpt_contact)
  std::string from;          // envelope and From of report mail ([smtp] tls_rpt_from)
  std::shared_ptr<const smtp::DkimSigner> dkim;  // signs report mail (RFC 8460 5.3); null: unsigned
  uint64_t flush_interval_ms = 5000;
  int64_t ttl_s = 4 * 86400;     // counters outlive their day by three days, then Redis drops them
  int64_t lock_ttl_s = 3 * 86400;  // a day's report is never sent twice, even by a late daemon
  size_t max_domains = 100000;     // policy domains counted per day
  size_t max_policies = 32;        // distinct policies per domain and day
  size_t max_details = 100;        // distinct failure details per domain and day
  size_t max_buffered = 10000;     // distinct counters held in memory before an early flush
  uint64_t max_delay_ms = 3600 * 1000;  // the daily run starts at UTC midnight plus up to this
  size_t max_report_bytes = 1 << 20;    // counters read back for one report
  // Whether this instance runs the daily send; every [daemon] workers loop counts and flushes,
  // only the primary sends (the fleet's day lock would stop the others, after their lookups).
  bool send_daily = true;
};

// What one day's run did, for logs and tests.
struct TlsReportSend {
  std::string via;     // "mailto" | "https"
  std::string target;  // the address or URL
  bool ok = false;
  std::string detail;  // "HTTP 200", "250 …", or what went wrong
};
struct TlsReportDomain {
  std::string domain;
  // "sent" (at least one rua took it), "failed", "taken" (another daemon holds the day's lock),
  // "no_record", "invalid_record", "dns_failed", "no_results", "redis_failed"
  std::string status;
  std::string detail;
  std::string report_json;  // the report made (empty when none was)
  std::vector<TlsReportSend> sends;
};
struct TlsReportDay {
  int64_t day = 0;
  std::vector<TlsReportDomain> domains;
};

class TlsReports {
 public:
  // Test seam: the wall clock in seconds since the epoch.
  using Clock = std::function<int64_t()>;
  // All must outlive this object; mx may be null (mailto: reports then fail, named so).
  TlsReports(uv_loop_t* loop, queue::RedisClient* redis, dns::Resolver* resolver, smtp::MxDelivery* mx,
             std::shared_ptr<core::TlsContext> tls, TlsReportsConfig cfg, Clock clock = {});
  ~TlsReports();
  TlsReports(const TlsReports&) = delete;
  TlsReports& operator=(const TlsReports&) = delete;

  // What MX delivery (and the MTA-STS lookup) calls for every result.
  smtp::TlsReportSink sink();
  void record(const smtp::TlsAttemptReport& a);
  // Writes what is buffered now; done(true) once Redis took all of it.
  void flush(std::function<void(bool ok)> done = {});
  // Sends the reports of one UTC day (days since the epoch) for every domain with results, as
  // far as this daemon wins each domain's lock. The daily timer calls this for yesterday.
  void send_reports(int64_t day, std::function<void(const TlsReportDay&)> done = {});
  // Starts (or restarts) the flush timer and the daily run; stop() ends both, for a reload that
  // turns [smtp] tls_rpt off. Counters already in Redis stay until their TTL.
  void start();
  void stop();
  void reconfigure(TlsReportsConfig cfg);
  // A reload's SMTP trust store: https: reports trust what SMTP trusts.
  void set_tls(std::shared_ptr<core::TlsContext> tls);

  static int64_t utc_day(int64_t unix_s) { return unix_s >= 0 ? unix_s / 86400 : (unix_s - 86399) / 86400; }
  std::string domain_key(int64_t day, const std::string& domain) const;
  std::string domains_key(int64_t day) const;
  std::string lock_key(int64_t day, const std::string& domain) const;

 private:
  struct Run;
  void schedule_daily();
  void next_domain(std::shared_ptr<Run> run);
  void report_domain(std::shared_ptr<Run> run, const std::string& domain);
  void build_and_send(std::shared_ptr<Run> run, TlsReportDomain d, const queue::RedisReply& fields);
  void send_to(std::shared_ptr<Run> run, std::shared_ptr<TlsReportDomain> d, const tlspolicy::TlsReport& report,
               const std::vector<tlspolicy::ReportUri>& rua, size_t i);
  void finish_domain(std::shared_ptr<Run> run, TlsReportDomain d);
  int64_t now_s() const;

  uv_loop_t* loop_;
  queue::RedisClient* redis_;
  smtp::MxDelivery* mx_;
  TlsReportsConfig cfg_;
  Clock clock_;
  tlspolicy::TxtLookup txt_;
  std::unique_ptr<dns::ResolverLookup> hosts_;
  core::HttpsClient* https_ = nullptr;
  // day → domain → field → count, written at the next flush
  std::map<int64_t, std::map<std::string, std::map<std::string, int64_t>>> buffered_;
  size_t buffered_fields_ = 0;
  core::TimerHandle flush_timer_;
  core::TimerHandle daily_timer_;
  std::minstd_rand rng_;
  uint64_t unique_ = 0;
  std::shared_ptr<bool> alive_;
};

}  // namespace deliverd::daemon
