// The resolver against a real DNS server (dnsmasq on a loopback port) serving a test zone.
#include "dns/resolver.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "core/metrics.h"
#include "tests/integration/fixtures/dns_server.h"

namespace deliverd::dns {
namespace {

using testing::DnsServer;

constexpr const char* kPublic4 = "93.184.216.34";
constexpr const char* kPublic4b = "93.184.216.35";
constexpr const char* kPublic6 = "2606:2800:220:1::1";

DnsServer::Options zone() {
  DnsServer::Options o;
  o.records = {
      DnsServer::host_record("a.test", kPublic4),
      DnsServer::host_record("dual.test", kPublic4),
      DnsServer::host_record("dual.test", kPublic6),
      DnsServer::host_record("ten.test", "10.0.0.1"),
      DnsServer::host_record("mixed.test", kPublic4b),
      DnsServer::host_record("mixed.test", "10.0.0.1"),
      DnsServer::host_record("v6only.test", kPublic6),
      DnsServer::host_record("ula.test", "fd00:ec2::254"),
      DnsServer::host_record("lo.mx.test", "127.0.0.1"),
      DnsServer::host_record("mail1.mx.test", kPublic4),
      DnsServer::host_record("mail2.mx.test", kPublic4b),
      DnsServer::host_record("nomx.test", kPublic4),
      DnsServer::cname("c1.test", "c2.test"),
      DnsServer::cname("c2.test", "a.test"),
      DnsServer::mx("mx.test", "mail2.mx.test", 20),
      DnsServer::mx("mx.test", "mail1.mx.test", 10),
      DnsServer::mx("mxlocal.test", "127.0.0.1", 10),
      DnsServer::mx("mxlo.test", "lo.mx.test", 10),
      DnsServer::txt("_mta-sts.txt.test", {"v=STSv1; ", "id=20261203;"}),
      DnsServer::txt("two.txt.test", {"first"}),
      DnsServer::txt("two.txt.test", {"second"}),
      DnsServer::host_record("notxt.test", kPublic4),
      // Per-test names, so query counts are not shared between tests.
      DnsServer::host_record("cached.test", kPublic4),
      DnsServer::host_record("coalesce.test", kPublic4),
      DnsServer::host_record("cap.test", kPublic4),
      DnsServer::host_record("closing.test", kPublic4),
  };
  o.black_holed_domains = {"slow.test"};
  return o;
}

double counter(const std::string& name, const std::vector<std::string>& labels,
               const std::vector<std::string>& values) {
  return core::Registry::global().counter(name, "", labels).with(values).value();
}

class ResolverTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new DnsServer(zone()); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    uv_timer_init(&loop_, &tick_);
    // Wakes the loop now and then so run_until can check its deadline even when nothing happens.
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 20, 20);
  }

  void TearDown() override {
    if (resolver_) resolver_->close();
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

  Resolver* make(ResolverConfig cfg = {}, const AddressPolicy* policy = nullptr) {
    if (cfg.servers.empty()) cfg.servers = {server_->address()};
    resolver_ = Resolver::create(&loop_, cfg, policy);
    return resolver_;
  }

  template <class Pred>
  bool run_until(Pred done, int timeout_ms = 10000) {
    long long deadline = testing::now_ms() + timeout_ms;
    while (!done()) {
      if (testing::now_ms() > deadline) return false;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return true;
  }

  ResolvedHost host(const std::string& name) {
    std::optional<ResolvedHost> out;
    resolver_->resolve_host(name, [&](const ResolvedHost& r) { out = r; });
    EXPECT_TRUE(run_until([&] { return out.has_value(); })) << name;
    return out.value_or(ResolvedHost{});
  }

  MxResult mx(const std::string& name) {
    std::optional<MxResult> out;
    resolver_->resolve_mx(name, [&](const MxResult& r) { out = r; });
    EXPECT_TRUE(run_until([&] { return out.has_value(); })) << name;
    return out.value_or(MxResult{});
  }

  static std::vector<std::string> ips(const ResolvedHost& r) {
    std::vector<std::string> out;
    for (const auto& ss : r.allowed) out.push_back(address_to_string(reinterpret_cast<const sockaddr*>(&ss)));
    std::sort(out.begin(), out.end());
    return out;
  }

  static DnsServer* server_;
  uv_loop_t loop_{};
  uv_timer_t tick_{};
  Resolver* resolver_ = nullptr;
};

DnsServer* ResolverTest::server_ = nullptr;

TEST_F(ResolverTest, ResolvesAnARecord) {
  make();
  auto r = host("a.test");
  EXPECT_EQ(to_string(r.error), "");
  EXPECT_EQ(ips(r), std::vector<std::string>{kPublic4});
  EXPECT_TRUE(r.refused.empty());
}

TEST_F(ResolverTest, ResolvesBothAAndAaaa) {
  make();
  auto r = host("dual.test");
  EXPECT_EQ(to_string(r.error), "");
  EXPECT_EQ(ips(r), (std::vector<std::string>{kPublic6, kPublic4}));
  auto v6 = host("v6only.test");
  EXPECT_EQ(ips(v6), std::vector<std::string>{kPublic6});
}

TEST_F(ResolverTest, FollowsACnameChain) {
  make();
  auto r = host("C1.Test.");
  EXPECT_EQ(to_string(r.error), "");
  EXPECT_EQ(ips(r), std::vector<std::string>{kPublic4});
}

TEST_F(ResolverTest, ReportsNxdomainForHostsAndMx) {
  make();
  EXPECT_EQ(to_string(host("nope.test").error), "nxdomain");
  EXPECT_EQ(to_string(mx("nope.test").error), "nxdomain");
  auto outcome = resolve_failure_outcome(host("nope.test"));
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->status, core::Status::Bounced);
}

