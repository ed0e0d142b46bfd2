// AccountEraser against a real redis-server: the erased account's retry-set members, results
// events and dead letters go, in chunks smaller than what there is; another account's stay, even
// where its texts mention the erased account; the marker is set with its TTL.
#include "queue/account_eraser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "queue/scheduler.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/queue/test_loop.h"

namespace deliverd::queue {
namespace {

using deliverd::testing::RedisServer;
using deliverd::testing::TestLoop;

std::string job(const std::string& account, int n) {
  return R"({"v":1,"id":"j)" + std::to_string(n) + R"(","account":")" + account +
         R"(","mailbox":"m1","to":{"email":"r)" + std::to_string(n) + R"(@x.example"},"subject":"s","text":"t"})";
}

struct Fixture {
  RedisServer redis;
  TestLoop loop;
  RedisClient* client = nullptr;

  Fixture() {
    RedisConfig cfg;
    cfg.port = redis.port();
    client = RedisClient::create(loop.get(), cfg);
    bool ready = false;
    client->connect([&](bool ok, const std::string& e) {
      EXPECT_TRUE(ok) << e;
      ready = true;
    });
    EXPECT_TRUE(loop.run_until([&] { return ready; }));
  }
  ~Fixture() { client->close(); }

  // For each account (as JSON writes it): n retry members, n results events, n dead letters.
  void fill(const std::string& account, int n) {
    std::string id = account;  // the account as the daemon parsed it from the job
    for (size_t at; (at = id.find("\\\"")) != std::string::npos;) id.erase(at, 1);
    for (int i = 0; i < n; ++i) {
      RetryItem item{job(account, i), 2, 1000, "rcpt_deferred", {}, id};
      redis.command({"ZADD", "deliverd:retry", std::to_string(5000 + i), encode_retry_item(item)});
      redis.command({"XADD", "deliverd:results", "*", "event",
                     R"({"v":1,"job_id":"j)" + std::to_string(i) + R"(","account":")" + account +
                         R"(","to":"r@x.example","status":"deferred"})"});
      redis.command({"XADD", "deliverd:dead", "*", "job", job(account, i), "reason", "subject: too long"});
    }
  }

  core::Result<RedisEraseCounts, std::string> erase(AccountEraser& e, const std::string& account) {
    std::optional<core::Result<RedisEraseCounts, std::string>> out;
    e.erase(account, [&](core::Result<RedisEraseCounts, std::string> r) { out = std::move(r); });
    EXPECT_TRUE(loop.run_until([&] { return out.has_value(); }));
    return out ? *out : core::Result<RedisEraseCounts, std::string>(core::Err(std::string("no answer")));
  }

  bool erased(AccountEraser& e, const std::string& account) {
    std::optional<bool> out;
    e.is_erased(account, [&](core::Result<bool, std::string> r) { out = r ? *r : false; });
    EXPECT_TRUE(loop.run_until([&] { return out.has_value(); }));
    return out.value_or(false);
  }

  // How many members / entries name the account.
  int count(const std::vector<std::string>& texts, const std::string& account) {
    int n = 0;
    for (const auto& t : texts) n += t.find("\\\"account\\\":\\\"" + account + "\\\"") != std::string::npos ||
                                     t.find("\"account\":\"" + account + "\"") != std::string::npos;
    return n;
  }
  std::vector<std::string> stream_texts(const std::string& key) {
    std::vector<std::string> out;
    for (const auto& e : redis.xrange(key))
      for (const auto& [f, v] : e.fields) out.push_back(v);
    return out;
  }
  std::vector<std::string> retry_members() {
    std::string all = redis.command({"ZRANGE", "deliverd:retry", "0", "-1"});
    return {all};
  }
};

TEST(AccountEraser, RemovesTheAccountsMembersAndEntriesInChunksAndKeepsEveryoneElses) {
  Fixture f;
  f.fill("acct_a", 23);
  f.fill("acct_b", 17);
  // acct_b's texts that mention acct_a elsewhere than as their account stay acct_b's.
  f.redis.command({"XADD", "deliverd:results", "*", "event",
                   R"({"account":"acct_b","detail":"\"account\":\"acct_a\""})"});
  // A dead letter that is not JSON (cut short) is known by its account field as written.
  f.redis.command({"XADD", "deliverd:dead", "*", "job", R"({"v":1,"account": "acct_a","to":{"email":"cut@x.exa)",
                   "reason", "too large"});
  f.redis.command({"XADD", "deliverd:dead", "*", "job", "not json at all", "reason", "job: not JSON"});
  AccountEraserConfig cfg;
  cfg.chunk = 5;  // far less than there is: many script runs per place
  cfg.marker_ttl_ms = 3'600'000;
  AccountEraser e(*f.client, cfg);
  EXPECT_FALSE(f.erased(e, "acct_a"));

  auto r = f.erase(e, "acct_a");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->retry_members, 23);
  EXPECT_EQ(r->results_entries, 23);
  EXPECT_EQ(r->dead_letters, 24);

  EXPECT_EQ(f.redis.integer({"ZCARD", "deliverd:retry"}), 17);
  EXPECT_EQ(f.count(f.retry_members(), "acct_a"), 0);
  EXPECT_EQ(f.redis.xlen("deliverd:results"), 18);
  EXPECT_EQ(f.count(f.stream_texts("deliverd:results"), "acct_b"), 18);
  EXPECT_EQ(f.redis.xlen("deliverd:dead"), 18);
  auto dead = f.stream_texts("deliverd:dead");
  EXPECT_EQ(f.count(dead, "acct_a"), 0);
  EXPECT_NE(std::find(dead.begin(), dead.end(), "not json at all"), dead.end());

  EXPECT_TRUE(f.erased(e, "acct_a"));
  EXPECT_FALSE(f.erased(e, "acct_b"));
  const long long ttl = f.redis.integer({"PTTL", "deliverd:erased:acct_a"});
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 3'600'000);

  // A second erasure finds nothing more.
  auto again = f.erase(e, "acct_a");
  ASSERT_TRUE(again) << again.error();
  EXPECT_EQ(again->retry_members + again->results_entries + again->dead_letters, 0);
}

TEST(AccountEraser, AnAccountIdWithQuotesIsMatchedExactly) {
  Fixture f;
  f.fill(R"(a\"b)", 3);  // the account a"b, as JSON writes it
  f.fill("a", 2);
  AccountEraser e(*f.client, AccountEraserConfig{});
  auto r = f.erase(e, "a\"b");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->retry_members, 3);
  EXPECT_EQ(r->results_entries, 3);
  EXPECT_EQ(r->dead_letters, 3);
  EXPECT_EQ(f.redis.integer({"ZCARD", "deliverd:retry"}), 2);
  EXPECT_EQ(f.redis.xlen("deliverd:results"), 2);
}

TEST(AccountEraser, EmptyPlacesAreNoError) {
  Fixture f;
  AccountEraser e(*f.client, AccountEraserConfig{});
  auto r = f.erase(e, "acct_a");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->retry_members + r->results_entries + r->dead_letters, 0);
  EXPECT_TRUE(f.erased(e, "acct_a"));
}

}  // namespace
}  // namespace deliverd::queue
