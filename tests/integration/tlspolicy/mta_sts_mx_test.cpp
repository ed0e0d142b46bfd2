// MTA-STS applied by MX delivery, every part real: dnsmasq serves each test domain's MX, the MX
// host's address, the `_mta-sts` TXT record and the policy host's address; the resolver's TXT
// lookup feeds the cache; the policy comes over HTTPS from the policy server (test CA); policies
// are shared through a real Redis; the MX hosts are the in-tree TLS sink (a certificate for some
// MX names, not all) and the scripted server whose STARTTLS handshake breaks.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/hex.h"
#include "core/timer.h"
#include "core/tls_context.h"
#include "dns/address_policy.h"
#include "dns/resolver.h"
#include "dns/resolver_lookup.h"
#include "queue/redis_client.h"
#include "smtp/mx_delivery.h"
#include "smtp/session_pool.h"
#include "tests/integration/smtp/mx_test_support.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/mta_sts_server.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/fixtures/test_loop.h"
#include "tests/integration/fixtures/validating_dns.h"
#include "tests/integration/smtp/tls_sink.h"
#include "tlspolicy/mta_sts_cache.h"
#include "tlspolicy/mta_sts_fetch.h"
#include "tlspolicy/mx_policy.h"

namespace deliverd {
namespace {

using testing::DnsServer;
using smtp::testing::describe;

std::string policy(const std::string& mode, const std::vector<std::string>& mx) {
  std::string p = "version: STSv1\r\nmode: " + mode + "\r\n";
  for (const auto& m : mx) p += "mx: " + m + "\r\n";
  return p + "max_age: 86400\r\n";
}


// The test domains: <name>.test, its MX mx.<name>.test, its policy host mta-sts.<name>.test.
const std::vector<std::string> kDomains = {"good", "mismatch", "testing", "testcert", "broken", "wrongcert", "none"};

class MtaStsMxTest : public ::testing::Test {
 protected:
  MtaStsMxTest() {
    port_ = testing::free_port();
    sink_ip_ = testing::free_loopback_ip(port_);
    broken_ip_ = testing::free_loopback_ip(port_);
    while (broken_ip_ == sink_ip_) broken_ip_ = testing::free_loopback_ip(port_);
    // The sink's certificate names the MX hosts of good, mismatch and testing; not wrongcert's
    // or testcert's.
    cert_ = ca_.issue("mx", {"mx.good.test", "mx.mismatch.test", "mx.testing.test", "mx.broken.test"}, 30);
    sink_ = std::make_unique<testing::TlsSink>(cert_.cert_file, cert_.key_file, testing::TlsSink::Mode::StartTls,
                                               sink_ip_, port_);
    testing::ScriptedSmtpServer::Options so;
    so.host = broken_ip_;
    so.port = port_;
    broken_ = std::make_unique<testing::ScriptedSmtpServer>(
        R"({"tls": {"cert": ")" + cert_.cert_file + R"(", "key": ")" + cert_.key_file +
            R"("}, "steps": {"STARTTLS": {"action": "garbage_tls"}}})",
        so);

    std::vector<std::string> sts_names;
    for (const auto& d : kDomains) sts_names.push_back("mta-sts." + d + ".test");
    sts_ = std::make_unique<testing::MtaStsServer>(ca_, sts_names);
    sts_->serve("mta-sts.good.test", {200, "text/plain", "", policy("enforce", {"mx.good.test"})});
    sts_->serve("mta-sts.mismatch.test", {200, "text/plain", "", policy("enforce", {"*.elsewhere.test"})});
    sts_->serve("mta-sts.testing.test", {200, "text/plain", "", policy("testing", {"*.elsewhere.test"})});
    sts_->serve("mta-sts.testcert.test", {200, "text/plain", "", policy("testing", {"mx.testcert.test"})});
    sts_->serve("mta-sts.broken.test", {200, "text/plain", "", policy("enforce", {"mx.broken.test"})});
    sts_->serve("mta-sts.wrongcert.test", {200, "text/plain", "", policy("enforce", {"*.wrongcert.test"})});

    DnsServer::Options d;
    for (const auto& name : kDomains) {
      const std::string domain = name + ".test";
      d.records.push_back(DnsServer::mx(domain, "mx." + domain, 10));
      d.records.push_back(DnsServer::host_record("mx." + domain, name == "broken" ? broken_ip_ : sink_ip_));
      d.records.push_back(DnsServer::host_record("mta-sts." + domain, sts_->ip()));
      if (name != "none") d.records.push_back(DnsServer::txt("_mta-sts." + domain, {"v=STSv1; id=2026" + name + ";"}));
    }
    dns_ = std::make_unique<DnsServer>(d);

    policy_ = std::make_unique<dns::AddressPolicy>(dns::AddressPolicy::create({"127.0.0.0/8"}).value());
    dns::ResolverConfig rc;
    rc.servers = {dns_->address()};
    resolver_ = dns::Resolver::create(loop_.get(), rc, policy_.get());
    core::TlsClientOptions to;
    to.ca_file = ca_.ca_file();
    to.use_system_roots = false;
    tls_ = core::TlsContext::client(to).value();
    hosts_ = std::make_unique<dns::ResolverLookup>(resolver_);
    fetcher_ = std::make_unique<tlspolicy::PolicyFetcher>(loop_.get(), hosts_.get(), tls_, tlspolicy::FetchOptions{});
    queue::RedisConfig redis_cfg;
    redis_cfg.port = redis_server_.port();
    redis_ = queue::RedisClient::create(loop_.get(), redis_cfg);
    redis_->connect([](bool, const std::string&) {});
    cache_ = std::make_unique<tlspolicy::MtaStsCache>(loop_.get(), tlspolicy::resolver_txt_lookup(resolver_),
                                                      fetcher_.get(), redis_, tlspolicy::StsCacheOptions{});
  }

  ~MtaStsMxTest() override {
    cache_.reset();
    fetcher_.reset();
    hosts_.reset();
    redis_->close();
    resolver_->close();
  }

  core::Outcome deliver(const std::string& domain, smtp::DaneLookup dane = nullptr) {
    smtp::PoolConfig pc;
    pc.idle_timeout_ms = 50;
    smtp::SessionPool pool(loop_.get(), pc);
    smtp::MxDelivery mx(*resolver_, pool, smtp::testing::mx_test_config(port_, tls_));
    mx.set_domain_policy_lookup(tlspolicy::mx_policy_lookup(cache_.get()));
    if (dane) mx.set_dane_lookup(std::move(dane));
    mx.set_tls_report_sink([this](const smtp::TlsAttemptReport& r) { reports_.push_back(r); });
    std::optional<core::Outcome> out;
    mx.deliver(domain, smtp::Envelope{"alice@acme.example", "bob@" + domain, "Subject: sts\r\n\r\nhello\r\n"},
               [&](const core::Outcome& o) { out = o; });
    EXPECT_TRUE(loop_.run_until([&] { return out.has_value() && pool.open_sessions() == 0; }, 30000)) << domain;
    return out.value_or(core::Outcome{});
  }

  std::string redis_get(const std::string& key) {
    std::optional<std::string> v;
    redis_->command({"GET", key}, [&](const queue::RedisReply& r) { v = r.str; });
    EXPECT_TRUE(loop_.run_until([&] { return v.has_value(); }));
    return v.value_or("");
  }

  // What the delivery told TLS-RPT, as "policy-type result host ip".
  std::vector<std::string> reported() const {
    std::vector<std::string> out;
    const char* types[] = {"sts", "tlsa", "no-policy-found"};
    for (const auto& r : reports_)
      out.push_back(std::string(types[static_cast<int>(r.policy_type)]) + " " + std::string(core::to_string(r.result)) +
                    " " + r.mx_host + " " + (r.receiving_ip.empty() ? "-" : r.receiving_ip));
    return out;
  }

  std::vector<smtp::TlsAttemptReport> reports_;
  testing::TestLoop loop_;
  testing::TestCa ca_;
  testing::RedisServer redis_server_;
  int port_ = 0;
  std::string sink_ip_, broken_ip_;
  testing::TestCa::Cert cert_;
  std::unique_ptr<testing::TlsSink> sink_;
  std::unique_ptr<testing::ScriptedSmtpServer> broken_;
  std::unique_ptr<testing::MtaStsServer> sts_;
  std::unique_ptr<DnsServer> dns_;
  std::unique_ptr<dns::AddressPolicy> policy_;
  dns::Resolver* resolver_ = nullptr;
  std::shared_ptr<core::TlsContext> tls_;
  std::unique_ptr<dns::ResolverLookup> hosts_;
  std::unique_ptr<tlspolicy::PolicyFetcher> fetcher_;
  queue::RedisClient* redis_ = nullptr;
  std::unique_ptr<tlspolicy::MtaStsCache> cache_;
};