TEST_F(ResolverTest, RejectsAHostWhoseOnlyAddressIsPrivate) {
  make();
  double before = counter("deliverd_targets_refused_total", {"reason"}, {"private"});
  auto r = host("ten.test");
  EXPECT_EQ(to_string(r.error), "refused_by_policy");
  EXPECT_TRUE(r.allowed.empty());
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0], (std::pair<std::string, std::string>{"10.0.0.1", "private"}));
  EXPECT_EQ(counter("deliverd_targets_refused_total", {"reason"}, {"private"}), before + 1);
  auto outcome = resolve_failure_outcome(r);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->status, core::Status::Rejected);
  EXPECT_EQ(to_string(outcome->reason), "ssrf_refused");
  EXPECT_EQ(to_string(outcome->phase), "resolve");
}

TEST_F(ResolverTest, RejectsMetadataAddressFromDns) {
  make();
  auto r = host("ula.test");
  EXPECT_EQ(to_string(r.error), "refused_by_policy");
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].second, "metadata");
}

TEST_F(ResolverTest, KeepsOnlyThePublicAddressesOfAMixedHost) {
  make();
  auto r = host("mixed.test");
  EXPECT_EQ(to_string(r.error), "");
  EXPECT_EQ(ips(r), std::vector<std::string>{kPublic4b});
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].first, "10.0.0.1");
  EXPECT_FALSE(resolve_failure_outcome(r).has_value());
}

TEST_F(ResolverTest, AllowPrivateTargetsOverridesTheRefusal) {
  auto policy = AddressPolicy::create({"10.0.0.0/8"});
  ASSERT_TRUE(policy);
  make({}, &*policy);
  auto r = host("ten.test");
  EXPECT_EQ(to_string(r.error), "");
  EXPECT_EQ(ips(r), std::vector<std::string>{"10.0.0.1"});
  // A reload to the default policy applies to the cached answer too.
  auto strict = AddressPolicy::create({});
  resolver_->set_policy(&*strict);
  EXPECT_EQ(to_string(host("ten.test").error), "refused_by_policy");
}

