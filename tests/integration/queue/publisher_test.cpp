// Publisher against a real redis-server: events and dead letters land in their streams, the
// job entry is acked, and a failed XADD leaves the entry pending.
#include "queue/publisher.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "tests/integration/queue/pending_entry.h"

namespace deliverd::queue {
namespace {

using Fixture = deliverd::testing::PendingEntry;

TEST(Publisher, PublishesTheEventThenAcks) {
  Fixture f;
  ASSERT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 1);
  Publisher p(*f.client, PublisherConfig{});
  const std::string event = R"({"v":1,"job_id":"j1","status":"delivered"})";
  EXPECT_TRUE(f.run([&](auto cb) { p.publish_and_ack(f.entry, event, cb); }));
  auto results = f.redis.xrange("deliverd:results");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].fields["event"], event);
  EXPECT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 0);
}

TEST(Publisher, DeadLettersWithTheReasonThenAcks) {
  Fixture f;
  Publisher p(*f.client, PublisherConfig{});
  EXPECT_TRUE(f.run([&](auto cb) { p.dead_letter_and_ack(f.entry, "{not json", "job: not valid JSON", cb); }));
  auto dead = f.redis.xrange("deliverd:dead");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].fields["job"], "{not json");
  EXPECT_EQ(dead[0].fields["reason"], "job: not valid JSON");
  EXPECT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 0);
  EXPECT_EQ(f.redis.xlen("deliverd:results"), 0);
}

TEST(Publisher, FailedPublishLeavesTheEntryPending) {
  Fixture f;
  f.redis.command({"SET", "deliverd:results", "not a stream"});
  Publisher p(*f.client, PublisherConfig{});
  EXPECT_FALSE(f.run([&](auto cb) { p.publish_and_ack(f.entry, "{}", cb); }));
  EXPECT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 1) << "never acked without its event";
  f.redis.command({"DEL", "deliverd:results"});
  EXPECT_TRUE(f.run([&](auto cb) { p.publish_and_ack(f.entry, "{}", cb); }));
  EXPECT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 0);
}

TEST(Publisher, TrimsTheResultsStream) {
  Fixture f;
  PublisherConfig cfg;
  cfg.results_maxlen = 10;
  Publisher p(*f.client, cfg);
  // 2000 entries pending, each published once (a second publish of one entry adds nothing).
  std::vector<std::string> jobs(2000, R"({"v":1})");
  auto ids = f.redis.xadd_jobs("deliverd:jobs", jobs);
  f.redis.command({"XREADGROUP", "GROUP", "deliverd", "c", "COUNT", "5000", "STREAMS", "deliverd:jobs", ">"});
  int done = 0;
  for (const auto& id : ids) p.publish_and_ack(id, "{}", [&](bool) { ++done; });
  ASSERT_TRUE(f.loop.run_until([&] { return done == 2000; }));
  // MAXLEN ~ trims whole macro nodes (100 entries by default), so "about" 10.
  EXPECT_LT(f.redis.xlen("deliverd:results"), 200);
}

TEST(Publisher, AFinishedEntryLeavesTheJobStream) {
  Fixture f;
  Publisher p(*f.client, PublisherConfig{});
  ASSERT_EQ(f.redis.xlen("deliverd:jobs"), 1);
  EXPECT_TRUE(f.run([&](auto cb) { p.publish_and_ack(f.entry, "{}", cb); }));
  EXPECT_EQ(f.redis.xlen("deliverd:jobs"), 0) << "acked and deleted in the same script";
  // The same for a dead letter and for the ack of a duplicate.
  auto more = f.redis.xadd_jobs("deliverd:jobs", {"{}", "{}"});
  f.redis.command({"XREADGROUP", "GROUP", "deliverd", "c", "COUNT", "5", "STREAMS", "deliverd:jobs", ">"});
  EXPECT_TRUE(f.run([&](auto cb) { p.dead_letter_and_ack(more[0], "{}", "job: bad", cb); }));
  EXPECT_TRUE(f.run([&](auto cb) { p.ack(more[1], cb); }));
  EXPECT_EQ(f.redis.xlen("deliverd:jobs"), 0);
  EXPECT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 0);
}

TEST(Publisher, ARunRepeatedAfterALostReplyPublishesOneEvent) {
  Fixture f;
  Publisher p(*f.client, PublisherConfig{});
  // What Delivery does when the reply to a publish never came: the same call again.
  EXPECT_TRUE(f.run([&](auto cb) { p.publish_delivered_and_ack(f.entry, "acct_1", "j1", 1700000000000, R"({"status":"delivered"})", cb); }));
  EXPECT_TRUE(f.run([&](auto cb) { p.publish_delivered_and_ack(f.entry, "acct_1", "j1", 1700000000000, R"({"status":"delivered"})", cb); }));
  EXPECT_TRUE(f.run([&](auto cb) { p.publish_and_ack(f.entry, R"({"status":"failed"})", cb); }));
  auto results = f.redis.xrange("deliverd:results");
  ASSERT_EQ(results.size(), 1u) << "one final event, whatever ran again";
  EXPECT_EQ(results[0].fields["event"], R"({"status":"delivered"})");
  EXPECT_EQ(f.redis.command({"GET", "deliverd:done:6:acct_1:j1"}), "1700000000000");
}

