// tlspolicy::MtaStsCache and PolicyFetcher against a real HTTPS policy server (test CA), dnsmasq
// for the mta-sts.<domain> addresses, dns::Resolver with the target policy, and a real Redis
// shared by two caches. The TXT lookup is the test's: it states which record each domain has.
#include "tlspolicy/mta_sts_cache.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <map>
#include <optional>

#include "dns/address_policy.h"
#include "dns/resolver.h"
#include "dns/resolver_lookup.h"
#include "queue/redis_client.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/mta_sts_server.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/fixtures/test_loop.h"

namespace deliverd {
namespace {

using tlspolicy::StsFailure;
using tlspolicy::StsMode;
using tlspolicy::StsSource;
using tlspolicy::TxtAnswer;

const std::string kEnforce = "version: STSv1\r\nmode: enforce\r\nmx: mx1.enforce.test\r\nmx: *.mx.enforce.test\r\nmax_age: 86400\r\n";
const std::string kTesting = "version: STSv1\nmode: testing\nmx: mx.testing.test\nmax_age: 3600\n";

// Domains served by the policy server under a certificate naming their mta-sts host.
const std::vector<std::string> kServed = {"enforce", "testing", "shared", "change", "redirect",
                                          "type",    "big",     "bad",    "many"};

// Answers the test's TXT records on a later loop turn, as a resolver would.
class Txt {
 public:
  explicit Txt(uv_loop_t* loop) : loop_(loop) {}
  void set(const std::string& domain, TxtAnswer a) { answers_["_mta-sts." + domain] = std::move(a); }
  void record(const std::string& domain, const std::string& id) {
    set(domain, {TxtAnswer::Status::Found, {"v=spf1 -all", "v=STSv1; id=" + id}, ""});
  }
  tlspolicy::TxtLookup lookup() {
    return [this](const std::string& name, std::function<void(TxtAnswer)> cb) {
      ++asked[name];
      auto it = answers_.find(name);
      TxtAnswer a = it == answers_.end() ? TxtAnswer{} : it->second;
      auto* t = new uv_timer_t;
      uv_timer_init(loop_, t);
      t->data = new std::function<void()>([cb = std::move(cb), a = std::move(a)] { cb(a); });
      uv_timer_start(
          t,
          [](uv_timer_t* h) {
            auto* fn = static_cast<std::function<void()>*>(h->data);
            (*fn)();
            delete fn;
            uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete reinterpret_cast<uv_timer_t*>(x); });
          },
          0, 0);
    };
  }
  std::map<std::string, int> asked;

 private:
  uv_loop_t* loop_;
  std::map<std::string, TxtAnswer> answers_;
};

class MtaStsCacheTest : public ::testing::Test {
 protected:
  MtaStsCacheTest() {
    std::vector<std::string> names;
    for (const auto& d : kServed) names.push_back("mta-sts." + d + ".test");
    server_ = std::make_unique<testing::MtaStsServer>(ca_, names);
    testing::DnsServer::Options dopts;
    for (const auto& d : kServed) dopts.records.push_back(testing::DnsServer::host_record("mta-sts." + d + ".test", server_->ip()));
    // A name the certificate does not carry, on the same server.
    dopts.records.push_back(testing::DnsServer::host_record("mta-sts.wrongname.test", server_->ip()));
    // A policy host on a private address: the target policy refuses it before any connection.
    dopts.records.push_back(testing::DnsServer::host_record("mta-sts.private.test", "10.1.2.3"));
    dns_ = std::make_unique<testing::DnsServer>(dopts);
    dns::ResolverConfig rc;
    rc.servers = {dns_->address()};
    policy_ = dns::AddressPolicy::create({server_->ip()}).value();
    resolver_ = dns::Resolver::create(loop_.get(), rc, &policy_);
    lookup_ = std::make_unique<dns::ResolverLookup>(resolver_);
    core::TlsClientOptions to;
    to.ca_file = ca_.ca_file();
    to.use_system_roots = false;
    fetcher_ = std::make_unique<tlspolicy::PolicyFetcher>(loop_.get(), lookup_.get(), core::TlsContext::client(to).value(),
                                                          tlspolicy::FetchOptions{});
    server_->serve("mta-sts.enforce.test", {200, "text/plain", "", kEnforce});
    server_->serve("mta-sts.wrongname.test", {200, "text/plain", "", kEnforce});
  }
  ~MtaStsCacheTest() override {
    caches_.clear();
    fetcher_.reset();
    for (auto* r : redis_) r->close();
    resolver_->close();
  }

