// oauth::TokenManager against a real HTTPS token endpoint (5-second tokens) and a real Redis:
// tokens are reused until their margin, one refresh serves every caller, two daemons sharing
// Redis refresh once per expiry, a rotated refresh token is durable before its access token is
// used, and each failure has its name.
#include "oauth/token_manager.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <algorithm>
#include <map>
#include <set>
#include <optional>

#include "queue/redis_client.h"
#include "store/secret_box.h"
#include "tests/integration/fixtures/fixed_lookup.h"
#include "tests/integration/fixtures/oauth_endpoint.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/fixtures/test_ca.h"

namespace deliverd {
namespace {

using oauth::FailureKind;
using TokenResult = core::Result<oauth::AccessToken, oauth::TokenFailure>;

// A refresh-token store in memory that logs what was written, in order.
class MemoryStore final : public oauth::RefreshTokenStore {
 public:
  std::map<std::string, oauth::MailboxGrant> rows;
  std::vector<std::string> journal;
  bool fail_saves = false;
  void save_pending(const std::string& m, const std::string& t, std::function<void(bool)> cb) override {
    journal.push_back("save_pending " + t);
    if (fail_saves) return cb(false);
    rows[m].pending_refresh_token = t;
    cb(true);
  }
  void promote_pending(const std::string& m, std::function<void(bool)> cb) override {
    auto& r = rows[m];
    journal.push_back("promote " + r.pending_refresh_token);
    if (!r.pending_refresh_token.empty()) r.refresh_token = r.pending_refresh_token;
    r.pending_refresh_token.clear();
    cb(true);
  }
  void drop_pending(const std::string& m, std::function<void(bool)> cb) override {
    journal.push_back("drop " + rows[m].pending_refresh_token);
    rows[m].pending_refresh_token.clear();
    cb(true);
  }
  void load(const std::string& m, std::function<void(bool, oauth::MailboxGrant)> cb) override {
    journal.push_back("load");
    cb(rows.count(m) > 0, rows[m]);
  }
  void record(const std::string&, const oauth::RefreshRecord& r) override { records.push_back(r.result); }
  std::vector<std::string> records;
};

class TokenManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { uv_loop_init(&loop_); }
  void TearDown() override {
    managers_.clear();
    for (auto* c : clients_) c->close();
    for (auto* r : redis_) r->close();
    uv_run(&loop_, UV_RUN_NOWAIT);
    uv_walk(&loop_, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); }, nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  void start_endpoint(testing::OAuthEndpoint::Options o = {}) {
    endpoint_ = std::make_unique<testing::OAuthEndpoint>(ca_, o);
    lookup_ = std::make_unique<testing::FixedLookup>(&loop_, endpoint_->ip());
    store_.rows["mbx_1"] = grant();
  }
  oauth::MailboxGrant grant() { return {"mbx_1", "google", endpoint_->options().refresh_token, ""}; }

  // One "daemon": its own HTTPS client and Redis connection, sharing the store and the key.
  oauth::TokenManager& manager(bool with_redis, int total_timeout_ms = 10000) {
    core::TlsClientOptions to;
    to.ca_file = ca_.ca_file();
    to.use_system_roots = false;
    core::HttpsClientOptions ho;
    ho.tls = core::TlsContext::client(to).value();
    ho.total_timeout_ms = total_timeout_ms;
    clients_.push_back(core::HttpsClient::create(&loop_, lookup_.get(), ho));
    queue::RedisClient* redis = nullptr;
    if (with_redis) {
      if (!redis_server_) redis_server_ = std::make_unique<testing::RedisServer>();
      queue::RedisConfig rc;
      rc.port = redis_server_->port();
      redis = queue::RedisClient::create(&loop_, rc);
      redis->connect([](bool, const std::string&) {});
      redis_.push_back(redis);
    }
    oauth::TokenManagerOptions mo;
    mo.owner = "daemon-" + std::to_string(managers_.size());
    mo.failure_hold_ms = failure_hold_ms_;
    mo.seal = [this](std::string_view p, std::string_view ad) { return box_.seal(p, ad); };
    mo.open = [this](std::string_view s, std::string_view ad) { return box_.open(s, ad); };
    auto m = std::make_unique<oauth::TokenManager>(&loop_, clients_.back(), redis, &store_, mo);
    const auto& eo = endpoint_->options();
    m->set_providers({{"google", endpoint_->url(), eo.client_id, eo.client_secret, "https://mail.google.com/"}});
    managers_.push_back(std::move(m));
    return *managers_.back();
  }