TEST(Publisher, AnEntryRedisForgotWasReadStillGetsItsEvent) {
  Fixture f;
  // What a restart from an older snapshot, or a failover to a replica that lagged, leaves: the
  // entry is in the stream but no longer pending. Its outcome is real and must be recorded.
  f.redis.command({"XACK", "deliverd:jobs", "deliverd", f.entry});
  ASSERT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 0);
  Publisher p(*f.client, PublisherConfig{});
  EXPECT_TRUE(f.run([&](auto cb) { p.publish_delivered_and_ack(f.entry, "acct_1", "j1", 1700000000000, R"({"status":"delivered"})", cb); }));
  auto results = f.redis.xrange("deliverd:results");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].fields["event"], R"({"status":"delivered"})");
  EXPECT_EQ(f.redis.command({"GET", "deliverd:done:6:acct_1:j1"}), "1700000000000");
  EXPECT_EQ(f.redis.xlen("deliverd:jobs"), 0);
}

// A publish composed with another script (LuaScript::then; the daemon's learn): one EVALSHA does
// both, the second part runs only when this run recorded the event, and a re-run after a lost
// reply publishes nothing again and runs nothing again.
TEST(Publisher, APublishComposedWithAScriptRunsItOnceWithTheEvent) {
  Fixture f;
  Publisher p(*f.client, PublisherConfig{});
  static const LuaScript kCount{R"lua(
local n = redis.call('INCR', KEYS[1])
return {n, ARGV[1], ARGV[2]}
)lua"};
  const LuaScript composed = Publisher::add_and_ack_script().then(kCount);
  ScriptCall count{{"counted"}, {"a", "b"}};
  auto run = [&](const ScriptCall& publish) {
    std::optional<std::string> answer;
    bool done = false, ok = false;
    p.publish_then(composed, publish, count, [&](bool good, const RedisReply* r) {
      ok = good;
      if (r) answer = std::to_string(r->elements[0].integer) + r->elements[1].str + r->elements[2].str;
      done = true;
    });
    EXPECT_TRUE(f.loop.run_until([&] { return done; }));
    EXPECT_TRUE(ok);
    return answer;
  };
  f.redis.command({"CONFIG", "RESETSTAT"});
  EXPECT_EQ(run(p.delivered_call(f.entry, "acct_1", "j1", 1700000000000, R"({"status":"delivered"})")),
            std::optional<std::string>("1ab"));
  EXPECT_EQ(f.redis.command({"GET", "deliverd:done:6:acct_1:j1"}), "1700000000000");
  EXPECT_EQ(f.redis.xlen("deliverd:results"), 1);
  EXPECT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 0);
  EXPECT_EQ(f.redis.xlen("deliverd:jobs"), 0);
  // The same call again (its reply was lost): nothing published, nothing counted again.
  EXPECT_EQ(run(p.delivered_call(f.entry, "acct_1", "j1", 1700000000000, R"({"status":"delivered"})")), std::nullopt);
  EXPECT_EQ(f.redis.xlen("deliverd:results"), 1);
  EXPECT_EQ(f.redis.command({"GET", "counted"}), "1");
  const std::string stats = f.redis.command({"INFO", "commandstats"});
  EXPECT_NE(stats.find("cmdstat_evalsha:calls=2,"), std::string::npos) << "one script call each: " << stats;
}

TEST(Publisher, AComposedPublishWhoseXaddFailsRunsNothingElse) {
  Fixture f;
  f.redis.command({"SET", "deliverd:results", "not a stream"});
  Publisher p(*f.client, PublisherConfig{});
  static const LuaScript kCount{"redis.call('INCR', KEYS[1]) return 1"};
  const LuaScript composed = Publisher::add_and_ack_script().then(kCount);
  bool done = false, ok = true;
  p.publish_then(composed, p.publish_call(f.entry, "{}"), ScriptCall{{"counted"}, {}}, [&](bool good, const RedisReply*) {
    ok = good;
    done = true;
  });
  ASSERT_TRUE(f.loop.run_until([&] { return done; }));
  EXPECT_FALSE(ok);
  EXPECT_EQ(f.redis.command({"GET", "counted"}), "(nil)");
  EXPECT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 1) << "never acked without its event";
}

TEST(Publisher, ServerKilledReportsFailure) {
  Fixture f;
  Publisher p(*f.client, PublisherConfig{});
  f.redis.kill();
  EXPECT_FALSE(f.run([&](auto cb) { p.publish_and_ack(f.entry, "{}", cb); }));
}

}  // namespace
}  // namespace deliverd::queue
