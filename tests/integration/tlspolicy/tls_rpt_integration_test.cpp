// daemon::TlsReports with real parts: Redis shared by two instances (two daemons), dnsmasq for
// the _smtp._tls records and the report targets, an HTTPS receiver (tests/tools/
// tls_rpt_receiver.py, test CA) for https: rua and aiosmtpd as the MX of a mailto: rua, reached
// through smtp::MxDelivery.
#include "daemon/tls_reports.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/base64.h"
#include "core/deflate.h"
#include "core/metrics.h"
#include "core/tls_context.h"
#include "daemon/mta_sts_policies.h"
#include "dns/address_policy.h"
#include "dns/resolver.h"
#include "queue/redis_client.h"
#include "smtp/mx_delivery.h"
#include "smtp/session_pool.h"
#include "tests/integration/fixtures/aiosmtpd_server.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/mta_sts_server.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/fixtures/test_loop.h"
#include "tests/integration/smtp/mx_test_support.h"

namespace deliverd {
namespace {

using testing::DnsServer;
namespace od = simdjson::ondemand;

constexpr int64_t kDay = 20424;  // 2025-12-02
constexpr int64_t kNoon = kDay * 86400 + 12 * 3600;

// tests/tools/tls_rpt_receiver.py on <ip>:443, its certificate naming the given hosts.
class ReportReceiver {
 public:
  ReportReceiver(testing::TestCa& ca, const std::vector<std::string>& names) {
    ip_ = testing::free_loopback_ip(443);
    auto cert = ca.issue("tlsrpt-" + ip_, names, 2);
    const char* src = std::getenv("DELIVERD_SOURCE_DIR");
    std::string tool = std::string(src ? src : ".") + "/tests/tools/tls_rpt_receiver.py";
    proc_ = testing::Process({"/usr/bin/python3", tool, "--host", ip_, "--port", "443", "--cert", cert.cert_file,
                              "--key", cert.key_file, "--state-dir", dir_.path()},
                             dir_.file("server.log"));
    if (!testing::wait_for_ready_file(proc_, dir_.file("ready"), 20000))
      throw std::runtime_error("the TLS-RPT receiver did not start: " + testing::read_file(dir_.file("server.log")));
  }
  ~ReportReceiver() { proc_.stop(2000); }
  const std::string& ip() const { return ip_; }
  size_t posts() const {
    size_t n = 0;
    while (std::filesystem::exists(dir_.file("posts/" + std::to_string(n + 1) + ".meta"))) ++n;
    return n;
  }
  std::string body(size_t n) const { return testing::read_file(dir_.file("posts/" + std::to_string(n) + ".body")); }
  std::string meta(size_t n) const { return testing::read_file(dir_.file("posts/" + std::to_string(n) + ".meta")); }

