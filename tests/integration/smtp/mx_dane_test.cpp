// DANE (RFC 7672) in MX delivery against the in-tree TLS sink found through dnsmasq: the TLSA
// answer is given per test (the DNSSEC lookup that produces it is tested with a validating
// resolver in dane_dns_integration_test and end to end in mta_sts_dane_daemon tests). The client
// trusts no CA at all, so a delivery that passes was verified by its TLSA record alone.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/hex.h"
#include "core/tls_context.h"
#include "dns/resolver.h"
#include "smtp/mx_delivery.h"
#include "smtp/session_pool.h"
#include "tests/integration/smtp/mx_test_support.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/fixtures/test_loop.h"
#include "tests/integration/fixtures/validating_dns.h"
#include "tests/integration/smtp/tls_sink.h"

namespace deliverd::smtp {
namespace {

using deliverd::testing::DnsServer;
using testing::describe;

// The raw association data of a SHA-256 TLSA record for a certificate in a PEM file.
std::string cert_digest(const std::string& pem_file, int selector, int index = 0) {
  return core::from_hex(deliverd::testing::ValidatingDns::tlsa_sha256(pem_file, selector, index)).value();
}


class MxDaneTest : public ::testing::Test {
 protected:
  MxDaneTest() {
    port_ = deliverd::testing::free_port();
    ip_ = deliverd::testing::free_loopback_ip(port_);
    cert_ = ca_.issue("mx", {"mx.dane.test"}, 30);
    sink_ = std::make_unique<deliverd::testing::TlsSink>(cert_.cert_file, cert_.key_file,
                                                         deliverd::testing::TlsSink::Mode::StartTls, ip_, port_);
    DnsServer::Options d;
    d.records = {DnsServer::mx("dane.test", "mx.dane.test", 10), DnsServer::host_record("mx.dane.test", ip_),
                 DnsServer::mx("other.test", "mx.other.test", 10), DnsServer::host_record("mx.other.test", ip_)};
    // For the DNSSEC suite: MX and A from dnsmasq ([dns] servers), TLSA from the validator.
    for (const auto& [domain, host] : std::vector<std::pair<std::string, std::string>>{{"sec.test", "mx.sec.test"},
                                                                                       {"secbad.test", "mxbad.sec.test"},
                                                                                       {"nodane.test", "nodane.sec.test"},
                                                                                       {"bog.test", "mx.bog.test"},
                                                                                       {"ins.test", "mx.ins.test"}}) {
      d.records.push_back(DnsServer::mx(domain, host, 10));
      d.records.push_back(DnsServer::host_record(host, ip_));
    }
    dns_ = std::make_unique<DnsServer>(d);
    policy_ = std::make_unique<dns::AddressPolicy>(dns::AddressPolicy::create({"127.0.0.0/8"}).value());
    dns::ResolverConfig rc;
    rc.servers = {dns_->address()};
    resolver_ = dns::Resolver::create(loop_.get(), rc, policy_.get());
  }
  ~MxDaneTest() override { resolver_->close(); }

  // One message to bob@<domain>; every MX host's TLSA lookup answers `answer`.
  core::Outcome deliver(const std::string& domain, HostDane answer) {
    return deliver_with(domain, [this, answer](const std::string& host, int port, std::function<void(HostDane)> cb) {
      asked_.push_back(host + ":" + std::to_string(port));
      cb(answer);
    });
  }

  core::Outcome deliver_with(const std::string& domain, DaneLookup lookup) {
    PoolConfig pc;
    pc.idle_timeout_ms = 50;
    SessionPool pool(loop_.get(), pc);
    core::TlsClientOptions o;
    o.use_system_roots = false;  // no CA: only a TLSA record can make a certificate pass
    MxDelivery mx(*resolver_, pool, testing::mx_test_config(port_, core::TlsContext::client(o).value()));
    mx.set_dane_lookup(std::move(lookup));
    mx.set_tls_report_sink([this](const smtp::TlsAttemptReport& r) {
      reported_.push_back(std::string(r.policy_type == smtp::TlsAttemptReport::PolicyType::Tlsa ? "tlsa " : "other ") +
                          std::string(core::to_string(r.result)) + " " + r.mx_host);
    });
    std::optional<core::Outcome> out;
    mx.deliver(domain, Envelope{"alice@acme.example", "bob@" + domain, "Subject: dane\r\n\r\nhello\r\n"},
               [&](const core::Outcome& r) { out = r; });
    EXPECT_TRUE(loop_.run_until([&] { return out.has_value() && pool.open_sessions() == 0; }, 30000)) << domain;
    return out.value_or(core::Outcome{});
  }