TEST_F(ResolverTest, SortsMxHostsByPreference) {
  make();
  auto r = mx("mx.test");
  EXPECT_EQ(to_string(r.error), "");
  EXPECT_FALSE(r.null_mx);
  EXPECT_FALSE(r.no_mx);
  EXPECT_EQ(r.hosts, (std::vector<std::pair<int, std::string>>{{10, "mail1.mx.test"}, {20, "mail2.mx.test"}}));
}

TEST_F(ResolverTest, MxPointingAtLoopbackIsRefusedWhenItsHostIsResolved) {
  make();
  auto literal = mx("mxlocal.test");
  ASSERT_EQ(literal.hosts.size(), 1u);
  EXPECT_EQ(literal.hosts[0].second, "127.0.0.1");
  auto r1 = host(literal.hosts[0].second);
  EXPECT_EQ(to_string(r1.error), "refused_by_policy");
  ASSERT_EQ(r1.refused.size(), 1u);
  EXPECT_EQ(r1.refused[0].second, "loopback");

  auto named = mx("mxlo.test");
  ASSERT_EQ(named.hosts.size(), 1u);
  auto r2 = host(named.hosts[0].second);
  EXPECT_EQ(to_string(r2.error), "refused_by_policy");
  ASSERT_EQ(r2.refused.size(), 1u);
  EXPECT_EQ(r2.refused[0], (std::pair<std::string, std::string>{"127.0.0.1", "loopback"}));
}

TEST_F(ResolverTest, ResolvesTxtRecordsWithTheirStringsJoined) {
  make();
  auto txt = [&](const std::string& name) {
    std::optional<TxtResult> out;
    resolver_->resolve_txt(name, [&](const TxtResult& r) { out = r; });
    EXPECT_TRUE(run_until([&] { return out.has_value(); })) << name;
    return out.value_or(TxtResult{});
  };
  auto one = txt("_mta-sts.txt.test");
  EXPECT_EQ(to_string(one.error), "");
  EXPECT_EQ(one.records, std::vector<std::string>{"v=STSv1; id=20261203;"});
  auto two = txt("two.txt.test");
  std::sort(two.records.begin(), two.records.end());
  EXPECT_EQ(two.records, (std::vector<std::string>{"first", "second"}));
  auto none = txt("notxt.test");
  EXPECT_EQ(to_string(none.error), "nodata");
  EXPECT_TRUE(none.records.empty());
  EXPECT_EQ(to_string(txt("_mta-sts.absent.test").error), "nxdomain");
  EXPECT_EQ(to_string(txt("bad name.test").error), "invalid_name");
  EXPECT_EQ(to_string(txt("_mta-sts.localhost").error), "refused_by_policy");
  // A second lookup is answered from the cache: dnsmasq sees one TXT query.
  EXPECT_EQ(txt("_mta-sts.txt.test").records.size(), 1u);
  EXPECT_EQ(server_->query_count("_mta-sts.txt.test", "TXT"), 1u);
}

TEST_F(ResolverTest, ReportsNoMxForANameWithoutMxRecords) {
  make();
  auto r = mx("nomx.test");
  EXPECT_EQ(to_string(r.error), "");
  EXPECT_TRUE(r.no_mx);
  EXPECT_TRUE(r.hosts.empty());
}

TEST_F(ResolverTest, ADroppedAnswerTimesOut) {
  ResolverConfig cfg;
  cfg.timeout_ms = 200;
  cfg.tries = 1;
  make(cfg);
  double before = counter("deliverd_dns_queries_total", {"type", "result"}, {"a", "timeout"});
  long long start = testing::now_ms();
  auto r = host("x.slow.test");
  EXPECT_EQ(to_string(r.error), "timeout");
  EXPECT_LT(testing::now_ms() - start, 8000);  // loose: the point is that it ends
  EXPECT_EQ(counter("deliverd_dns_queries_total", {"type", "result"}, {"a", "timeout"}), before + 1);
  auto outcome = resolve_failure_outcome(r);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->status, core::Status::Deferred);
  EXPECT_EQ(to_string(mx("y.slow.test").error), "timeout");
  // The timeout is remembered briefly: asked again at once, the answer comes without a query.
  long long again = testing::now_ms();
  EXPECT_EQ(to_string(host("x.slow.test").error), "timeout");
  EXPECT_LT(testing::now_ms() - again, 150);
  EXPECT_EQ(counter("deliverd_dns_queries_total", {"type", "result"}, {"a", "timeout"}), before + 1);
}