 private:
  testing::TempDir dir_{"deliverd-tlsrpt"};
  std::string ip_;
  testing::Process proc_;
};

smtp::TlsAttemptReport attempt(const std::string& domain, core::TlsResult result, const std::string& ip = "192.0.2.1") {
  smtp::TlsAttemptReport a;
  a.policy_type = smtp::TlsAttemptReport::PolicyType::Sts;
  a.policy_domain = domain;
  a.sts_mode = smtp::StsMode::Enforce;
  a.sts_mx = {"mx." + domain};
  a.mx_host = "mx." + domain;
  a.receiving_ip = ip;
  a.result = result;
  if (result != core::TlsResult::Success) a.detail = "certificate verify failed: hostname mismatch";
  return a;
}

// The summary and first failure detail of the first policy of a report.
struct Summary {
  int64_t successes = -1, failures = -1, detail_count = -1;
  std::string result_type, policy_domain, org;
};
Summary summary_of(const std::string& json) {
  Summary s;
  simdjson::padded_string padded(json);
  od::parser parser;
  od::document doc;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) return s;
  s.org = std::string(std::string_view(doc["organization-name"].get_string()));
  for (auto p : doc["policies"].get_array()) {
    auto obj = p.get_object();
    s.policy_domain = std::string(std::string_view(obj["policy"]["policy-domain"].get_string()));
    auto sum = obj["summary"].get_object();
    s.successes = sum["total-successful-session-count"].get_int64();
    s.failures = sum["total-failure-session-count"].get_int64();
    auto details = obj["failure-details"];
    if (details.error() == simdjson::SUCCESS) {
      for (auto d : details.get_array()) {
        auto fd = d.get_object();
        s.result_type = std::string(std::string_view(fd["result-type"].get_string()));
        s.detail_count = fd["failed-session-count"].get_int64();
        break;
      }
    }
    break;
  }
  return s;
}

class TlsRptTest : public ::testing::Test {
 protected:
  TlsRptTest() {
    receiver_ = std::make_unique<ReportReceiver>(ca_, std::vector<std::string>{"rpt.https.test"});
    testing::AiosmtpdServer::Options ao;
    ao.host = testing::free_loopback_ip(2525);
    ao.port = 2525;
    mx_server_ = std::make_unique<testing::AiosmtpdServer>(ao);
    // e2e.test: an MTA-STS testing policy, and an MX whose certificate names another host.
    sts_ = std::make_unique<testing::MtaStsServer>(ca_, std::vector<std::string>{"mta-sts.e2e.test"});
    sts_->serve("mta-sts.e2e.test",
                {200, "text/plain", "", "version: STSv1\r\nmode: testing\r\nmx: mx.e2e.test\r\nmax_age: 86400\r\n"});
    wrong_cert_ = ca_.issue("wrong", {"other.test"}, 2);
    testing::AiosmtpdServer::Options eo;
    eo.host = testing::free_loopback_ip(2525);
    eo.port = 2525;
    eo.cert_file = wrong_cert_.cert_file;
    eo.key_file = wrong_cert_.key_file;
    e2e_mx_ = std::make_unique<testing::AiosmtpdServer>(eo);
    DnsServer::Options d;
    d.records.push_back(DnsServer::host_record("rpt.https.test", receiver_->ip()));
    d.records.push_back(DnsServer::txt("_smtp._tls.https.test", {"v=TLSRPTv1; rua=https://rpt.https.test/tlsrpt"}));
    d.records.push_back(DnsServer::txt("_smtp._tls.mail.test", {"v=TLSRPTv1; rua=mailto:reports@rcv.test"}));
    d.records.push_back(DnsServer::mx("rcv.test", "mx.rcv.test", 10));
    d.records.push_back(DnsServer::host_record("mx.rcv.test", ao.host));
    d.records.push_back(DnsServer::txt("_smtp._tls.bad.test", {"v=TLSRPTv1; rua=ftp://rpt.bad.test/"}));
    d.records.push_back(DnsServer::host_record("mx.nothing.test", "192.0.2.7"));  // nothing.test: no TXT
    // An MTA-STS record whose policy host has no address: the policy cannot be fetched.
    d.records.push_back(DnsServer::txt("_mta-sts.stsfail.test", {"v=STSv1; id=1"}));
    d.records.push_back(DnsServer::mx("e2e.test", "mx.e2e.test", 10));
    d.records.push_back(DnsServer::host_record("mx.e2e.test", eo.host));
    d.records.push_back(DnsServer::host_record("mta-sts.e2e.test", sts_->ip()));
    d.records.push_back(DnsServer::txt("_mta-sts.e2e.test", {"v=STSv1; id=e2e1"}));
    d.records.push_back(DnsServer::txt("_smtp._tls.e2e.test", {"v=TLSRPTv1; rua=https://rpt.https.test/e2e"}));
    dns_ = std::make_unique<DnsServer>(d);
    policy_ = std::make_unique<dns::AddressPolicy>(dns::AddressPolicy::create({"127.0.0.0/8"}).value());
    dns::ResolverConfig rc;
    rc.servers = {dns_->address()};
    resolver_ = dns::Resolver::create(loop_.get(), rc, policy_.get());
    core::TlsClientOptions to;
    to.ca_file = ca_.ca_file();
    to.use_system_roots = false;
    tls_ = core::TlsContext::client(to).value();
    smtp::PoolConfig pc;
    pc.idle_timeout_ms = 50;
    pool_ = std::make_unique<smtp::SessionPool>(loop_.get(), pc);
    mx_ = std::make_unique<smtp::MxDelivery>(*resolver_, *pool_, smtp::testing::mx_test_config(2525, tls_));
  }