// RFC 8461 5: an MX host that matches an enforce policy and presents a valid certificate gets
// the message over TLS 1.2+; the outcome names the policy; the policy is kept for the fleet.
TEST_F(MtaStsMxTest, EnforceDeliversOverVerifiedTlsToAMatchingMx) {
  auto o = deliver("good.test");
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "mta-sts");
  EXPECT_TRUE(o.tls_version == "TLSv1.2" || o.tls_version == "TLSv1.3") << o.tls_version;
  EXPECT_EQ(o.host, "mx.good.test");
  EXPECT_EQ(sink_->messages(), 1u);
  EXPECT_EQ(reported(), std::vector<std::string>{"sts success mx.good.test " + sink_ip_});
  EXPECT_EQ(sts_->requests("mta-sts.good.test"), 1);
  EXPECT_NE(redis_get("deliverd:mta-sts:good.test").find("\"id\":\"2026good\""), std::string::npos);
  // The next message uses the cached policy: no second fetch.
  ASSERT_EQ(deliver("good.test").status, core::Status::Delivered);
  EXPECT_EQ(sts_->requests("mta-sts.good.test"), 1);
  EXPECT_EQ(sink_->messages(), 2u);
}

// RFC 8461 4.2 / 5: no MX host matches the enforce policy → not delivered to any; deferred with
// a reason that names the policy.
TEST_F(MtaStsMxTest, EnforceDefersWhenNoMxMatchesThePolicy) {
  auto o = deliver("mismatch.test");
  EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
  EXPECT_EQ(core::to_string(o.reason), "mta_sts_mx_mismatch") << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "mta-sts");
  EXPECT_NE(o.detail.find("MTA-STS policy of mismatch.test (enforce, id 2026mismatch)"), std::string::npos) << o.detail;
  EXPECT_NE(o.detail.find("*.elsewhere.test"), std::string::npos) << o.detail;
  EXPECT_NE(o.detail.find("mx.mismatch.test"), std::string::npos) << o.detail;
  EXPECT_EQ(sink_->connections(), 0u);
  EXPECT_EQ(sink_->messages(), 0u);
  EXPECT_EQ(reported(), std::vector<std::string>{"sts validation-failure mx.mismatch.test -"});
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].policy_domain, "mismatch.test");
  EXPECT_EQ(reports_[0].sts_id, "2026mismatch");
  EXPECT_EQ(reports_[0].sts_mx, std::vector<std::string>{"*.elsewhere.test"});
  EXPECT_EQ(reports_[0].detail.rfind("mx-mismatch", 0), 0u) << reports_[0].detail;
}

