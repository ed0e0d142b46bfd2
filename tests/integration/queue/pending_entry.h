#pragma once
// A real redis-server with one job entry pending in the group (read, not acked), and a connected
// RedisClient on a test loop: the starting point of every publish, ack and defer test.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "queue/redis_client.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/queue/test_loop.h"

namespace deliverd::testing {

struct PendingEntry {
  RedisServer redis;
  TestLoop loop;
  queue::RedisClient* client = nullptr;
  std::string entry;

  PendingEntry() {
    redis.command({"XGROUP", "CREATE", "deliverd:jobs", "deliverd", "$", "MKSTREAM"});
    entry = redis.xadd_job("deliverd:jobs", R"({"v":1,"id":"j1"})");
    // Deliver it to a consumer so that it is pending.
    redis.command({"XREADGROUP", "GROUP", "deliverd", "c", "COUNT", "1", "STREAMS", "deliverd:jobs", ">"});
    queue::RedisConfig cfg;
    cfg.port = redis.port();
    client = queue::RedisClient::create(loop.get(), cfg);
    bool ready = false;
    client->connect([&](bool ok, const std::string& e) {
      EXPECT_TRUE(ok) << e;
      ready = true;
    });
    EXPECT_TRUE(loop.run_until([&] { return ready; }));
  }
  ~PendingEntry() { client->close(); }

  bool run(const std::function<void(std::function<void(bool)>)>& op) {
    bool done = false, result = false;
    op([&](bool ok) {
      done = true;
      result = ok;
    });
    EXPECT_TRUE(loop.run_until([&] { return done; }));
    return result;
  }
};

}  // namespace deliverd::testing
