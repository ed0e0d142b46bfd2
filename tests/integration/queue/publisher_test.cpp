// Publisher against a real redis-server: events and dead letters land in their streams, the
// job entry is acked, and a failed XADD leaves the entry pending.
#include "queue/publisher.h"

#include <gtest/gtest.h>

#include <string>

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
  int done = 0;
  for (int i = 0; i < 2000; ++i) p.publish_and_ack(f.entry, "{}", [&](bool) { ++done; });
  ASSERT_TRUE(f.loop.run_until([&] { return done == 2000; }));
  // MAXLEN ~ trims whole macro nodes (100 entries by default), so "about" 10.
  EXPECT_LT(f.redis.xlen("deliverd:results"), 200);
}

TEST(Publisher, ServerKilledReportsFailure) {
  Fixture f;
  Publisher p(*f.client, PublisherConfig{});
  f.redis.kill();
  EXPECT_FALSE(f.run([&](auto cb) { p.publish_and_ack(f.entry, "{}", cb); }));
}

}  // namespace
}  // namespace deliverd::queue