// RFC 8461 5: in testing mode a failed validation does not stop delivery.
TEST_F(MtaStsMxTest, TestingDeliversDespiteAMismatch) {
  auto o = deliver("testing.test");
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "opportunistic");
  EXPECT_EQ(sink_->messages(), 1u);
  EXPECT_EQ(sts_->requests("mta-sts.testing.test"), 1);
  // Reported: the MX that the policy does not list, and the session itself (its certificate,
  // checked though not enforced, is valid for the host).
  EXPECT_EQ(reported(), (std::vector<std::string>{"sts validation-failure mx.testing.test -",
                                                   "sts success mx.testing.test " + sink_ip_}));
  for (const auto& r : reports_) EXPECT_EQ(r.sts_mode, smtp::StsMode::Testing);
}

// RFC 8461 5 / RFC 8460: testing mode delivers over TLS although the certificate does not name
// the MX host, and that failure is what TLS-RPT hears (the check ran without being enforced).
TEST_F(MtaStsMxTest, TestingReportsACertificateThatDoesNotNameTheMx) {
  auto o = deliver("testcert.test");
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "opportunistic");
  EXPECT_TRUE(o.tls_version == "TLSv1.2" || o.tls_version == "TLSv1.3") << o.tls_version;
  EXPECT_EQ(sink_->messages(), 1u);
  EXPECT_EQ(reported(), std::vector<std::string>{"sts certificate-host-mismatch mx.testcert.test " + sink_ip_});
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_NE(reports_[0].detail.find("hostname mismatch"), std::string::npos) << reports_[0].detail;
}

