// Consumer against a real redis-server: group creation, flow control, pending re-reads,
// reconnect after the server went away.
#include "queue/consumer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <set>
#include <string>
#include <vector>

#include "queue/publisher.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/queue/test_loop.h"

namespace deliverd::queue {
namespace {

using deliverd::testing::RedisServer;
using deliverd::testing::TestLoop;

RedisConfig redis_config(const RedisServer& redis) {
  RedisConfig cfg;
  cfg.port = redis.port();
  return cfg;
}

ConsumerConfig consumer_config(const std::string& name, size_t max_inflight = 10) {
  ConsumerConfig cfg;
  cfg.consumer = name;
  cfg.max_inflight = max_inflight;
  cfg.block_ms = 200;
  cfg.retry_min_ms = 50;
  cfg.retry_max_ms = 200;
  return cfg;
}

std::string job(int i) { return R"({"v":1,"id":"job-)" + std::to_string(i) + R"("})"; }

std::vector<std::string> jobs(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(job(i));
  return out;
}

TEST(Consumer, CreatesTheGroupWithMkstreamAndToleratesAnExistingOne) {
  RedisServer redis;
  TestLoop loop;
  Consumer* a = Consumer::create(loop.get(), redis_config(redis), consumer_config("a"), [](StreamEntry) {});
  a->start();
  ASSERT_TRUE(loop.run_until([&] { return redis.command({"EXISTS", "deliverd:jobs"}) == "1"; }));
  ASSERT_TRUE(loop.run_until([&] { return a->connected(); }));
  EXPECT_NE(redis.command({"XINFO", "GROUPS", "deliverd:jobs"}).find("deliverd"), std::string::npos);
  // A second daemon joining the same group meets BUSYGROUP and carries on.
  std::vector<std::string> got;
  Consumer* b = Consumer::create(loop.get(), redis_config(redis), consumer_config("b"),
                                 [&](StreamEntry e) { got.push_back(*e.field("job")); });
  b->start();
  ASSERT_TRUE(loop.run_until([&] { return b->connected(); }));
  a->stop();
  redis.xadd_job("deliverd:jobs", job(1));
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 1; }));
  EXPECT_EQ(got[0], job(1));
  a->close();
  b->close();
}

TEST(Consumer, NeverHoldsMoreThanMaxInflightAcrossAThousandEntries) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* cmd = RedisClient::create(loop.get(), redis_config(redis));
  cmd->connect([](bool ok, const std::string& e) { ASSERT_TRUE(ok) << e; });
  Publisher publisher(*cmd, PublisherConfig{});

  std::deque<std::string> held;
  std::set<std::string> seen;
  size_t max_held = 0, acked = 0;
  long long max_pel = 0;
  Consumer* consumer = nullptr;
  consumer = Consumer::create(loop.get(), redis_config(redis), consumer_config("c1", 10), [&](StreamEntry e) {
    EXPECT_TRUE(seen.insert(e.id).second) << "entry handed out twice: " << e.id;
    held.push_back(e.id);
    max_held = std::max(max_held, held.size());
    EXPECT_LE(consumer->inflight(), 10u);
    // What Redis itself counts as delivered-but-unacked is bounded the same way.
    if (seen.size() % 97 == 0) max_pel = std::max(max_pel, redis.xpending_count("deliverd:jobs", "deliverd"));
  });
  consumer->start();
  ASSERT_TRUE(loop.run_until([&] { return consumer->connected(); }));
  redis.xadd_jobs("deliverd:jobs", jobs(0, 1000));

  // Acks a few held entries per tick, slower than the consumer could read.
  uv_timer_t acker{};
  struct Ctx {
    std::deque<std::string>* held;
    Publisher* publisher;
    Consumer* consumer;
    size_t* acked;
  } ctx{&held, &publisher, consumer, &acked};
  uv_timer_init(loop.get(), &acker);
  acker.data = &ctx;
  uv_timer_start(&acker, [](uv_timer_t* t) {
    auto* c = static_cast<Ctx*>(t->data);
    for (int i = 0; i < 7 && !c->held->empty(); ++i) {
      std::string id = c->held->front();
      c->held->pop_front();
      c->publisher->publish_and_ack(id, R"({"v":1,"status":"delivered"})", [c, id](bool ok) {
        EXPECT_TRUE(ok);
        ++*c->acked;
        c->consumer->done(id);
      });
    }
  }, 1, 1);
  ASSERT_TRUE(loop.run_until([&] { return acked == 1000; }, 60000)) << "acked " << acked;
  uv_close(reinterpret_cast<uv_handle_t*>(&acker), nullptr);
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_LE(max_held, 10u);
  EXPECT_EQ(max_held, 10u) << "the window should fill up while acks are slow";
  EXPECT_LE(max_pel, 10);
  EXPECT_EQ(consumer->inflight(), 0u);
  EXPECT_EQ(redis.xpending_count("deliverd:jobs", "deliverd"), 0);
  EXPECT_EQ(redis.xlen("deliverd:results"), 1000);
  consumer->close();
  cmd->close();
}