  tlspolicy::MtaStsCache& cache(bool with_redis = true) {
    queue::RedisClient* redis = nullptr;
    if (with_redis) {
      queue::RedisConfig rc;
      rc.port = redis_server_.port();
      redis = queue::RedisClient::create(loop_.get(), rc);
      redis->connect([](bool, const std::string&) {});
      redis_.push_back(redis);
    }
    caches_.push_back(std::make_unique<tlspolicy::MtaStsCache>(loop_.get(), txt_.lookup(), fetcher_.get(), redis,
                                                                tlspolicy::StsCacheOptions{}));
    return *caches_.back();
  }

  tlspolicy::StsDecision lookup(tlspolicy::MtaStsCache& c, const std::string& domain) {
    std::optional<tlspolicy::StsDecision> out;
    c.lookup(domain, [&](const tlspolicy::StsDecision& d) { out = d; });
    EXPECT_TRUE(loop_.run_until([&] { return out.has_value(); }, 30000)) << "no answer for " << domain;
    return out.value_or(tlspolicy::StsDecision{});
  }

  testing::TestLoop loop_;
  testing::TestCa ca_;
  testing::RedisServer redis_server_;
  std::unique_ptr<testing::MtaStsServer> server_;
  std::unique_ptr<testing::DnsServer> dns_;
  dns::AddressPolicy policy_ = dns::AddressPolicy::create({}).value();
  dns::Resolver* resolver_ = nullptr;
  std::unique_ptr<dns::ResolverLookup> lookup_;
  std::unique_ptr<tlspolicy::PolicyFetcher> fetcher_;
  Txt txt_{loop_.get()};
  std::vector<queue::RedisClient*> redis_;
  std::vector<std::unique_ptr<tlspolicy::MtaStsCache>> caches_;
};