  ~TlsRptTest() override {
    daemons_.clear();
    mx_.reset();
    pool_->shutdown();
    loop_.run_until([&] { return pool_->open_sessions() == 0; }, 5000);
    for (auto* r : redis_) r->close();
    resolver_->close();
  }

  daemon::TlsReports& daemon(daemon::TlsReportsConfig cfg = {}) {
    queue::RedisConfig rc;
    rc.port = redis_server_.port();
    auto* redis = queue::RedisClient::create(loop_.get(), rc);
    redis->connect([](bool, const std::string&) {});
    redis_.push_back(redis);
    cfg.organization = "Acme Mail";
    cfg.contact = "postmaster@acme.test";
    cfg.from = "tlsrpt@acme.test";
    daemons_.push_back(std::make_unique<daemon::TlsReports>(loop_.get(), redis, resolver_, mx_.get(), tls_, cfg,
                                                            [] { return kNoon; }));
    return *daemons_.back();
  }

  void flush(daemon::TlsReports& d) {
    std::optional<bool> ok;
    d.flush([&](bool r) { ok = r; });
    ASSERT_TRUE(loop_.run_until([&] { return ok.has_value(); }));
    EXPECT_TRUE(*ok);
  }

  daemon::TlsReportDay run(daemon::TlsReports& d) {
    std::optional<daemon::TlsReportDay> out;
    d.send_reports(kDay, [&](const daemon::TlsReportDay& day) { out = day; });
    EXPECT_TRUE(loop_.run_until([&] { return out.has_value(); }, 60000));
    return out.value_or(daemon::TlsReportDay{});
  }

  static const daemon::TlsReportDomain* find(const daemon::TlsReportDay& day, const std::string& domain) {
    for (const auto& d : day.domains)
      if (d.domain == domain) return &d;
    return nullptr;
  }

  testing::TestLoop loop_;
  testing::TestCa ca_;
  testing::RedisServer redis_server_;
  std::unique_ptr<ReportReceiver> receiver_;
  std::unique_ptr<testing::AiosmtpdServer> mx_server_;
  std::unique_ptr<testing::MtaStsServer> sts_;
  testing::TestCa::Cert wrong_cert_;
  std::unique_ptr<testing::AiosmtpdServer> e2e_mx_;
  std::unique_ptr<DnsServer> dns_;
  std::unique_ptr<dns::AddressPolicy> policy_;
  dns::Resolver* resolver_ = nullptr;
  std::shared_ptr<core::TlsContext> tls_;
  std::unique_ptr<smtp::SessionPool> pool_;
  std::unique_ptr<smtp::MxDelivery> mx_;
  std::vector<queue::RedisClient*> redis_;
  std::vector<std::unique_ptr<daemon::TlsReports>> daemons_;
};

TEST_F(TlsRptTest, TwoDaemonsResultsSumInOneReportPostedOverHttps) {
  auto& a = daemon();
  auto& b = daemon();
  auto sink_a = a.sink();
  auto sink_b = b.sink();
  sink_a(attempt("https.test", core::TlsResult::Success));
  sink_a(attempt("https.test", core::TlsResult::Success));
  sink_a(attempt("https.test", core::TlsResult::CertificateHostMismatch));
  sink_b(attempt("HTTPS.test", core::TlsResult::Success));
  sink_b(attempt("https.test", core::TlsResult::CertificateHostMismatch));
  flush(a);
  flush(b);
  // Kept for a few days, not for ever.
  const std::string key = a.domain_key(kDay, "https.test");
  long long ttl = redis_server_.integer({"TTL", key});
  EXPECT_GT(ttl, 86400);
  EXPECT_LE(ttl, 4 * 86400);
  EXPECT_GT(redis_server_.integer({"TTL", a.domains_key(kDay)}), 86400);

  auto day = run(a);
  const auto* d = find(day, "https.test");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->status, "sent") << d->detail;
  ASSERT_EQ(d->sends.size(), 1u);
  EXPECT_EQ(d->sends[0].via, "https");
  EXPECT_TRUE(d->sends[0].ok) << d->sends[0].detail;