TEST_F(ResolverTest, TimeoutsAreAskedAgainWhenNotRemembered) {
  ResolverConfig cfg;
  cfg.timeout_ms = 200;
  cfg.tries = 1;
  cfg.timeout_ttl_s = 0;
  make(cfg);
  double before = counter("deliverd_dns_queries_total", {"type", "result"}, {"a", "timeout"});
  EXPECT_EQ(to_string(host("z.slow.test").error), "timeout");
  EXPECT_EQ(to_string(host("z.slow.test").error), "timeout");
  EXPECT_EQ(counter("deliverd_dns_queries_total", {"type", "result"}, {"a", "timeout"}), before + 2);
}

TEST_F(ResolverTest, AnswersARepeatedLookupFromTheCache) {
  make();
  double hits = counter("deliverd_dns_cache_hits_total", {"type"}, {"a"});
  EXPECT_EQ(to_string(host("cached.test").error), "");
  size_t queries = server_->query_count("cached.test");
  EXPECT_EQ(queries, 2u);  // A and AAAA
  EXPECT_EQ(to_string(host("cached.test").error), "");
  EXPECT_EQ(to_string(host("CACHED.test").error), "");
  EXPECT_EQ(server_->query_count("cached.test"), queries);
  EXPECT_EQ(counter("deliverd_dns_cache_hits_total", {"type"}, {"a"}), hits + 2);
  EXPECT_GE(resolver_->cache_size(), 2u);
  EXPECT_GE(core::Registry::global().gauge("deliverd_dns_cache_entries", "").get().value(), 2.0);
}

TEST_F(ResolverTest, CoalescesConcurrentIdenticalLookups) {
  make();
  int done = 0;
  for (int i = 0; i < 25; ++i)
    resolver_->resolve_host("coalesce.test", [&](const ResolvedHost& r) {
      EXPECT_EQ(to_string(r.error), "");
      ++done;
    });
  ASSERT_TRUE(run_until([&] { return done == 25; }));
  EXPECT_EQ(server_->query_count("coalesce.test"), 2u);  // one A, one AAAA
}

TEST_F(ResolverTest, CachesNegativeAnswersForTheNegativeTtl) {
  ResolverConfig cfg;
  cfg.negative_ttl_s = 1;
  make(cfg);
  EXPECT_EQ(to_string(host("neg.test").error), "nxdomain");
  EXPECT_EQ(to_string(host("neg.test").error), "nxdomain");
  EXPECT_EQ(server_->query_count("neg.test"), 2u);
  bool never = false;
  run_until([&] { return never; }, 1300);  // let the negative entry expire
  EXPECT_EQ(to_string(host("neg.test").error), "nxdomain");
  EXPECT_EQ(server_->query_count("neg.test"), 4u);
}

TEST_F(ResolverTest, CapsTheTtlAtMaxTtl) {
  ResolverConfig cfg;
  cfg.max_ttl_s = 1;  // the zone says 300 s
  make(cfg);
  EXPECT_EQ(to_string(host("cap.test").error), "");
  EXPECT_EQ(to_string(host("cap.test").error), "");
  EXPECT_EQ(server_->query_count("cap.test"), 2u);
  bool never = false;
  run_until([&] { return never; }, 1300);
  EXPECT_EQ(to_string(host("cap.test").error), "");
  EXPECT_EQ(server_->query_count("cap.test"), 4u);
}