  static HostDane secure(std::vector<core::DaneRecord> records) {
    return HostDane{HostDane::Status::Secure, std::move(records), ""};
  }

  deliverd::testing::TestLoop loop_;
  deliverd::testing::TestCa ca_;
  int port_ = 0;
  std::string ip_;
  deliverd::testing::TestCa::Cert cert_;
  std::unique_ptr<deliverd::testing::TlsSink> sink_;
  std::unique_ptr<DnsServer> dns_;
  std::unique_ptr<dns::AddressPolicy> policy_;
  dns::Resolver* resolver_ = nullptr;
  std::vector<std::string> asked_;
  std::vector<std::string> reported_;  // TLS-RPT results: "tlsa <result> <host>"
};

// DANE-EE (3 1 1): the server's key matches; no CA is trusted and none is needed (RFC 7672 3.1.1).
TEST_F(MxDaneTest, ADaneEeRecordThatMatchesTheKeyVerifiesTheServer) {
  auto o = deliver("dane.test", secure({{3, 1, 1, cert_digest(cert_.cert_file, 1)}}));
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
  EXPECT_TRUE(o.tls_version == "TLSv1.2" || o.tls_version == "TLSv1.3") << o.tls_version;
  EXPECT_EQ(sink_->messages(), 1u);
  EXPECT_EQ(asked_, std::vector<std::string>{"mx.dane.test:" + std::to_string(port_)});
  EXPECT_EQ(reported_, std::vector<std::string>{"tlsa success mx.dane.test"});
}

// DANE-EE checks no name (3.1.1): the same key serves another MX name.
TEST_F(MxDaneTest, ADaneEeMatchIgnoresTheCertificateName) {
  auto o = deliver("other.test", secure({{3, 1, 1, cert_digest(cert_.cert_file, 1)}}));
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
}

// A TLSA record that does not match the server's key defers; nothing is sent, never in plaintext.
TEST_F(MxDaneTest, ATlsaRecordThatDoesNotMatchDefers) {
  std::string wrong = cert_digest(cert_.cert_file, 1);
  wrong[0] = static_cast<char>(wrong[0] ^ 0x01);
  auto o = deliver("dane.test", secure({{3, 1, 1, wrong}}));
  EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
  EXPECT_EQ(core::to_string(o.reason), "tls_certificate") << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
  EXPECT_EQ(o.detail.rfind("DANE (TLSA records of mx.dane.test): ", 0), 0u) << o.detail;
  EXPECT_EQ(sink_->messages(), 0u);
  EXPECT_EQ(sink_->connections(), 1u);  // one host, one address, no plaintext retry
  EXPECT_EQ(reported_, std::vector<std::string>{"tlsa tlsa-invalid mx.dane.test"});
}

// DANE-TA (2 0 1, the CA certificate the server sends in its chain): a trust anchor, with the MX
// host's name checked (3.1.2).
TEST_F(MxDaneTest, ADaneTaRecordVerifiesTheChainAndTheName) {
  std::vector<core::DaneRecord> ta = {{2, 0, 1, cert_digest(cert_.cert_file, 0, 1)}};
  auto o = deliver("dane.test", secure(ta));
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
  auto wrong_name = deliver("other.test", secure(ta));  // the certificate names mx.dane.test only
  EXPECT_EQ(wrong_name.status, core::Status::Deferred) << describe(wrong_name);
  EXPECT_EQ(core::to_string(wrong_name.reason), "tls_certificate") << describe(wrong_name);
  EXPECT_EQ(sink_->messages(), 1u);
  EXPECT_EQ(reported_, (std::vector<std::string>{"tlsa success mx.dane.test", "tlsa certificate-host-mismatch mx.other.test"}));
}

// A failed TLSA lookup (a bogus signature, a timeout) is not "no DANE": the host is not used.
TEST_F(MxDaneTest, AFailedTlsaLookupDefersWithoutConnecting) {
  auto o = deliver("dane.test", HostDane{HostDane::Status::Failed, {}, "servfail"});
  EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
  EXPECT_EQ(core::to_string(o.reason), "dane_tlsa_failed") << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
  EXPECT_NE(o.detail.find("mx.dane.test"), std::string::npos) << o.detail;
  EXPECT_NE(o.detail.find("servfail"), std::string::npos) << o.detail;
  EXPECT_EQ(sink_->connections(), 0u);
  EXPECT_EQ(reported_, std::vector<std::string>{"tlsa dnssec-invalid mx.dane.test"});
}

// Only unusable records (PKIX-EE, usage 1, which RFC 7672 3.1.3 leaves unused): TLS is still
// mandatory but not authenticated (2.2), so the untrusted certificate passes.
TEST_F(MxDaneTest, OnlyUnusableRecordsMeanTlsWithoutAuthentication) {
  auto o = deliver("dane.test", secure({{1, 1, 1, cert_digest(cert_.cert_file, 1)}}));
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
  EXPECT_FALSE(o.tls_version.empty());
}

// No DANE (authenticated denial or an insecure zone): the delivery's own policy applies.
TEST_F(MxDaneTest, WithoutTlsaRecordsTheDeliveryIsOpportunistic) {
  auto o = deliver("dane.test", HostDane{});
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "opportunistic");
  EXPECT_EQ(sink_->messages(), 1u);
}

// The same through the daemon's path: TLSA records from Unbound validating zones that ldns signed
// at start (dns::TlsaResolver, smtp::tlsa_dane_lookup), MX and A records from dnsmasq.
class MxDaneDnssecTest : public MxDaneTest {
 protected:
  MxDaneDnssecTest() {
    using deliverd::testing::ValidatingDns;
    const std::string good = ValidatingDns::tlsa_3_1_1(cert_.cert_file);
    std::string bad = good;
    bad[0] = bad[0] == '0' ? '1' : '0';
    // The TLSA owner names the port MX delivery connects to (25 in production, a free one here).
    // Each MX host also has an A record here: ldns-signzone's NSEC3 chain leaves empty
    // non-terminals unproven, so a denial below one would not validate.
    const std::string at = "_" + std::to_string(port_) + "._tcp.";
    ValidatingDns::Options o;
    o.zones.push_back({"sec.test", ValidatingDns::Signing::Secure,
                       {at + "mx IN TLSA 3 1 1 " + good, at + "mxbad IN TLSA 3 1 1 " + bad, "mx IN A 192.0.2.1",
                        "mxbad IN A 192.0.2.1", "nodane IN A 192.0.2.1"}});
    o.zones.push_back({"bog.test", ValidatingDns::Signing::Bogus, {at + "mx IN TLSA 3 1 1 " + good, "mx IN A 192.0.2.1"}});
    o.zones.push_back({"ins.test", ValidatingDns::Signing::Insecure, {at + "mx IN TLSA 3 1 1 " + bad, "mx IN A 192.0.2.1"}});
    validator_ = std::make_unique<ValidatingDns>(o);
    dns::TlsaResolverConfig tc;
    tc.servers = {validator_->address()};
    tlsa_ = dns::TlsaResolver::create(loop_.get(), tc);
  }
  ~MxDaneDnssecTest() override { tlsa_->close(); }