  ASSERT_TRUE(loop_.run_until([&] { return receiver_->posts() == 1; }));
  EXPECT_NE(receiver_->meta(1).find("\"content_type\": \"application/tlsrpt+gzip\""), std::string::npos)
      << receiver_->meta(1);
  EXPECT_NE(receiver_->meta(1).find("\"path\": \"/tlsrpt\""), std::string::npos) << receiver_->meta(1);
  auto json = core::gunzip(receiver_->body(1), 1 << 20);
  ASSERT_TRUE(json) << json.error();
  auto s = summary_of(*json);
  EXPECT_EQ(s.org, "Acme Mail");
  EXPECT_EQ(s.policy_domain, "https.test");
  EXPECT_EQ(s.successes, 3);
  EXPECT_EQ(s.failures, 2);
  EXPECT_EQ(s.result_type, "certificate-host-mismatch");
  EXPECT_EQ(s.detail_count, 2);
  EXPECT_NE(json->find("\"start-datetime\":\"2025-12-02T00:00:00Z\""), std::string::npos) << *json;
}

TEST_F(TlsRptTest, TheDayLockMakesExactlyOneDaemonSend) {
  auto& a = daemon();
  auto& b = daemon();
  a.record(attempt("https.test", core::TlsResult::Success));
  flush(a);
  std::optional<daemon::TlsReportDay> ra, rb;
  a.send_reports(kDay, [&](const daemon::TlsReportDay& d) { ra = d; });
  b.send_reports(kDay, [&](const daemon::TlsReportDay& d) { rb = d; });
  ASSERT_TRUE(loop_.run_until([&] { return ra && rb; }, 60000));
  const auto* da = find(*ra, "https.test");
  const auto* db = find(*rb, "https.test");
  ASSERT_TRUE(da && db);
  std::vector<std::string> statuses = {da->status, db->status};
  std::sort(statuses.begin(), statuses.end());
  EXPECT_EQ(statuses, (std::vector<std::string>{"sent", "taken"}));
  // A later run (a restarted daemon) does not send again either.
  auto again = run(b);
  ASSERT_NE(find(again, "https.test"), nullptr);
  EXPECT_EQ(find(again, "https.test")->status, "taken");
  ASSERT_TRUE(loop_.run_until([&] { return receiver_->posts() >= 1; }));
  loop_.run_until([] { return false; }, 300);
  EXPECT_EQ(receiver_->posts(), 1u);
}