TEST_F(ResolverTest, HonoursTheRecordTtl) {
  DnsServer::Options o;
  o.records = {DnsServer::host_record("short.test", kPublic4)};
  o.ttl_s = 1;
  DnsServer short_ttl(o);
  ResolverConfig cfg;
  cfg.servers = {short_ttl.address()};
  make(cfg);
  EXPECT_EQ(to_string(host("short.test").error), "");
  EXPECT_EQ(to_string(host("short.test").error), "");
  EXPECT_EQ(short_ttl.query_count("short.test"), 2u);
  bool never = false;
  run_until([&] { return never; }, 1300);
  EXPECT_EQ(to_string(host("short.test").error), "");
  // The AAAA no-data answer stays cached for negative_ttl_s; the A record expired with its TTL.
  EXPECT_EQ(short_ttl.query_count("short.test", "A"), 2u);
  EXPECT_EQ(short_ttl.query_count("short.test", "AAAA"), 1u);
}

TEST_F(ResolverTest, CancelledRequestsGetNoCallback) {
  make();
  bool cancelled_called = false;
  auto id = resolver_->resolve_host("a.test", [&](const ResolvedHost&) { cancelled_called = true; });
  auto lit = resolver_->resolve_host("93.184.216.34", [&](const ResolvedHost&) { cancelled_called = true; });
  auto mx_id = resolver_->resolve_mx("mx.test", [&](const MxResult&) { cancelled_called = true; });
  resolver_->cancel(id);
  resolver_->cancel(lit);
  resolver_->cancel(mx_id);
  EXPECT_EQ(resolver_->pending(), 0u);
  EXPECT_EQ(to_string(host("a.test").error), "");  // finishes after the cancelled ones would have
  EXPECT_EQ(to_string(mx("mx.test").error), "");
  EXPECT_FALSE(cancelled_called);
}

TEST_F(ResolverTest, AnswersIpLiteralsWithoutDnsButThroughThePolicy) {
  make();
  auto pub = host("93.184.216.34");
  EXPECT_EQ(to_string(pub.error), "");
  EXPECT_EQ(ips(pub), std::vector<std::string>{"93.184.216.34"});
  for (const char* spelling : {"127.0.0.1", "[::1]", "0x7f.1", "2130706433", "0177.0.0.1", "[IPv6:::ffff:127.0.0.1]",
                               "169.254.169.254", "fe80::1%25eth0"}) {
    auto r = host(spelling);
    EXPECT_EQ(to_string(r.error), "refused_by_policy") << spelling;
    EXPECT_TRUE(r.allowed.empty()) << spelling;
  }
  EXPECT_EQ(server_->log().find("query[A] 127"), std::string::npos);
}

TEST_F(ResolverTest, RejectsInvalidNamesWithoutAsking) {
  make();
  EXPECT_EQ(to_string(host("bad name.test").error), "invalid_name");
  EXPECT_EQ(to_string(host("1.2.3.999").error), "invalid_name");
  EXPECT_EQ(to_string(host("").error), "invalid_name");
  EXPECT_EQ(to_string(host(std::string(300, 'a')).error), "invalid_name");
  EXPECT_EQ(to_string(mx("a..test").error), "invalid_name");
  EXPECT_EQ(server_->log().find("999"), std::string::npos);
}

TEST_F(ResolverTest, CallbacksAreAlwaysAsynchronous) {
  make();
  EXPECT_EQ(to_string(host("a.test").error), "");  // now cached
  for (const char* name : {"a.test", "93.184.216.34", "bad name"}) {
    bool called = false;
    resolver_->resolve_host(name, [&](const ResolvedHost&) { called = true; });
    EXPECT_FALSE(called) << name;
    ASSERT_TRUE(run_until([&] { return called; }));
  }
}

TEST_F(ResolverTest, BoundsPendingRequests) {
  ResolverConfig cfg;
  cfg.max_pending = 2;
  cfg.timeout_ms = 300;
  cfg.tries = 1;
  make(cfg);
  std::vector<std::string> errors;
  for (int i = 0; i < 4; ++i)
    resolver_->resolve_host("p" + std::to_string(i) + ".slow.test",
                            [&](const ResolvedHost& r) { errors.push_back(std::string(to_string(r.error))); });
  ASSERT_TRUE(run_until([&] { return errors.size() == 4; }));
  EXPECT_EQ(std::count(errors.begin(), errors.end(), "overloaded"), 2);
  EXPECT_EQ(std::count(errors.begin(), errors.end(), "timeout"), 2);
}