  TokenResult get(oauth::TokenManager& m, const oauth::MailboxGrant& g) {
    std::optional<TokenResult> out;
    m.get(g, [&](TokenResult r) { out.emplace(std::move(r)); });
    run_until([&] { return out.has_value(); }, 60000);
    if (!out) return core::Err(oauth::TokenFailure{FailureKind::Unavailable, "the test saw no answer"});
    return std::move(*out);
  }
  bool run_until(const std::function<bool()>& done, long long ms) {
    long long until = testing::now_ms() + ms;
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 20, 20);
    while (!done() && testing::now_ms() < until) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
    return done();
  }

  uv_loop_t loop_{};
  testing::TestCa ca_;
  std::unique_ptr<testing::OAuthEndpoint> endpoint_;
  std::unique_ptr<testing::FixedLookup> lookup_;
  std::unique_ptr<testing::RedisServer> redis_server_;
  store::SecretBox box_ = store::SecretBox::from_key({1, 2, 3});
  MemoryStore store_;
  int failure_hold_ms_ = 0;  // most tests look at each failure afresh
  std::vector<core::HttpsClient*> clients_;
  std::vector<queue::RedisClient*> redis_;
  std::vector<std::unique_ptr<oauth::TokenManager>> managers_;
};

TEST(RefreshMargin, ScalesWithTheLifetime) {
  EXPECT_EQ(oauth::refresh_margin_ms(5000), 1000);        // a 5-second test token: 1 s early
  EXPECT_EQ(oauth::refresh_margin_ms(60000), 6000);
  EXPECT_EQ(oauth::refresh_margin_ms(3600000), 300000);   // an hour-long token: 5 min early
  EXPECT_EQ(oauth::refresh_margin_ms(0), 1000);
}

TEST_F(TokenManagerTest, ATokenIsReusedUntilItsMarginThenRefreshed) {
  start_endpoint();
  auto& m = manager(false);
  auto first = get(m, grant());
  ASSERT_TRUE(first.ok()) << first.error().detail;
  EXPECT_EQ(first->token.rfind("at-", 0), 0u);
  EXPECT_NEAR(static_cast<double>(first->expires_ms - first->issued_ms), 5000, 10);
  auto again = get(m, grant());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->token, first->token);
  EXPECT_EQ(endpoint_->grants(), 1);
  // Past lifetime minus margin (4 s of 5) the next use refreshes.
  ASSERT_TRUE(run_until([&] { return m.expiring_within(1000) == 1; }, 10000));
  auto later = get(m, grant());
  ASSERT_TRUE(later.ok());
  EXPECT_NE(later->token, first->token);
  EXPECT_EQ(endpoint_->grants(), 2);
  EXPECT_EQ(store_.records, (std::vector<std::string>{"ok", "ok"}));
}

TEST_F(TokenManagerTest, CallersDuringARefreshWaitForIt) {
  start_endpoint();
  auto& m = manager(false);
  std::vector<TokenResult> results;
  for (int i = 0; i < 50; ++i) m.get(grant(), [&](TokenResult r) { results.push_back(std::move(r)); });
  ASSERT_TRUE(run_until([&] { return results.size() == 50; }, 30000));
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->token, results[0]->token);
  }
  EXPECT_EQ(endpoint_->grants(), 1);
}