// RFC 8461 4.2: a matching MX whose TLS fails is not used, and never in plaintext: one connection,
// no message, deferred naming the policy. Without a policy the same server gets its mail in
// plaintext (smtp_mx_tls_integration_test).
TEST_F(MtaStsMxTest, EnforceDefersWhenTheHandshakeFailsAndNeverFallsBackToPlaintext) {
  auto o = deliver("broken.test");
  EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "mta-sts");
  EXPECT_EQ(core::to_string(o.tls_fallback), "");
  EXPECT_EQ(o.detail.rfind("MTA-STS policy of broken.test (enforce, id 2026broken): ", 0), 0u) << o.detail;
  EXPECT_EQ(broken_->message_count(), 0u);
  EXPECT_EQ(reported(), std::vector<std::string>{"sts validation-failure mx.broken.test " + broken_ip_});
  size_t connects = 0;
  for (const auto& c : broken_->commands()) connects += c == "CONNECT";
  EXPECT_EQ(connects, 1u) << broken_->log();
}

// RFC 8461 4.2: the certificate must be valid for the MX host's name.
TEST_F(MtaStsMxTest, EnforceDefersWhenTheCertificateDoesNotNameTheMx) {
  auto o = deliver("wrongcert.test");
  EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
  EXPECT_EQ(core::to_string(o.reason), "tls_certificate") << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "mta-sts");
  EXPECT_EQ(sink_->messages(), 0u);
  EXPECT_EQ(reported(), std::vector<std::string>{"sts certificate-host-mismatch mx.wrongcert.test " + sink_ip_});
}

// RFC 8461 2: where DANE applies it takes precedence. The certificate does not name
// mx.wrongcert.test (MTA-STS alone defers, above), but the host's DANE-EE record matches its key,
// and DANE-EE checks no name: delivered under policy dane.
TEST_F(MtaStsMxTest, DaneTakesPrecedenceOverMtaSts) {
  const std::string spki = core::from_hex(testing::ValidatingDns::tlsa_sha256(cert_.cert_file, 1)).value();
  auto o = deliver("wrongcert.test", [spki](const std::string&, int, std::function<void(smtp::HostDane)> cb) {
    cb(smtp::HostDane{smtp::HostDane::Status::Secure, {{3, 1, 1, spki}}, ""});
  });
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
  EXPECT_EQ(sink_->messages(), 1u);
  EXPECT_EQ(sts_->requests("mta-sts.wrongcert.test"), 1);  // the policy was still asked (its MX list applies)
  EXPECT_EQ(reported(), std::vector<std::string>{"tlsa success mx.wrongcert.test " + sink_ip_});
  ASSERT_EQ(reports_.size(), 1u);
  EXPECT_EQ(reports_[0].tlsa.size(), 1u);
}

// No `_mta-sts` record: delivered as without MTA-STS, no policy fetched.
TEST_F(MtaStsMxTest, ADomainWithoutARecordIsDeliveredOpportunistically) {
  auto o = deliver("none.test");
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "opportunistic");
  EXPECT_EQ(sts_->requests("mta-sts.none.test"), 0);
  EXPECT_EQ(reported(), std::vector<std::string>{"no-policy-found success mx.none.test " + sink_ip_});
}

}  // namespace
}  // namespace deliverd
