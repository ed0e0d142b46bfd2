// Consumer against a real redis-server: group creation, flow control, pending re-reads,
// reconnect after the server went away.
#include "queue/consumer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <set>
#include <string>
#include <vector>

#include "core/metrics.h"
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
  // Until Redis has seen a's connection close, a blocked read of a's could still take the entry.
  ASSERT_TRUE(loop.run_until([&] {
    return redis.command({"INFO", "clients"}).find("blocked_clients:1\r") != std::string::npos;
  }));
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

// XPENDING's delivery count of one entry.
long long deliveries_of(RedisServer& redis, const std::string& id) {
  std::string r = redis.command({"XPENDING", "deliverd:jobs", "deliverd", id, id, "1"});
  // "[[id, consumer, idle, count]]"
  auto comma = r.rfind(", ");
  return comma == std::string::npos ? -1 : std::atoll(r.c_str() + comma + 2);
}

std::string owner_of(RedisServer& redis, const std::string& id) {
  std::string r = redis.command({"XPENDING", "deliverd:jobs", "deliverd", id, id, "1"});
  auto a = r.find(", ");
  if (a == std::string::npos) return "";
  auto b = r.find(", ", a + 2);
  return r.substr(a + 2, b - a - 2);
}

TEST(Consumer, ReconnectingDoesNotCountADeliveryButARestartDoes) {
  RedisServer redis;
  TestLoop loop;
  std::vector<StreamEntry> got;
  Consumer* c = Consumer::create(loop.get(), redis_config(redis), consumer_config("r", 10),
                                 [&](StreamEntry e) { got.push_back(std::move(e)); });
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return c->connected(); }));
  auto ids = redis.xadd_jobs("deliverd:jobs", jobs(0, 3));
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 3; }));
  // Two more are handed to our consumer name, but their reply never reaches us (a lost reply).
  auto lost = redis.xadd_jobs("deliverd:jobs", jobs(3, 5));
  redis.command({"XREADGROUP", "GROUP", "deliverd", "r", "COUNT", "2", "STREAMS", "deliverd:jobs", ">"});
  for (int round = 0; round < 3; ++round) {
    redis.command({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
    ASSERT_TRUE(loop.run_until([&] { return !c->connected(); }));
    ASSERT_TRUE(loop.run_until([&] { return c->connected(); }));
  }
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 5; }));
  loop.run_for(200);
  EXPECT_EQ(got.size(), 5u) << "entries in hand are not handed out again";
  for (const auto& id : ids) EXPECT_EQ(deliveries_of(redis, id), 1) << id;
  for (const auto& id : lost) EXPECT_EQ(deliveries_of(redis, id), 1) << id;
  for (const auto& e : got) EXPECT_EQ(e.deliveries, 1) << e.id;
  c->close();  // a crash: all five stay pending

  std::vector<StreamEntry> again;
  Consumer* c2 = Consumer::create(loop.get(), redis_config(redis), consumer_config("r", 10),
                                  [&](StreamEntry e) { again.push_back(std::move(e)); });
  c2->start();
  ASSERT_TRUE(loop.run_until([&] { return again.size() == 5; }));
  for (const auto& e : again) EXPECT_EQ(e.deliveries, 2) << e.id << ": taken after a crash";
  for (const auto& e : again) EXPECT_EQ(deliveries_of(redis, e.id), 2) << e.id;
  c2->close();
}

TEST(Consumer, LeaseRenewalNeverTakesAnEntryAnotherConsumerOwns) {
  RedisServer redis;
  TestLoop loop;
  std::vector<std::string> got;
  ConsumerConfig cfg = consumer_config("slow", 10);
  // Renewals every 2 s; the other consumer's entry stays younger than claim_idle_ms throughout,
  // so our XAUTOCLAIM may not take it either (however slow the machine, within 1.5 s).
  cfg.claim_idle_ms = 6000;
  Consumer* c = Consumer::create(loop.get(), redis_config(redis), cfg, [&](StreamEntry e) { got.push_back(e.id); });
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return c->connected(); }));
  redis.xadd_jobs("deliverd:jobs", jobs(0, 2));
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 2; }));
  // Another daemon took the first one over (as XAUTOCLAIM does after claim_idle).
  redis.command({"XCLAIM", "deliverd:jobs", "deliverd", "other", "0", got[0], "JUSTID"});
  const double lost_before = core::Registry::global()
                                 .counter("deliverd_queue_leases_lost_total", "")
                                 .get()
                                 .value();
  loop.run_for(4500);  // two renewals
  EXPECT_EQ(owner_of(redis, got[0]), "other") << "our renewal must not take it back";
  EXPECT_EQ(owner_of(redis, got[1]), "slow");
  EXPECT_GE(core::Registry::global().counter("deliverd_queue_leases_lost_total", "").get().value(), lost_before + 1);
  // Our own lease is kept fresh: idle for well under the 4.5 s since it was read.
  std::string r = redis.command({"XPENDING", "deliverd:jobs", "deliverd", "IDLE", "3000", "-", "+", "10", "slow"});
  EXPECT_EQ(r, "[]");
  c->close();
}