TEST_F(TokenManagerTest, TwoDaemonsSharingRedisRefreshOncePerExpiry) {
  start_endpoint();
  auto& a = manager(true);
  auto& b = manager(true);
  // Both ask every 50 ms for about three token lifetimes.
  std::set<std::string> seen_a, seen_b;
  int failures = 0;
  long long until = testing::now_ms() + 12000;
  while (testing::now_ms() < until) {
    int done = 0;
    a.get(grant(), [&](TokenResult r) { r.ok() ? (void)seen_a.insert(r->token) : (void)++failures; ++done; });
    b.get(grant(), [&](TokenResult r) { r.ok() ? (void)seen_b.insert(r->token) : (void)++failures; ++done; });
    run_until([&] { return done == 2; }, 30000);
    long long pause = testing::now_ms() + 50;
    run_until([&] { return testing::now_ms() >= pause; }, 100);
  }
  EXPECT_EQ(failures, 0);
  // 12 s of 5-second tokens refreshed 1 s early: one refresh per 4 s, whoever does it.
  EXPECT_GE(endpoint_->grants(), 3);
  EXPECT_LE(endpoint_->grants(), 4);
  EXPECT_EQ(a.refreshes() + b.refreshes(), static_cast<uint64_t>(endpoint_->grants()));
  EXPECT_EQ(seen_a, seen_b);  // the same tokens, shared through Redis
  std::printf("two daemons, 12 s: %d refreshes at the endpoint (a %llu, b %llu), %zu tokens seen\n",
              endpoint_->grants(), static_cast<unsigned long long>(a.refreshes()),
              static_cast<unsigned long long>(b.refreshes()), seen_a.size());
}

TEST_F(TokenManagerTest, ARotatedRefreshTokenIsSavedBeforeItsAccessTokenIsUsed) {
  testing::OAuthEndpoint::Options o;
  o.rotate = true;
  start_endpoint(o);
  auto& m = manager(false);
  std::vector<std::string> journal_at_answer;
  std::optional<TokenResult> out;
  m.get(grant(), [&](TokenResult r) {
    journal_at_answer = store_.journal;
    out.emplace(std::move(r));
  });
  ASSERT_TRUE(run_until([&] { return out.has_value(); }, 30000));
  ASSERT_TRUE(out->ok()) << out->error().detail;
  ASSERT_EQ(journal_at_answer.size(), 1u);
  EXPECT_EQ(journal_at_answer[0].rfind("save_pending rt-", 0), 0u);
  std::string rotated = journal_at_answer[0].substr(13);
  EXPECT_EQ(store_.rows["mbx_1"].refresh_token, rotated);  // promoted once handed out
  EXPECT_NE(endpoint_->refresh_log().find("rt-initial -> " + rotated), std::string::npos);
}

TEST_F(TokenManagerTest, ATokenThatCannotBeSavedIsNotUsed) {
  testing::OAuthEndpoint::Options o;
  o.rotate = true;
  start_endpoint(o);
  auto& m = manager(false);
  store_.fail_saves = true;
  auto r = get(m, grant());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, FailureKind::StoreFailed);
  // The old refresh token still works (its successor was never used).
  store_.fail_saves = false;
  auto again = get(m, grant());
  ASSERT_TRUE(again.ok()) << again.error().detail;
}

TEST_F(TokenManagerTest, APendingTokenThatIsRefusedFallsBackToTheCurrentOne) {
  start_endpoint();
  auto& m = manager(false);
  auto g = grant();
  g.pending_refresh_token = "rt-never-issued";
  store_.rows["mbx_1"] = g;
  auto r = get(m, g);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(store_.journal.front(), "drop rt-never-issued");
  EXPECT_EQ(endpoint_->refused(), 1);
  EXPECT_EQ(endpoint_->grants(), 1);
}

TEST_F(TokenManagerTest, AnotherDaemonsRotationIsPickedUpInsteadOfDeclaringRevoked) {
  start_endpoint();
  auto& m = manager(false);
  auto stale = grant();
  stale.refresh_token = "rt-retired";  // what this daemon read before another rotated it
  auto r = get(m, stale);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_NE(std::find(store_.journal.begin(), store_.journal.end(), "load"), store_.journal.end());
}

TEST_F(TokenManagerTest, InvalidGrantIsRevoked) {
  start_endpoint();
  auto& m = manager(false);
  endpoint_->set_mode("invalid_grant");
  auto r = get(m, grant());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, FailureKind::Revoked);
  EXPECT_TRUE(oauth::is_permanent(r.error().kind));
  EXPECT_EQ(r.error().detail, "invalid_grant: Token has been expired or revoked.");
  EXPECT_EQ(oauth::to_string(r.error().kind), "oauth_revoked");
  EXPECT_EQ(store_.records.back(), "oauth_revoked");
}