TEST_F(MtaStsCacheTest, EnforceAndTestingPoliciesAreFetchedParsedAndSharedForMaxAge) {
  server_->serve("mta-sts.testing.test", {200, "text/plain; charset=utf-8", "", kTesting});
  txt_.record("enforce.test", "e1");
  txt_.record("testing.test", "t1");
  auto& c = cache();
  auto e = lookup(c, "Enforce.Test");
  ASSERT_TRUE(e.policy) << (e.failure ? e.failure->text() : "no failure");
  EXPECT_EQ(e.domain, "enforce.test");
  EXPECT_EQ(e.source, StsSource::Fetched);
  EXPECT_EQ(e.id, "e1");
  EXPECT_EQ(e.policy->mode, StsMode::Enforce);
  EXPECT_EQ(e.policy->max_age_s, 86400);
  EXPECT_EQ(e.policy->mx, (std::vector<std::string>{"mx1.enforce.test", "*.mx.enforce.test"}));
  EXPECT_TRUE(tlspolicy::matches_mx(*e.policy, "a.mx.enforce.test"));
  EXPECT_FALSE(tlspolicy::matches_mx(*e.policy, "mx2.enforce.test"));
  auto t = lookup(c, "testing.test");
  ASSERT_TRUE(t.policy) << (t.failure ? t.failure->text() : "no failure");
  EXPECT_EQ(t.policy->mode, StsMode::Testing);
  EXPECT_EQ(t.policy->mx, (std::vector<std::string>{"mx.testing.test"}));

  // Stored for the fleet, with the TTL the policy asked for.
  ASSERT_TRUE(loop_.run_until([&] { return redis_server_.command({"EXISTS", "deliverd:mta-sts:testing.test"}) == "1"; }));
  std::string stored = redis_server_.command({"GET", "deliverd:mta-sts:enforce.test"});
  EXPECT_NE(stored.find("\"id\":\"e1\""), std::string::npos) << stored;
  EXPECT_NE(stored.find("\"policy\":{\"mode\":\"enforce\",\"max_age\":86400,\"mx\":[\"mx1.enforce.test\",\"*.mx.enforce.test\"]}"),
            std::string::npos)
      << stored;
  EXPECT_NE(stored.find("\"fetched_at\":"), std::string::npos) << stored;
  long long ttl = redis_server_.integer({"TTL", "deliverd:mta-sts:enforce.test"});
  EXPECT_LE(ttl, 86400);
  EXPECT_GT(ttl, 86400 - 600);
  ttl = redis_server_.integer({"TTL", "deliverd:mta-sts:testing.test"});
  EXPECT_LE(ttl, 3600);
  EXPECT_GT(ttl, 3600 - 600);

  // Asked again: the same id, so no second fetch.
  auto again = lookup(c, "enforce.test");
  EXPECT_EQ(again.source, StsSource::Cache);
  ASSERT_TRUE(again.policy);
  EXPECT_EQ(*again.policy, *e.policy);
  EXPECT_EQ(server_->requests("mta-sts.enforce.test"), 1);
  EXPECT_EQ(c.counters().fetched[0], 1u);  // enforce
  EXPECT_EQ(c.counters().fetched[1], 1u);  // testing
  EXPECT_EQ(c.counters().cached[0], 1u);
}

TEST_F(MtaStsCacheTest, ASecondDaemonOnTheSameRedisUsesTheSharedPolicyWithoutFetching) {
  server_->serve("mta-sts.shared.test", {200, "text/plain", "", kTesting});
  txt_.record("shared.test", "s1");
  auto& a = cache();
  auto first = lookup(a, "shared.test");
  ASSERT_TRUE(first.policy);
  ASSERT_TRUE(loop_.run_until([&] { return redis_server_.command({"EXISTS", "deliverd:mta-sts:shared.test"}) == "1"; }));
  EXPECT_EQ(server_->requests("mta-sts.shared.test"), 1);
  auto& b = cache();
  auto second = lookup(b, "shared.test");
  ASSERT_TRUE(second.policy);
  EXPECT_EQ(second.source, StsSource::Cache);
  EXPECT_EQ(second.id, "s1");
  EXPECT_EQ(*second.policy, *first.policy);
  EXPECT_EQ(server_->requests("mta-sts.shared.test"), 1);
  EXPECT_EQ(b.counters().shared, 1u);
  EXPECT_EQ(b.counters().fetched[1], 0u);
}

