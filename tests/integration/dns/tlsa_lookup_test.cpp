// TLSA lookups (dns/tlsa_lookup.h) against a real validating resolver: Unbound on loopback with
// trust anchors for zones ldns signs at test start (tests/integration/fixtures/validating_dns.h).
#include "dns/tlsa_lookup.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "core/hex.h"
#include "core/metrics.h"
#include "dns/resolver.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/fixtures/test_loop.h"
#include "tests/integration/fixtures/validating_dns.h"

namespace deliverd::dns {
namespace {

using testing::ValidatingDns;
using Status = TlsaResult::Status;

constexpr const char* kMxAddress = "93.184.216.34";

// The DANE-EE record of the test CA's "good" server certificate: real bytes, as a TLS sink would
// present them.
// 24 DANE-EE SHA-512 records: with their RRSIG more than the 1232-octet EDNS size, so Unbound
// answers UDP with TC and the lookup has to come over TCP.
std::vector<std::string> many_tlsa_records(const std::string& owner) {
  std::vector<std::string> out;
  for (int i = 0; i < 24; ++i) {
    std::string hex = {"0123456789abcdef"[i / 16], "0123456789abcdef"[i % 16]};  // distinct records
    for (int j = 1; j < 64; ++j) hex += "5a";
    out.push_back(owner + " IN TLSA 3 1 2 " + hex);
  }
  return out;
}

struct World {
  testing::TestCa ca;
  std::string spki_sha256 = ValidatingDns::tlsa_3_1_1(ca.good().cert_file);
  ValidatingDns dns{[this] {
    ValidatingDns::Options o;
    o.zones.push_back({"dane.test",
                       ValidatingDns::Signing::Secure,
                       {"@ IN MX 10 mx", "mx IN A " + std::string(kMxAddress),
                        "_25._tcp.mx IN TLSA 3 1 1 " + spki_sha256, "notlsa IN A " + std::string(kMxAddress),
                        "cached IN A " + std::string(kMxAddress), "_25._tcp.cached IN TLSA 3 1 1 " + spki_sha256,
                        "_25._tcp.alias IN CNAME _25._tcp.mx", "_25._tcp.txtonly IN TXT \"no TLSA here\""}});
    for (auto& r : many_tlsa_records("_25._tcp.big")) o.zones.front().records.push_back(r);
    o.zones.push_back({"plain.test",
                       ValidatingDns::Signing::Insecure,
                       {"mx IN A " + std::string(kMxAddress), "_25._tcp.mx IN TLSA 3 1 1 " + spki_sha256}});
    o.zones.push_back({"broken.test",
                       ValidatingDns::Signing::Bogus,
                       {"mx IN A " + std::string(kMxAddress), "_25._tcp.mx IN TLSA 3 1 1 " + spki_sha256}});
    return o;
  }()};
};

World* world = nullptr;

double lookups(Status s) {
  return core::Registry::global()
      .counter("deliverd_dane_tlsa_lookups_total", "", {"result"})
      .with({std::string(to_string(s))})
      .value();
}

class TlsaLookupTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world = new World; }
  static void TearDownTestSuite() {
    delete world;
    world = nullptr;
  }
  void TearDown() override {
    if (resolver_) resolver_->close();
  }

  TlsaResolver* make(TlsaResolverConfig cfg = {}) {
    if (cfg.servers.empty()) cfg.servers = {world->dns.address()};
    resolver_ = TlsaResolver::create(loop_.get(), cfg);
    return resolver_;
  }
  TlsaResult lookup(const std::string& name) {
    std::optional<TlsaResult> out;
    resolver_->lookup(name, [&](const TlsaResult& r) { out = r; });
    EXPECT_TRUE(loop_.run_until([&] { return out.has_value(); })) << name;
    return out.value_or(TlsaResult{});
  }

  testing::TestLoop loop_;
  TlsaResolver* resolver_ = nullptr;
};

TEST_F(TlsaLookupTest, FixtureHashMatchesTheOpensslCli) {
  std::string out;
  int rc = testing::run_command({"sh", "-c",
                                 "openssl x509 -in '" + world->ca.good().cert_file +
                                     "' -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r"},
                                &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(out.substr(0, 64), world->spki_sha256);
}

TEST_F(TlsaLookupTest, SignedZoneGivesSecureRecordsWithExactBytes) {
  make();
  double before = lookups(Status::Secure);
  TlsaResult r = lookup(tlsa_name("mx.dane.test"));
  ASSERT_EQ(r.status, Status::Secure) << r.detail << "\n" << world->dns.validator_log();
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].usage, 3);
  EXPECT_EQ(r.records[0].selector, 1);
  EXPECT_EQ(r.records[0].mtype, 1);
  EXPECT_EQ(r.records[0].data, core::from_hex(world->spki_sha256).value());
  EXPECT_FALSE(r.from_cache);
  EXPECT_EQ(lookups(Status::Secure), before + 1);
}