TEST_F(ResolverTest, CloseWithLookupsInFlightCallsNothingAndFreesEverything) {
  make();
  bool called = false;
  resolver_->resolve_host("x.slow.test", [&](const ResolvedHost&) { called = true; });
  resolver_->resolve_host("closing.test", [&](const ResolvedHost&) { called = true; });
  resolver_->resolve_mx("mx.test", [&](const MxResult&) { called = true; });
  uv_run(&loop_, UV_RUN_NOWAIT);
  resolver_->close();
  resolver_ = nullptr;
  uv_timer_stop(&tick_);
  uv_run(&loop_, UV_RUN_DEFAULT);  // returns only once every handle the resolver owned is closed
  EXPECT_FALSE(called);
}

TEST_F(ResolverTest, CloseFromInsideACallbackIsSafe) {
  make();
  int calls = 0;
  for (int i = 0; i < 3; ++i)
    resolver_->resolve_host("a.test", [&](const ResolvedHost&) {
      ++calls;
      if (resolver_) {
        resolver_->close();
        resolver_ = nullptr;
      }
    });
  uv_timer_stop(&tick_);
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_EQ(calls, 1);
}

TEST(ResolverConfigTest, RejectsBadServersAtStartUp) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  for (const char* bad : {"dns.example", "127.0.0.1:99999", "[::1", "1.2.3.4:x"}) {
    ResolverConfig cfg;
    cfg.servers = {bad};
    EXPECT_THROW(Resolver::create(&loop, cfg, nullptr), std::runtime_error) << bad;
  }
  ResolverConfig zero;
  zero.servers = {"127.0.0.1:53"};
  zero.tries = 0;
  EXPECT_THROW(Resolver::create(&loop, zero, nullptr), std::runtime_error);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST_F(ResolverTest, SpecialUseNamesAreRefusedWithoutAQuery) {
  make();
  const double refused = counter("deliverd_targets_refused_total", {"reason"}, {"special_use_name"});
  const size_t queries = server_->query_count("mail.localhost") + server_->query_count("x.localhost") +
                         server_->query_count("printer.local") + server_->query_count("intranet");
  auto r = host("Mail.LOCALHOST");
  EXPECT_EQ(r.error, Code::RefusedByPolicy);
  ASSERT_EQ(r.refused.size(), 1u);
  EXPECT_EQ(r.refused[0].first, "mail.localhost");
  EXPECT_NE(r.refused[0].second.find("RFC 6761"), std::string::npos) << r.refused[0].second;
  auto outcome = resolve_failure_outcome(r);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->status, core::Status::Rejected);
  EXPECT_EQ(outcome->reason, core::Reason::SsrfRefused);
  EXPECT_NE(outcome->detail.find("RFC 6761"), std::string::npos) << outcome->detail;
  EXPECT_EQ(host("printer.local").error, Code::RefusedByPolicy);
  EXPECT_EQ(host("intranet").error, Code::RefusedByPolicy);  // a single label: the search list's to complete
  auto m = mx("x.localhost");
  EXPECT_EQ(m.error, Code::RefusedByPolicy);
  EXPECT_NE(m.detail.find("x.localhost is refused"), std::string::npos) << m.detail;
  EXPECT_EQ(counter("deliverd_targets_refused_total", {"reason"}, {"special_use_name"}), refused + 4);
  EXPECT_EQ(server_->query_count("mail.localhost") + server_->query_count("x.localhost") +
                server_->query_count("printer.local") + server_->query_count("intranet"),
            queries);
  EXPECT_EQ(host("nope.test").error, Code::Nxdomain);  // .test is not special here: the fixtures use it
}

}  // namespace
}  // namespace deliverd::dns