TEST(Consumer, HeldItReadsNothingNewUntilReleased) {
  RedisServer redis;
  TestLoop loop;
  std::vector<std::string> got;
  Consumer* c = nullptr;
  c = Consumer::create(loop.get(), redis_config(redis), consumer_config("h", 10), [&](StreamEntry e) {
    got.push_back(e.id);
    c->done(e.id);
  });
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return c->connected(); }));
  redis.xadd_jobs("deliverd:jobs", jobs(0, 1));
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 1; }));
  c->hold(true);
  loop.run_for(400);  // a blocking read in flight when held ends within block_ms
  const size_t at_hold = got.size();
  redis.xadd_jobs("deliverd:jobs", jobs(1, 4));
  loop.run_for(600);
  EXPECT_EQ(got.size(), at_hold) << "nothing is read while held";
  c->hold(false);
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 4; }));
  c->close();
}

TEST(Consumer, BytesInHandAreBoundedAsWellAsEntries) {
  RedisServer redis;
  TestLoop loop;
  size_t handed = 0, max_bytes = 0;
  ConsumerConfig cfg = consumer_config("b", 1000);
  cfg.read_batch = 4;
  cfg.max_inflight_bytes = 1 << 20;
  Consumer* c = nullptr;
  c = Consumer::create(loop.get(), redis_config(redis), cfg, [&](StreamEntry) {
    ++handed;
    max_bytes = std::max(max_bytes, c->inflight_bytes());
  });
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return c->connected(); }));
  const std::string body(100 * 1024, 'x');
  redis.xadd_jobs("deliverd:jobs", std::vector<std::string>(50, body));
  ASSERT_TRUE(loop.run_until([&] { return handed >= 10; }));
  loop.run_for(500);
  // 1 MiB of 100 KiB entries, plus at most one read of 4 over the bound.
  EXPECT_LE(max_bytes, (1u << 20) + 4 * (body.size() + 64));
  EXPECT_LE(handed, 14u);
  EXPECT_EQ(c->inflight(), handed);
  c->close();
}

TEST(Consumer, AReadTooLargeShrinksToOneEntryAndAnEntryTooLargeAloneIsDeadLettered) {
  RedisServer redis;
  TestLoop loop;
  std::vector<StreamEntry> got;
  ConsumerConfig cfg = consumer_config("big", 100);
  cfg.max_entry_bytes = 1 << 20;  // replies up to 2 MiB
  Consumer* c = nullptr;
  c = Consumer::create(loop.get(), redis_config(redis), cfg, [&](StreamEntry e) {
    // Finished as the daemon finishes an entry: acked (and deleted), then its slot freed.
    redis.command({"XACK", "deliverd:jobs", "deliverd", e.id});
    redis.command({"XDEL", "deliverd:jobs", e.id});
    got.push_back(std::move(e));
    c->done(got.back().id);
  });
  auto medium = redis.xadd_jobs("deliverd:jobs", std::vector<std::string>(12, std::string(700 * 1024, 'm')));
  const std::string huge = redis.xadd_job("deliverd:jobs", std::string(3 << 20, 'h'));
  auto small = redis.xadd_jobs("deliverd:jobs", jobs(0, 5));
  c->start();
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 17; }, 60000)) << got.size();
  std::set<std::string> ids;
  for (const auto& e : got) ids.insert(e.id);
  for (const auto& id : medium) EXPECT_TRUE(ids.count(id)) << "a large entry within the bound is read";
  for (const auto& id : small) EXPECT_TRUE(ids.count(id));
  EXPECT_FALSE(ids.count(huge));
  EXPECT_LT(c->read_batch(), cfg.read_batch);
  auto dead = redis.xrange("deliverd:dead");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].fields["job"], std::string(4096, 'h')) << "only the start of it";
  EXPECT_NE(dead[0].fields["reason"].find("larger than [redis] max_job_bytes (1048576)"), std::string::npos)
      << dead[0].fields["reason"];
  EXPECT_NE(dead[0].fields["reason"].find(std::to_string((3 << 20) + 3)), std::string::npos)
      << "names the entry's size: " << dead[0].fields["reason"];
  EXPECT_EQ(redis.command({"XRANGE", "deliverd:jobs", huge, huge}), "[]") << "acked and deleted";
  c->close();
}

}  // namespace
}  // namespace deliverd::queue