TEST_F(TlsaLookupTest, FollowsASignedCname) {
  make();
  TlsaResult r = lookup(tlsa_name("alias.dane.test"));
  ASSERT_EQ(r.status, Status::Secure) << r.detail;
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].data, core::from_hex(world->spki_sha256).value());
}

TEST_F(TlsaLookupTest, AnswerTooBigForUdpComesOverTcp) {
  make();
  TlsaResult r = lookup(tlsa_name("big.dane.test"));
  ASSERT_EQ(r.status, Status::Secure) << r.detail;
  ASSERT_EQ(r.records.size(), 24u);
  for (const auto& rec : r.records) {
    EXPECT_EQ(rec.mtype, 2);
    EXPECT_EQ(rec.data.size(), 64u);
  }
}

TEST_F(TlsaLookupTest, NameWithoutTlsaInSignedZoneIsAuthenticatedDenial) {
  make();
  // The host exists, its _25._tcp name does not: NXDOMAIN, proven by NSEC3.
  TlsaResult nxdomain = lookup(tlsa_name("notlsa.dane.test"));
  EXPECT_EQ(nxdomain.status, Status::NoRecords) << nxdomain.detail;
  EXPECT_NE(nxdomain.detail.find("NXDOMAIN, AD=1"), std::string::npos) << nxdomain.detail;
  EXPECT_TRUE(nxdomain.records.empty());
  // The name exists with other types only: NODATA, proven by NSEC3.
  TlsaResult nodata = lookup(tlsa_name("txtonly.dane.test"));
  EXPECT_EQ(nodata.status, Status::NoRecords) << nodata.detail;
  EXPECT_NE(nodata.detail.find("NOERROR, AD=1"), std::string::npos) << nodata.detail;
}

TEST_F(TlsaLookupTest, UnsignedZoneIsInsecureAndItsRecordsAreNotUsed) {
  make();
  TlsaResult r = lookup(tlsa_name("mx.plain.test"));
  EXPECT_EQ(r.status, Status::Insecure) << r.detail;
  EXPECT_TRUE(r.records.empty());
  EXPECT_NE(r.detail.find("AD=0"), std::string::npos) << r.detail;
}

TEST_F(TlsaLookupTest, BogusSignatureIsALookupFailureNeverNoDane) {
  make();
  for (const char* host : {"mx.broken.test", "nosuchhost.broken.test"}) {
    TlsaResult r = lookup(tlsa_name(host));
    EXPECT_TRUE(r.status == Status::Bogus || r.status == Status::Failed) << host << ": " << r.detail;
    EXPECT_NE(r.status, Status::NoRecords) << host;
    EXPECT_TRUE(r.records.empty());
  }
  // Not cached: a failure is asked again.
  size_t asked = world->dns.query_count("_25._tcp.mx.broken.test", "TLSA");
  lookup(tlsa_name("mx.broken.test"));
  EXPECT_TRUE(loop_.run_until([&] { return world->dns.query_count("_25._tcp.mx.broken.test", "TLSA") > asked; }));
  // Unbound says why (val-log-level 2): the answer was bogus, not missing.
  EXPECT_NE(world->dns.validator_log().find("validation failure"), std::string::npos);
  // The fixture left the key set valid: the anchor matched, the signatures did not.
  EXPECT_FALSE(world->dns.trust_anchor("broken.test").empty());
}

TEST_F(TlsaLookupTest, SecondLookupIsServedFromTheCache) {
  make();
  TlsaResult first = lookup(tlsa_name("cached.dane.test"));
  ASSERT_EQ(first.status, Status::Secure) << first.detail;
  ASSERT_TRUE(loop_.run_until([&] { return world->dns.query_count("_25._tcp.cached.dane.test", "TLSA") == 1; }))
      << world->dns.validator_log();
  TlsaResult second = lookup(tlsa_name("CACHED.dane.test."));
  EXPECT_EQ(second.status, Status::Secure);
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.records, first.records);
  EXPECT_EQ(resolver_->cache_size(), 1u);
  usleep(300 * 1000);  // the log would show a second query by now
  EXPECT_EQ(world->dns.query_count("_25._tcp.cached.dane.test", "TLSA"), 1u);
}