TEST(Consumer, RestartedConsumerFirstTakesBackItsOwnPendingEntries) {
  RedisServer redis;
  TestLoop loop;
  std::vector<std::string> first_run;
  Consumer* c1 = Consumer::create(loop.get(), redis_config(redis), consumer_config("host-a", 5),
                                  [&](StreamEntry e) { first_run.push_back(e.id); });
  c1->start();
  ASSERT_TRUE(loop.run_until([&] { return c1->connected(); }));
  redis.xadd_jobs("deliverd:jobs", jobs(0, 8));
  ASSERT_TRUE(loop.run_until([&] { return first_run.size() == 5; }));
  loop.run_for(100);
  EXPECT_EQ(first_run.size(), 5u) << "window of 5 is full, nothing more is read";
  c1->close();  // "crash": nothing acked
  EXPECT_EQ(redis.xpending_count("deliverd:jobs", "deliverd"), 5);

  std::vector<std::string> second_run;
  Consumer* c2 = nullptr;
  c2 = Consumer::create(loop.get(), redis_config(redis), consumer_config("host-a", 5), [&](StreamEntry e) {
    second_run.push_back(e.id);
    EXPECT_EQ(*e.field("job"), job(static_cast<int>(second_run.size()) - 1));
    c2->done(e.id);  // releases the slot (acking is not this test's concern)
  });
  c2->start();
  ASSERT_TRUE(loop.run_until([&] { return second_run.size() == 8; }));
  // Its own five come back first, in order, then the three never delivered.
  EXPECT_TRUE(std::equal(first_run.begin(), first_run.end(), second_run.begin()));
  std::vector<std::string> all;
  for (const auto& e : redis.xrange("deliverd:jobs")) all.push_back(e.id);
  EXPECT_EQ(second_run, all);
  c2->close();
}

TEST(Consumer, StopEndsReadingAndDoneStillFreesSlots) {
  RedisServer redis;
  TestLoop loop;
  std::vector<std::string> got;
  Consumer* c = Consumer::create(loop.get(), redis_config(redis), consumer_config("s", 2),
                                 [&](StreamEntry e) { got.push_back(e.id); });
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return c->connected(); }));
  redis.xadd_jobs("deliverd:jobs", jobs(0, 2));
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 2; }));
  c->stop();
  EXPECT_FALSE(c->connected());
  redis.xadd_jobs("deliverd:jobs", jobs(2, 4));
  c->done(got[0]);
  c->done("0-0");  // unknown ids are ignored
  EXPECT_EQ(c->inflight(), 1u);
  loop.run_for(300);
  EXPECT_EQ(got.size(), 2u);
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 3; }));
  c->close();
}

TEST(Consumer, SurvivesServerDeathAndResumesAfterRestart) {
  RedisServer redis;
  TestLoop loop;
  std::vector<std::string> got;
  Consumer* c = nullptr;
  c = Consumer::create(loop.get(), redis_config(redis), consumer_config("k", 10), [&](StreamEntry e) {
    got.push_back(*e.field("job"));
    c->done(e.id);
  });
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return c->connected(); }));
  redis.xadd_job("deliverd:jobs", job(1));
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 1; }));
  redis.kill();
  ASSERT_TRUE(loop.run_until([&] { return !c->connected(); }));
  loop.run_for(300);  // a few failed reconnects
  redis.restart(false);
  redis.xadd_job("deliverd:jobs", job(2));  // the stream exists again; the group is re-created at $…
  ASSERT_TRUE(loop.run_until([&] { return c->connected(); }));
  redis.xadd_job("deliverd:jobs", job(3));  // …so entries added after reconnecting are read
  ASSERT_TRUE(loop.run_until([&] { return !got.empty() && got.back() == job(3); }));
  c->close();
}

}  // namespace
}  // namespace deliverd::queue