  core::Outcome deliver_validated(const std::string& domain) { return deliver_with(domain, tlsa_dane_lookup(tlsa_)); }

  std::unique_ptr<deliverd::testing::ValidatingDns> validator_;
  dns::TlsaResolver* tlsa_ = nullptr;
};

TEST_F(MxDaneDnssecTest, ASecureMatchingRecordDeliversUnderDane) {
  auto o = deliver_validated("sec.test");
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o) << validator_->validator_log();
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
  EXPECT_EQ(sink_->messages(), 1u);
}

TEST_F(MxDaneDnssecTest, ASecureRecordThatDoesNotMatchTheKeyDefers) {
  auto o = deliver_validated("secbad.test");
  EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
  EXPECT_EQ(core::to_string(o.reason), "tls_certificate") << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
  EXPECT_EQ(sink_->messages(), 0u);
}

// RFC 7672 2.2: authenticated denial → no DANE.
TEST_F(MxDaneDnssecTest, AnAuthenticatedDenialMeansNoDane) {
  auto o = deliver_validated("nodane.test");
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "opportunistic");
}

// A bogus signature is a lookup failure, never "no DANE": nothing is sent.
TEST_F(MxDaneDnssecTest, ABogusSignatureDefersAndConnectsNowhere) {
  auto o = deliver_validated("bog.test");
  EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
  EXPECT_EQ(core::to_string(o.reason), "dane_tlsa_failed") << describe(o);
  EXPECT_NE(o.detail.find("bogus"), std::string::npos) << o.detail;
  EXPECT_EQ(sink_->connections(), 0u);
}

// An unsigned zone's TLSA records are not trusted (AD not set): they are ignored, not applied.
TEST_F(MxDaneDnssecTest, RecordsOfAnInsecureZoneAreIgnored) {
  auto o = deliver_validated("ins.test");
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "opportunistic");
}

}  // namespace
}  // namespace deliverd::smtp
