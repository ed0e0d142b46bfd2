// Consumer intake in slices, against a real redis-server: a read's batch is handed out over
// several loop turns, in order, once each; a stop halfway leaves the rest pending in Redis; the
// in-flight bound counts what is queued. States are asserted, never times.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "queue/consumer.h"
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

ConsumerConfig sliced(const std::string& name, size_t max_inflight, size_t slice) {
  ConsumerConfig cfg;
  cfg.consumer = name;
  cfg.max_inflight = max_inflight;
  cfg.block_ms = 200;
  cfg.retry_min_ms = 50;
  cfg.retry_max_ms = 200;
  cfg.hand_out_slice = slice;
  cfg.hand_out_budget_us = 1000000;  // the slice's size alone ends it, however slow the machine
  return cfg;
}

std::vector<std::string> jobs(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(R"({"v":1,"id":"job-)" + std::to_string(i) + R"("})");
  return out;
}

std::vector<std::string> stream_ids(RedisServer& redis) {
  std::vector<std::string> ids;
  for (const auto& e : redis.xrange("deliverd:jobs")) ids.push_back(e.id);
  return ids;
}

// Counts loop turns: a prepare handle runs once per turn, just before the poll phase.
class TurnCounter {
 public:
  explicit TurnCounter(uv_loop_t* loop) {
    uv_prepare_init(loop, &prepare_);
    prepare_.data = this;
    uv_prepare_start(&prepare_, [](uv_prepare_t* p) { ++static_cast<TurnCounter*>(p->data)->turn_; });
  }
  ~TurnCounter() { uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr); }
  long turn() const { return turn_; }

 private:
  uv_prepare_t prepare_{};
  long turn_ = 0;
};

TEST(ConsumerSlicing, ABatchLargerThanTheSliceIsHandedOutOverSeveralTurnsInOrderOnce) {
  RedisServer redis;
  TestLoop loop;
  TurnCounter turns(loop.get());
  redis.xadd_jobs("deliverd:jobs", jobs(0, 40));  // one read of up to read_batch (64) takes all
  std::vector<std::string> got;
  std::map<long, size_t> per_turn;
  size_t queued_at_first = 0;
  Consumer* c = nullptr;
  c = Consumer::create(loop.get(), redis_config(redis), sliced("s", 100, 4), [&](StreamEntry e) {
    if (got.empty()) queued_at_first = c->queued();
    got.push_back(e.id);
    ++per_turn[turns.turn()];
  });
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 40; }));
  EXPECT_EQ(queued_at_first, 39u) << "one read brought all 40";
  EXPECT_EQ(got, stream_ids(redis)) << "in stream order, each once";
  EXPECT_EQ(per_turn.size(), 10u) << "ten turns of four";
  for (const auto& [turn, n] : per_turn) EXPECT_EQ(n, 4u) << "turn " << turn;
  loop.run_for(300);
  EXPECT_EQ(got.size(), 40u) << "nothing handed out twice";
  EXPECT_EQ(c->queued(), 0u);
  EXPECT_EQ(c->inflight(), 40u);
  c->close();
}

TEST(ConsumerSlicing, AStopHalfwayLeavesTheRestUnhandedAndPendingUntilTheNextStart) {
  RedisServer redis;
  TestLoop loop;
  redis.xadd_jobs("deliverd:jobs", jobs(0, 30));
  std::vector<std::string> got;
  Consumer* c = nullptr;
  c = Consumer::create(loop.get(), redis_config(redis), sliced("t", 100, 3), [&](StreamEntry e) {
    got.push_back(e.id);
    if (got.size() == 5) c->stop();  // SIGTERM's drain, in the middle of the second slice
  });
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 5; }));
  loop.run_for(300);
  EXPECT_EQ(got.size(), 5u) << "nothing handed out after stop()";
  EXPECT_EQ(c->queued(), 0u);
  EXPECT_EQ(c->inflight(), 5u);
  EXPECT_EQ(redis.xpending_count("deliverd:jobs", "deliverd"), 30) << "the 25 unhanded stay pending, not lost";
  // The five in hand finish (acked) while stopped; the next start takes the other 25, once each.
  for (const auto& id : got) {
    redis.command({"XACK", "deliverd:jobs", "deliverd", id});
    c->done(id);
  }
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 30; }));
  loop.run_for(300);
  EXPECT_EQ(got, stream_ids(redis)) << "each entry exactly once, in order";
  c->close();
}

TEST(ConsumerSlicing, ACrashHalfwayLeavesTheRestForTheNextRunOfTheConsumer) {
  RedisServer redis;
  TestLoop loop;
  redis.xadd_jobs("deliverd:jobs", jobs(0, 20));
  std::vector<std::string> first;
  Consumer* c1 = nullptr;
  c1 = Consumer::create(loop.get(), redis_config(redis), sliced("u", 100, 4), [&](StreamEntry e) {
    first.push_back(e.id);
    redis.command({"XACK", "deliverd:jobs", "deliverd", e.id});  // finished at once
    c1->done(e.id);
  });
  c1->start();
  ASSERT_TRUE(loop.run_until([&] { return first.size() >= 4; }));
  ASSERT_GT(c1->queued(), 0u);
  c1->close();  // the process dies with entries queued
  EXPECT_EQ(redis.xpending_count("deliverd:jobs", "deliverd"), static_cast<long long>(20 - first.size()));

  std::vector<std::string> second;
  Consumer* c2 = Consumer::create(loop.get(), redis_config(redis), sliced("u", 100, 4),
                                  [&](StreamEntry e) { second.push_back(e.id); });
  c2->start();
  ASSERT_TRUE(loop.run_until([&] { return first.size() + second.size() == 20; }));
  loop.run_for(300);
  std::vector<std::string> all = first;
  all.insert(all.end(), second.begin(), second.end());
  EXPECT_EQ(all, stream_ids(redis)) << "the rest comes back, none twice";
  c2->close();
}

TEST(ConsumerSlicing, TheInflightBoundCountsQueuedEntries) {
  RedisServer redis;
  TestLoop loop;
  redis.xadd_jobs("deliverd:jobs", jobs(0, 200));
  std::vector<std::string> held;
  std::set<std::string> seen;
  size_t max_taken = 0, done_count = 0;
  long long max_pel = 0;
  Consumer* c = nullptr;
  c = Consumer::create(loop.get(), redis_config(redis), sliced("v", 10, 3), [&](StreamEntry e) {
    EXPECT_TRUE(seen.insert(e.id).second) << "handed out twice: " << e.id;
    held.push_back(e.id);
    max_taken = std::max(max_taken, c->inflight() + c->queued());
    if (seen.size() % 7 == 0) max_pel = std::max(max_pel, redis.xpending_count("deliverd:jobs", "deliverd"));
  });
  c->start();
  // Finishes two of the oldest entries in hand per check, slower than the consumer reads.
  ASSERT_TRUE(loop.run_until([&] {
    for (int i = 0; i < 2 && !held.empty(); ++i) {
      redis.command({"XACK", "deliverd:jobs", "deliverd", held.front()});
      c->done(held.front());
      held.erase(held.begin());
      ++done_count;
    }
    return done_count == 200;
  }, 60000)) << done_count;
  EXPECT_EQ(seen.size(), 200u);
  EXPECT_LE(max_taken, 10u) << "entries in hand and queued together";
  EXPECT_LE(max_pel, 10);
  EXPECT_EQ(redis.xpending_count("deliverd:jobs", "deliverd"), 0);
  c->close();
}

}  // namespace
}  // namespace deliverd::queue