TEST_F(TokenManagerTest, AnEndpointThatFailsOrSaysNothingIsUnavailable) {
  start_endpoint();
  auto& m = manager(false, 1500);
  endpoint_->set_mode("503");
  auto busy = get(m, grant());
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().kind, FailureKind::Unavailable);
  EXPECT_EQ(busy.error().detail.rfind("http_503", 0), 0u) << busy.error().detail;
  EXPECT_FALSE(oauth::is_permanent(busy.error().kind));
  endpoint_->set_mode("silent");
  auto silent = get(m, grant());
  ASSERT_FALSE(silent.ok());
  EXPECT_EQ(silent.error().kind, FailureKind::Unavailable);
  EXPECT_EQ(silent.error().detail.rfind("timeout in response", 0), 0u) << silent.error().detail;
  endpoint_->set_mode("ok");
  auto back = get(m, grant());
  EXPECT_TRUE(back.ok());
}

TEST_F(TokenManagerTest, AFailureIsGivenAgainForAWhileWithoutAskingTheEndpoint) {
  failure_hold_ms_ = 1500;
  start_endpoint();
  auto& m = manager(false);
  endpoint_->set_mode("503");
  auto first = get(m, grant());
  ASSERT_FALSE(first.ok());
  auto again = get(m, grant());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, FailureKind::Unavailable);
  EXPECT_EQ(again.error().detail, first.error().detail);
  EXPECT_EQ(endpoint_->requests(), 1);  // the second job did not become a request
  endpoint_->set_mode("ok");
  run_until([] { return false; }, 1600);
  auto back = get(m, grant());
  ASSERT_TRUE(back.ok()) << back.error().detail;
  EXPECT_EQ(endpoint_->requests(), 2);
}

TEST_F(TokenManagerTest, ARevokedGrantIsRememberedUntilTheMailboxChanges) {
  failure_hold_ms_ = 1;  // holds of other failures end at once; a revoked grant's does not
  start_endpoint();
  auto& m = manager(false);
  endpoint_->set_mode("invalid_grant");
  ASSERT_FALSE(get(m, grant()).ok());
  int asked = endpoint_->requests();
  run_until([] { return false; }, 50);
  auto again = get(m, grant());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, FailureKind::Revoked);
  EXPECT_EQ(endpoint_->requests(), asked);  // nothing loops on a dead grant
  endpoint_->set_mode("ok");
  m.forget("mbx_1");  // the user connected the mailbox again
  auto back = get(m, grant());
  EXPECT_TRUE(back.ok()) << back.error().detail;
}

TEST_F(TokenManagerTest, WithoutARefreshTokenFromTheCallerTheStoredOneIsReadUnderTheLease) {
  testing::OAuthEndpoint::Options rotating;
  rotating.rotate = true;
  start_endpoint(rotating);
  auto& m = manager(true);
  auto g = grant();
  g.refresh_token.clear();  // what the daemon passes: it keeps no refresh token in memory
  auto r = get(m, g);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  ASSERT_FALSE(store_.journal.empty());
  EXPECT_EQ(store_.journal.front(), "load");
  // The rotation was saved and promoted; the next refresh (another expiry) reads the new token.
  std::string rotated = store_.rows["mbx_1"].refresh_token;
  EXPECT_NE(rotated, endpoint_->options().refresh_token);
  m.forget("mbx_1");
  auto again = get(m, g);
  ASSERT_TRUE(again.ok()) << again.error().detail;
  EXPECT_EQ(endpoint_->refused(), 0);  // it used the rotated token, not the retired one
}

TEST_F(TokenManagerTest, AMailboxWithAnUnknownProviderIsNamed) {
  start_endpoint();
  auto& m = manager(false);
  auto g = grant();
  g.provider = "yahoo";
  auto r = get(m, g);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, FailureKind::NoProvider);
  EXPECT_EQ(endpoint_->requests(), 0);
}

}  // namespace
}  // namespace deliverd