TEST_F(TlsRptTest, AMailtoRuaGetsTheReportMailThroughMxDelivery) {
  auto& a = daemon();
  a.record(attempt("mail.test", core::TlsResult::Success));
  a.record(attempt("mail.test", core::TlsResult::CertificateExpired));
  auto day = run(a);
  const auto* d = find(day, "mail.test");
  ASSERT_NE(d, nullptr);
  ASSERT_EQ(d->sends.size(), 1u) << d->status << " " << d->detail;
  EXPECT_EQ(d->sends[0].via, "mailto");
  EXPECT_EQ(d->sends[0].target, "reports@rcv.test");
  EXPECT_TRUE(d->sends[0].ok) << d->sends[0].detail;
  EXPECT_EQ(d->status, "sent");
  ASSERT_TRUE(mx_server_->wait_for_messages(1, 20000)) << mx_server_->log();
  const std::string mail = mx_server_->messages().at(0);
  EXPECT_NE(mail.find("TLS-Report-Domain: mail.test"), std::string::npos) << mail;
  EXPECT_NE(mail.find("TLS-Report-Submitter: acme.test"), std::string::npos) << mail;
  EXPECT_NE(mail.find("Subject: Report Domain: mail.test Submitter: acme.test Report-ID:"), std::string::npos);
  EXPECT_NE(mail.find("report-type=\"tlsrpt\""), std::string::npos);
  EXPECT_NE(mail.find("filename=\"acme.test!mail.test!" + std::to_string(kDay * 86400) + "!" +
                      std::to_string(kDay * 86400 + 86399) + "!"),
            std::string::npos)
      << mail;
  // The attachment: base64 lines after the part's header, up to the closing boundary.
  size_t part = mail.find("Content-Type: application/tlsrpt+gzip");
  ASSERT_NE(part, std::string::npos);
  size_t body = mail.find("\n\n", part) != std::string::npos && mail.find("\r\n\r\n", part) == std::string::npos
                    ? mail.find("\n\n", part) + 2
                    : mail.find("\r\n\r\n", part) + 4;
  size_t end = mail.find("--=_tlsrpt_", body);
  std::string b64;
  for (char c : mail.substr(body, end - body))
    if (c != '\r' && c != '\n') b64 += c;
  auto gz = core::base64_decode(b64);
  ASSERT_TRUE(gz) << gz.error();
  auto json = core::gunzip(*gz, 1 << 20);
  ASSERT_TRUE(json) << json.error();
  EXPECT_EQ(*json, d->report_json);
  auto s = summary_of(*json);
  EXPECT_EQ(s.successes, 1);
  EXPECT_EQ(s.failures, 1);
  EXPECT_EQ(s.result_type, "certificate-expired");
}

TEST_F(TlsRptTest, NoOrAMalformedRecordGetsNothingAndSaysWhy) {
  auto& a = daemon();
  a.record(attempt("nothing.test", core::TlsResult::Success));
  a.record(attempt("bad.test", core::TlsResult::Success));
  auto& reports = core::Registry::global().counter("deliverd_tls_rpt_reports_total", "", {"via", "status"});
  const double no_record = reports.with({"none", "no_record"}).value();
  const double invalid = reports.with({"none", "invalid_record"}).value();
  auto day = run(a);
  const auto* nothing = find(day, "nothing.test");
  const auto* bad = find(day, "bad.test");
  ASSERT_TRUE(nothing && bad);
  EXPECT_EQ(nothing->status, "no_record");
  EXPECT_TRUE(nothing->sends.empty());
  EXPECT_EQ(bad->status, "invalid_record");
  EXPECT_EQ(bad->detail, "the _smtp._tls record names no mailto: or https: URI");
  EXPECT_TRUE(bad->sends.empty());
  EXPECT_EQ(reports.with({"none", "no_record"}).value(), no_record + 1);
  EXPECT_EQ(reports.with({"none", "invalid_record"}).value(), invalid + 1);
  EXPECT_EQ(receiver_->posts(), 0u);
  EXPECT_EQ(mx_server_->message_count(), 0u);
}

TEST_F(TlsRptTest, AHostileDomainsManyMxAddressesAreCapped) {
  daemon::TlsReportsConfig cfg;
  cfg.max_details = 10;
  auto& a = daemon(cfg);
  for (int i = 0; i < 2000; ++i)
    a.record(attempt("https.test", core::TlsResult::CertificateNotTrusted,
                     "192.0." + std::to_string(i / 250) + "." + std::to_string(i % 250)));
  flush(a);
  // 10 details, the failure count of the one policy and the bookkeeping fields.
  EXPECT_LE(redis_server_.integer({"HLEN", a.domain_key(kDay, "https.test")}), 15);
  auto day = run(a);
  const auto* d = find(day, "https.test");
  ASSERT_NE(d, nullptr);
  auto s = summary_of(d->report_json);
  EXPECT_EQ(s.failures, 2000) << "the summary counts what the details could not";
  EXPECT_EQ(s.detail_count, 1);
}

