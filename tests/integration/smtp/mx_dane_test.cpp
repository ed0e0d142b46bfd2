// DANE (RFC 7672) in MX delivery against the in-tree TLS sink found through dnsmasq: the TLSA
// answer is given per test (the DNSSEC lookup that produces it is tested with a validating
// resolver in dane_dns_integration_test and end to end in mta_sts_dane_daemon tests). The client
// trusts no CA at all, so a delivery that passes was verified by its TLSA record alone.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tls_context.h"
#include "dns/resolver.h"
#include "smtp/mx_delivery.h"
#include "smtp/session_pool.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/fixtures/test_loop.h"
#include "tests/integration/smtp/tls_sink.h"

namespace deliverd::smtp {
namespace {

using deliverd::testing::DnsServer;

// SHA-256 of the first certificate in a PEM file: its SubjectPublicKeyInfo (selector 1) or the
// whole certificate (selector 0); `skip` certificates are passed over first (1 = the CA after
// the leaf).
std::string cert_digest(const std::string& pem_file, int selector, int skip = 0) {
  FILE* f = std::fopen(pem_file.c_str(), "r");
  EXPECT_NE(f, nullptr) << pem_file;
  if (!f) return "";
  X509* cert = nullptr;
  for (int i = 0; i <= skip; ++i) {
    if (cert) X509_free(cert);
    cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  }
  std::fclose(f);
  EXPECT_NE(cert, nullptr);
  if (!cert) return "";
  unsigned char* der = nullptr;
  int len = selector == 1 ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der) : i2d_X509(cert, &der);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_Digest(der, static_cast<size_t>(len), md, &md_len, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  X509_free(cert);
  return std::string(reinterpret_cast<char*>(md), md_len);
}

std::string describe(const core::Outcome& o) {
  return std::string(core::to_string(o.status)) + " " + std::string(core::to_string(o.phase)) + "/" +
         std::string(core::to_string(o.reason)) + " policy=" + std::string(core::to_string(o.tls_policy)) +
         " tls=" + o.tls_version + " " + o.detail;
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
    dns_ = std::make_unique<DnsServer>(d);
    policy_ = std::make_unique<dns::AddressPolicy>(dns::AddressPolicy::create({"127.0.0.0/8"}).value());
    dns::ResolverConfig rc;
    rc.servers = {dns_->address()};
    resolver_ = dns::Resolver::create(loop_.get(), rc, policy_.get());
  }
  ~MxDaneTest() override { resolver_->close(); }

  // One message to bob@<domain>; every MX host's TLSA lookup answers `answer`.
  core::Outcome deliver(const std::string& domain, HostDane answer) {
    PoolConfig pc;
    pc.idle_timeout_ms = 50;
    SessionPool pool(loop_.get(), pc);
    MxConfig mc;
    mc.port = port_;
    mc.max_attempts = 2;
    mc.session.helo_name = "client.test";
    for (auto& ms : mc.session.timeouts.ms) ms = 5000;
    mc.session.total_ms = 30000;
    mc.session.security = Security::StartTls;
    mc.session.tls_policy = TlsPolicy::Opportunistic;
    core::TlsClientOptions o;
    o.use_system_roots = false;  // no CA: only a TLSA record can make a certificate pass
    mc.session.tls = core::TlsContext::client(o).value();
    MxDelivery mx(*resolver_, pool, mc);
    mx.set_dane_lookup([this, answer](const std::string& host, int port, std::function<void(HostDane)> cb) {
      asked_.push_back(host + ":" + std::to_string(port));
      cb(answer);
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
};

// DANE-EE (3 1 1): the server's key matches; no CA is trusted and none is needed (RFC 7672 3.1.1).
TEST_F(MxDaneTest, ADaneEeRecordThatMatchesTheKeyVerifiesTheServer) {
  auto o = deliver("dane.test", secure({{3, 1, 1, cert_digest(cert_.cert_file, 1)}}));
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "dane");
  EXPECT_TRUE(o.tls_version == "TLSv1.2" || o.tls_version == "TLSv1.3") << o.tls_version;
  EXPECT_EQ(sink_->messages(), 1u);
  EXPECT_EQ(asked_, std::vector<std::string>{"mx.dane.test:" + std::to_string(port_)});
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

}  // namespace
}  // namespace deliverd::smtp
