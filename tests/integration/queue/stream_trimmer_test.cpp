// StreamTrimmer against a real redis-server: entries older than a stream's retention age go,
// newer ones stay, a stream without an age is left alone, and a round that hits the per-call
// limit goes on until everything old is gone.
#include "queue/stream_trimmer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/queue/test_loop.h"

namespace deliverd::queue {
namespace {

using deliverd::testing::RedisServer;
using deliverd::testing::TestLoop;

constexpr int64_t kNowMs = 10'000'000;

struct Fixture {
  RedisServer redis;
  TestLoop loop;
  RedisClient* client = nullptr;

  Fixture() {
    // Small stream nodes, so that MINID ~ (which removes whole nodes only) cuts close to the bound.
    redis.command({"CONFIG", "SET", "stream-node-max-entries", "10"});
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

  // n entries with ids at from_ms, from_ms + 1, …
  void add(const std::string& stream, int64_t from_ms, int n) {
    for (int i = 0; i < n; ++i)
      redis.command({"XADD", stream, std::to_string(from_ms + i) + "-0", "event", "e" + std::to_string(i)});
  }

  long long trim(StreamTrimmer& t) {
    long long removed = -2;
    t.trim_once([&](long long n) { removed = n; });
    EXPECT_TRUE(loop.run_until([&] { return removed != -2; }));
    return removed;
  }
};

TEST(StreamTrimmer, EntriesOlderThanTheRetentionGoAndNewerOnesStay) {
  Fixture f;
  f.add("deliverd:results", 1000, 100);            // far older than an hour before kNowMs
  f.add("deliverd:results", kNowMs - 60'000, 5);   // a minute old
  f.add("deliverd:dead", 1000, 30);                // no age limit for this stream
  StreamTrimmerConfig cfg;
  cfg.streams = {{"deliverd:results", 3'600'000}, {"deliverd:dead", 0}};
  StreamTrimmer t(f.loop.get(), *f.client, cfg, [] { return kNowMs; });
  EXPECT_EQ(f.trim(t), 100);
  auto left = f.redis.xrange("deliverd:results");
  ASSERT_EQ(left.size(), 5u);
  EXPECT_EQ(left.front().id, std::to_string(kNowMs - 60'000) + "-0");
  EXPECT_EQ(f.redis.xlen("deliverd:dead"), 30);
  // Nothing old is left: a second round removes nothing.
  EXPECT_EQ(f.trim(t), 0);
  EXPECT_EQ(f.redis.xlen("deliverd:results"), 5);
}

TEST(StreamTrimmer, ARoundThatHitsTheLimitGoesOnUntilTheOldEntriesAreGone) {
  Fixture f;
  f.add("deliverd:results", 1000, 200);
  f.add("deliverd:results", kNowMs, 3);
  StreamTrimmerConfig cfg;
  cfg.streams = {{"deliverd:results", 1'000'000}};
  cfg.limit = 20;  // two nodes per call: ten calls for the old entries
  cfg.again_ms = 1;
  StreamTrimmer t(f.loop.get(), *f.client, cfg, [] { return kNowMs; });
  EXPECT_EQ(f.trim(t), 200);
  EXPECT_EQ(f.redis.xlen("deliverd:results"), 3);
}

TEST(StreamTrimmer, TheIntervalIsAQuarterOfTheShortestAgeBetweenOneSecondAndAMinute) {
  Fixture f;
  auto interval = [&](std::vector<TrimmedStream> s) {
    StreamTrimmerConfig cfg;
    cfg.streams = std::move(s);
    return StreamTrimmer(f.loop.get(), *f.client, cfg, [] { return kNowMs; }).interval_ms();
  };
  EXPECT_EQ(interval({{"a", 0}}), 60'000u);
  EXPECT_EQ(interval({{"a", 7LL * 86'400'000}, {"b", 40'000}}), 10'000u);
  EXPECT_EQ(interval({{"a", 100}}), 1'000u);
}

}  // namespace
}  // namespace deliverd::queue