TEST_F(TlsaLookupTest, IdenticalNamesInFlightShareOneQuery) {
  make();
  std::string name = tlsa_name("mx.plain.test");
  resolver_->clear_cache();
  size_t asked = world->dns.query_count(name, "TLSA");
  int answered = 0;
  for (int i = 0; i < 3; ++i)
    resolver_->lookup(name, [&](const TlsaResult& r) {
      EXPECT_EQ(r.status, Status::Insecure);
      ++answered;
    });
  auto cancelled = resolver_->lookup(name, [&](const TlsaResult&) { ADD_FAILURE() << "cancelled callback ran"; });
  resolver_->cancel(cancelled);
  EXPECT_EQ(resolver_->pending(), 3u);
  ASSERT_TRUE(loop_.run_until([&] { return answered == 3; }));
  usleep(300 * 1000);
  EXPECT_EQ(world->dns.query_count(name, "TLSA"), asked + 1);
}

TEST_F(TlsaLookupTest, SilentResolverTimesOut) {
  // A bound UDP socket nobody reads: queries go in, nothing comes back.
  int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  TlsaResolverConfig cfg;
  cfg.servers = {"127.0.0.1:" + std::to_string(ntohs(a.sin_port))};
  cfg.timeout_ms = 200;
  cfg.tries = 1;
  make(cfg);
  TlsaResult r = lookup(tlsa_name("mx.dane.test"));
  EXPECT_EQ(r.status, Status::Failed);
  EXPECT_NE(r.detail.find("timeout"), std::string::npos) << r.detail;
  ::close(fd);
}

TEST_F(TlsaLookupTest, ClosedResolverPortFails) {
  TlsaResolverConfig cfg;
  cfg.servers = {"127.0.0.1:" + std::to_string(testing::free_port())};
  cfg.timeout_ms = 200;
  cfg.tries = 1;
  make(cfg);
  TlsaResult r = lookup(tlsa_name("mx.dane.test"));
  EXPECT_EQ(r.status, Status::Failed) << r.detail;
}

TEST_F(TlsaLookupTest, BadNamesAndOverloadFailWithoutAQuery) {
  TlsaResolverConfig cfg;
  cfg.max_pending = 1;
  make(cfg);
  std::optional<TlsaResult> first, second;
  resolver_->lookup(tlsa_name("mx.plain.test"), [&](const TlsaResult& r) { first = r; });
  resolver_->lookup(tlsa_name("mx.dane.test"), [&](const TlsaResult& r) { second = r; });
  ASSERT_TRUE(loop_.run_until([&] { return first && second; }));
  EXPECT_EQ(second->status, Status::Failed);
  EXPECT_NE(second->detail.find("overloaded"), std::string::npos);
  TlsaResult bad = lookup("bad name..test");
  EXPECT_EQ(bad.status, Status::Failed);
  EXPECT_NE(bad.detail.find("not a valid DNS name"), std::string::npos);
}

TEST_F(TlsaLookupTest, RefusesAConfigWithoutAResolver) {
  EXPECT_THROW(TlsaResolver::create(loop_.get(), {}), std::runtime_error);
  TlsaResolverConfig cfg;
  cfg.servers = {"not-an-address"};
  EXPECT_THROW(TlsaResolver::create(loop_.get(), cfg), std::runtime_error);
}

TEST_F(TlsaLookupTest, CloseWithALookupInFlightCallsNothing) {
  make();
  bool called = false;
  resolver_->lookup(tlsa_name("mx.dane.test"), [&](const TlsaResult&) { called = true; });
  resolver_->close();
  resolver_ = nullptr;
  loop_.run_until([] { return false; }, 200);
  EXPECT_FALSE(called);
}

// The same validating Unbound serves the ordinary resolver, so an operator can run one.
TEST_F(TlsaLookupTest, PlainResolverResolvesTheSignedZoneThroughTheValidator) {
  ResolverConfig cfg;
  cfg.servers = {world->dns.address()};
  Resolver* plain = Resolver::create(loop_.get(), cfg, nullptr);
  std::optional<MxResult> mx;
  std::optional<ResolvedHost> host;
  plain->resolve_mx("dane.test", [&](const MxResult& r) { mx = r; });
  plain->resolve_host("mx.dane.test", [&](const ResolvedHost& r) { host = r; });
  ASSERT_TRUE(loop_.run_until([&] { return mx && host; }));
  plain->close();
  ASSERT_EQ(mx->error, Code::None);
  ASSERT_EQ(mx->hosts.size(), 1u);
  EXPECT_EQ(mx->hosts[0], (std::pair<int, std::string>{10, "mx.dane.test"}));
  ASSERT_EQ(host->error, Code::None);
  ASSERT_EQ(host->allowed.size(), 1u);
  EXPECT_EQ(address_to_string(reinterpret_cast<const sockaddr*>(&host->allowed[0])), kMxAddress);
}

}  // namespace
}  // namespace deliverd::dns