TEST_F(MtaStsCacheTest, ANewIdIsFetchedInTheBackgroundWhileTheOldPolicyApplies) {
  server_->serve("mta-sts.change.test", {200, "text/plain", "", kEnforce});
  txt_.record("change.test", "v1");
  auto& c = cache();
  auto v1 = lookup(c, "change.test");
  ASSERT_TRUE(v1.policy);
  EXPECT_EQ(v1.policy->mode, StsMode::Enforce);

  server_->serve("mta-sts.change.test", {200, "text/plain", "", kTesting});
  txt_.record("change.test", "v2");
  // Several lookups while the refresh runs: all get the old policy, one refresh is fetched.
  std::vector<tlspolicy::StsDecision> during;
  for (int i = 0; i < 5; ++i) {
    auto d = lookup(c, "change.test");
    if (c.counters().fetched[1] == 0) during.push_back(d);
  }
  ASSERT_FALSE(during.empty());
  for (const auto& d : during) {
    ASSERT_TRUE(d.policy);
    EXPECT_EQ(d.id, "v1");
    EXPECT_EQ(d.policy->mode, StsMode::Enforce);
    EXPECT_TRUE(d.refreshing);
  }
  ASSERT_TRUE(loop_.run_until([&] { return c.counters().fetched[1] == 1; }));
  EXPECT_EQ(c.counters().refreshes, 1u);
  auto v2 = lookup(c, "change.test");
  ASSERT_TRUE(v2.policy);
  EXPECT_EQ(v2.id, "v2");
  EXPECT_EQ(v2.source, StsSource::Cache);
  EXPECT_EQ(v2.policy->mode, StsMode::Testing);
  EXPECT_FALSE(v2.refreshing);
  EXPECT_EQ(server_->requests("mta-sts.change.test"), 2);
  ASSERT_TRUE(loop_.run_until([&] {
    return redis_server_.command({"GET", "deliverd:mta-sts:change.test"}).find("\"id\":\"v2\"") != std::string::npos;
  }));

  // The record vanishes (or is stripped by an attacker): the cached policy stays (RFC 8461 10.2).
  txt_.set("change.test", {TxtAnswer::Status::NoRecord, {}, ""});
  auto kept = lookup(c, "change.test");
  ASSERT_TRUE(kept.policy);
  EXPECT_EQ(kept.id, "v2");
  txt_.set("change.test", {TxtAnswer::Status::Failed, {}, "timeout"});
  EXPECT_TRUE(lookup(c, "change.test").policy);
  EXPECT_EQ(server_->requests("mta-sts.change.test"), 2);
}

TEST_F(MtaStsCacheTest, ARefreshThatFailsKeepsTheOldPolicy) {
  server_->serve("mta-sts.change.test", {200, "text/plain", "", kEnforce});
  txt_.record("change.test", "v1");
  auto& c = cache();
  ASSERT_TRUE(lookup(c, "change.test").policy);
  server_->serve("mta-sts.change.test", {500, "text/plain", "", "oops"});
  txt_.record("change.test", "v2");
  EXPECT_EQ(lookup(c, "change.test").id, "v1");
  ASSERT_TRUE(loop_.run_until([&] { return c.counters().failures[static_cast<size_t>(StsFailure::Status)] == 1; }));
  auto after = lookup(c, "change.test");
  ASSERT_TRUE(after.policy);
  EXPECT_EQ(after.id, "v1");
  EXPECT_EQ(after.policy->mode, StsMode::Enforce);
}

TEST_F(MtaStsCacheTest, ConcurrentLookupsShareOneFetch) {
  server_->serve("mta-sts.many.test", {200, "text/plain", "", kTesting});
  txt_.record("many.test", "m1");
  auto& c = cache();
  std::vector<tlspolicy::StsDecision> got;
  for (int i = 0; i < 20; ++i) c.lookup("many.test", [&](const tlspolicy::StsDecision& d) { got.push_back(d); });
  ASSERT_TRUE(loop_.run_until([&] { return got.size() == 20; }));
  for (const auto& d : got) {
    ASSERT_TRUE(d.policy);
    EXPECT_EQ(d.id, "m1");
  }
  EXPECT_EQ(server_->requests("mta-sts.many.test"), 1);
  EXPECT_EQ(txt_.asked["_mta-sts.many.test"], 1);
}

// Each way a fetch fails: no policy (delivery goes on as without MTA-STS), the reason named.
struct FailCase {
  std::string domain;
  StsFailure kind;
  std::string detail_part;
};