TEST_F(TlsRptTest, AnMtaStsPolicyThatCannotBeFetchedIsReported) {
  auto& a = daemon();
  queue::RedisConfig rc;
  rc.port = redis_server_.port();
  auto* redis = queue::RedisClient::create(loop_.get(), rc);
  redis->connect([](bool, const std::string&) {});
  redis_.push_back(redis);
  daemon::MtaStsPolicies sts(loop_.get(), resolver_, tls_, redis, "deliverd:");
  sts.set_report_sink(a.sink());
  std::optional<smtp::DomainTlsPolicy> policy;
  sts.lookup()("stsfail.test", [&](smtp::DomainTlsPolicy p) { policy = std::move(p); });
  ASSERT_TRUE(loop_.run_until([&] { return policy.has_value(); }, 30000));
  EXPECT_EQ(policy->mode, smtp::StsMode::None) << "delivered as without a policy";
  auto day = run(a);
  const auto* d = find(day, "stsfail.test");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->status, "no_record") << "stsfail.test asks for no reports";
  auto s = summary_of(d->report_json);
  EXPECT_EQ(s.failures, 1);
  EXPECT_EQ(s.result_type, "sts-policy-fetch-error") << d->report_json;
}

// The whole path: MX delivery under an MTA-STS testing policy to a server whose certificate does
// not name the MX host delivers the message, tells TlsReports, and the day's report says so.
TEST_F(TlsRptTest, ATestingPolicysCertificateMismatchIsDeliveredAndReported) {
  auto& a = daemon();
  queue::RedisConfig rc;
  rc.port = redis_server_.port();
  auto* redis = queue::RedisClient::create(loop_.get(), rc);
  redis->connect([](bool, const std::string&) {});
  redis_.push_back(redis);
  daemon::MtaStsPolicies sts(loop_.get(), resolver_, tls_, redis, "deliverd:");
  sts.set_report_sink(a.sink());
  mx_->set_domain_policy_lookup(sts.lookup());
  mx_->set_tls_report_sink(a.sink());
  std::optional<core::Outcome> out;
  mx_->deliver("e2e.test", smtp::Envelope{"alice@acme.test", "bob@e2e.test", "Subject: hi\r\n\r\nhello\r\n"},
               [&](const core::Outcome& o) { out = o; });
  ASSERT_TRUE(loop_.run_until([&] { return out.has_value(); }, 60000));
  EXPECT_EQ(out->status, core::Status::Delivered) << smtp::testing::describe(*out);
  ASSERT_TRUE(e2e_mx_->wait_for_messages(1, 20000)) << e2e_mx_->log();
  mx_->set_domain_policy_lookup(nullptr);

  auto day = run(a);
  const auto* d = find(day, "e2e.test");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->status, "sent") << d->detail;
  ASSERT_TRUE(loop_.run_until([&] { return receiver_->posts() == 1; }));
  EXPECT_NE(receiver_->meta(1).find("\"path\": \"/e2e\""), std::string::npos) << receiver_->meta(1);
  auto json = core::gunzip(receiver_->body(1), 1 << 20);
  ASSERT_TRUE(json) << json.error();
  auto s = summary_of(*json);
  EXPECT_EQ(s.policy_domain, "e2e.test");
  EXPECT_EQ(s.successes, 0) << *json;
  EXPECT_EQ(s.failures, 1) << *json;
  EXPECT_EQ(s.result_type, "certificate-host-mismatch") << *json;
  EXPECT_EQ(s.detail_count, 1) << *json;
  EXPECT_NE(json->find("\"policy-type\":\"sts\""), std::string::npos) << *json;
  EXPECT_NE(json->find("\"mode: testing\""), std::string::npos) << *json;
  EXPECT_NE(json->find("\"receiving-mx-hostname\":\"mx.e2e.test\""), std::string::npos) << *json;
  // sending-mta-ip: the address deliverd connected from (loopback here, as every test address).
  EXPECT_NE(json->find("\"sending-mta-ip\":\"127."), std::string::npos) << *json;
}

}  // namespace
}  // namespace deliverd