TEST_F(MtaStsCacheTest, AFailedFetchWithNothingCachedMeansNoPolicyAndNamesTheReason) {
  server_->serve("mta-sts.redirect.test",
                 {301, "text/plain", "https://mta-sts.enforce.test/.well-known/mta-sts.txt", kEnforce});
  server_->serve("mta-sts.type.test", {200, "text/html", "", kEnforce});
  std::string big = kEnforce;
  while (big.size() <= 70000) big += "mx: filler.enforce.test\n";
  server_->serve("mta-sts.big.test", {200, "text/plain", "", big});
  server_->serve("mta-sts.bad.test", {200, "text/plain", "", "version: STSv1\nmode: enforce\nmax_age: 99999999999\n"});
  std::vector<FailCase> cases = {
      {"redirect.test", StsFailure::Status, "HTTP 301 (redirects are not followed)"},
      {"type.test", StsFailure::ContentType, "content type 'text/html' is not text/plain"},
      {"big.test", StsFailure::TooLarge, "too_large"},
      {"bad.test", StsFailure::BadPolicy, "policy line 3: max_age '99999999999' is not 1-10 digits"},
      {"wrongname.test", StsFailure::Tls, "tls_failed"},
      {"private.test", StsFailure::RefusedByPolicy, "private"},
      {"nowhere.test", StsFailure::Resolve, "resolve_failed"},
  };
  auto& c = cache();
  for (const auto& fc : cases) {
    txt_.record(fc.domain, "x1");
    auto d = lookup(c, fc.domain);
    EXPECT_FALSE(d.policy) << fc.domain;
    EXPECT_EQ(d.source, StsSource::None) << fc.domain;
    ASSERT_TRUE(d.failure) << fc.domain;
    EXPECT_EQ(d.failure->kind, fc.kind) << fc.domain << ": " << d.failure->text();
    EXPECT_NE(d.failure->detail.find(fc.detail_part), std::string::npos) << fc.domain << ": " << d.failure->text();
    EXPECT_EQ(c.counters().failures[static_cast<size_t>(fc.kind)], 1u) << fc.domain;
    EXPECT_EQ(redis_server_.command({"EXISTS", "deliverd:mta-sts:" + fc.domain}), "0") << fc.domain;
  }
  // The redirect was not followed, and nothing was ever sent to the private address's host.
  EXPECT_EQ(server_->requests("mta-sts.redirect.test"), 1);
  EXPECT_EQ(server_->requests("mta-sts.enforce.test"), 0);
  EXPECT_EQ(server_->requests("mta-sts.private.test"), 0);
  EXPECT_EQ(server_->requests("mta-sts.wrongname.test"), 0);
  EXPECT_EQ(c.counters().no_policy, cases.size());
}

TEST_F(MtaStsCacheTest, HostileTxtRecordsAreReportedAndFetchNothing) {
  auto& c = cache();
  txt_.set("enforce.test", {TxtAnswer::Status::Found, {"v=STSv1; id=1", "v=STSv1; id=2"}, ""});
  auto two = lookup(c, "enforce.test");
  EXPECT_FALSE(two.policy);
  ASSERT_TRUE(two.failure);
  EXPECT_EQ(two.failure->text(), "invalid_record: the domain publishes 2 _mta-sts records; exactly one is allowed");
  txt_.set("enforce.test", {TxtAnswer::Status::Found, {"v=STSv1; id=" + std::string(200, 'a') + "\r\n"}, ""});
  auto longid = lookup(c, "enforce.test");
  EXPECT_FALSE(longid.policy);
  ASSERT_TRUE(longid.failure);
  EXPECT_EQ(longid.failure->kind, StsFailure::InvalidRecord);
  txt_.set("enforce.test", {TxtAnswer::Status::Found, {"v=spf1 -all"}, ""});
  auto none = lookup(c, "enforce.test");
  EXPECT_FALSE(none.policy);
  EXPECT_FALSE(none.failure);
  EXPECT_EQ(server_->requests("mta-sts.enforce.test"), 0);
  EXPECT_EQ(c.counters().failures[static_cast<size_t>(StsFailure::InvalidRecord)], 2u);
  // Not a domain at all: answered at once, named.
  std::optional<tlspolicy::StsDecision> bad;
  c.lookup("bad domain..test", [&](const tlspolicy::StsDecision& d) { bad = d; });
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->policy);
  EXPECT_TRUE(bad->failure);
}

TEST_F(MtaStsCacheTest, AGarbledSharedEntryIsIgnoredAndFetchedAfresh) {
  txt_.record("enforce.test", "e1");
  redis_server_.command({"SET", "deliverd:mta-sts:enforce.test", "{\"id\":\"e1\",\"fetched_at\":1,\"policy\":", "EX", "100"});
  auto& c = cache();
  auto d = lookup(c, "enforce.test");
  ASSERT_TRUE(d.policy);
  EXPECT_EQ(d.source, StsSource::Fetched);
  EXPECT_EQ(server_->requests("mta-sts.enforce.test"), 1);
}

// A reload's trust store reaches the fetcher: a policy server whose CA was not trusted fails,
// and once the CA is (set_tls, as a reload of [smtp] ca_file does) the policy is fetched.
TEST_F(MtaStsCacheTest, TheTrustStoreOfAReloadIsUsedByTheNextFetch) {
  core::TlsClientOptions none;
  none.use_system_roots = false;  // trusts nothing
  fetcher_->set_tls(core::TlsContext::client(none).value());
  txt_.record("enforce.test", "r1");
  auto& c = cache(false);
  auto before = lookup(c, "enforce.test");
  EXPECT_FALSE(before.policy);
  ASSERT_TRUE(before.failure);
  EXPECT_EQ(before.failure->kind, StsFailure::Tls) << before.failure->text();

  core::TlsClientOptions trusted;
  trusted.ca_file = ca_.ca_file();
  trusted.use_system_roots = false;
  fetcher_->set_tls(core::TlsContext::client(trusted).value());
  txt_.record("enforce.test", "r2");  // a new id: fetched again
  auto after = lookup(c, "enforce.test");
  ASSERT_TRUE(after.policy) << (after.failure ? after.failure->text() : "");
  EXPECT_EQ(after.policy->mode, StsMode::Enforce);
  EXPECT_EQ(server_->requests("mta-sts.enforce.test"), 1) << "the untrusting handshake sent no request";
}

TEST(MtaStsEntry, TheStoredFormReadsBackAndRefusesWhatIsNotAPolicy) {
  tlspolicy::MtaStsCache::Entry e{"abc1", {StsMode::Testing, 600, {"mx.a.test", "*.b.test"}}, 1234};
  auto back = tlspolicy::MtaStsCache::from_json(tlspolicy::MtaStsCache::to_json(e));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->id, "abc1");
  EXPECT_EQ(back->fetched_at_ms, 1234);
  EXPECT_EQ(back->policy, e.policy);
  using C = tlspolicy::MtaStsCache;
  EXPECT_FALSE(C::from_json("{\"id\":\"a;b\",\"fetched_at\":1,\"policy\":{\"mode\":\"testing\",\"max_age\":1,\"mx\":[\"a.b\"]}}"));
  EXPECT_FALSE(C::from_json("{\"id\":\"a\",\"fetched_at\":1,\"policy\":{\"mode\":\"bogus\",\"max_age\":1,\"mx\":[\"a.b\"]}}"));
  EXPECT_FALSE(C::from_json("{\"id\":\"a\",\"fetched_at\":1,\"policy\":{\"mode\":\"enforce\",\"max_age\":1,\"mx\":[\"a.b\\nmode: none\"]}}"));
  EXPECT_FALSE(C::from_json("{\"id\":\"a\",\"fetched_at\":1,\"policy\":{\"mode\":\"enforce\",\"max_age\":1,\"mx\":[]}}"));
  EXPECT_FALSE(C::from_json("not json"));
}

}  // namespace
}  // namespace deliverd
