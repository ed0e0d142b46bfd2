// Pause, resume and disable are one state across the fleet: the bounce guard on one daemon
// pauses a mailbox for every daemon, and one resume through the admin API lets it send again on
// every daemon, through the shared Redis state and the row together.
#include <gtest/gtest.h>
#include <signal.h>

#include <functional>
#include <thread>
#include <utility>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"

using namespace deliverd::testing;

namespace {

constexpr int kMailPort = 2525;
const std::string kState = "deliverd:acct:6:acct_1:mbx:mbx:state";

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

// This daemon's deliverd_outcomes_total for one status and reason, from its /metrics (0 when
// the series is not there yet).
double outcomes(const DeliverdProcess& d, const std::string& status, const std::string& reason) {
  const std::string series = "deliverd_outcomes_total{status=\"" + status + "\",reason=\"" + reason + "\"} ";
  const std::string text = d.http_get("/metrics");
  const size_t at = text.find(series);
  return at == std::string::npos ? 0 : std::stod(text.substr(at + series.size()));
}

// Jobs one at a time (each waits for its event) until both daemons have handled one; every event
// must have `status` and `reason`. The group hands each entry to one daemon: within 40 jobs both
// have taken some. Each job is counted for the daemon whose outcome counter it moved. Returns
// how many of the jobs each daemon handled.
std::pair<int, int> until_both_handle(DeliverdProcess& a, DeliverdProcess& b, RedisServer& redis,
                                      const std::string& prefix, const std::string& status, const std::string& reason) {
  const double base_a = outcomes(a, status, reason), base_b = outcomes(b, status, reason);
  int by_a = 0, by_b = 0;
  for (int i = 0; i < 40 && (by_a == 0 || by_b == 0); ++i) {
    const std::string id = prefix + std::to_string(i);
    redis.xadd_jobs("deliverd:jobs", {make_job(id, "acct_1", "mbx", id + "@example.org")});
    ResultEvent e = wait_for_event(redis, id, 30000);
    EXPECT_EQ(e.status, status) << id << " " << e.reason << " " << e.detail;
    if (e.status != status || e.reason != reason) {
      ADD_FAILURE() << id << ": " << e.status << " " << e.reason;
      break;
    }
    double now_a = 0, now_b = 0;
    EXPECT_TRUE(wait_until(
        [&] {
          now_a = outcomes(a, status, reason) - base_a;
          now_b = outcomes(b, status, reason) - base_b;
          return now_a + now_b >= i + 1;
        },
        10000))
        << "no daemon counted " << id;
    by_a = static_cast<int>(now_a);
    by_b = static_cast<int>(now_b);
  }
  return {by_a, by_b};
}

}  // namespace

TEST(PauseAcrossTheFleet, BounceGuardPausesTheApiResumesAndTheNextJobIsDeliveredOnBothDaemons) {
  ScriptedSmtpServer::Options so;
  so.host = free_loopback_ip(kMailPort);
  so.port = kMailPort;
  // Three unknown recipients (3 of the last 50 sends: the bounce guard pauses), then all accepted.
  ScriptedSmtpServer server(R"({"steps": {"RCPT": [{"reply": "550 5.1.1 no such user", "times": 3}, "250 2.1.5 ok"]}})",
                            so);
  DaemonStack stack([](DeliverdProcess::Options& o) { o.consumer = "host-a"; });
  DeliverdProcess::Options ob;
  ob.redis_port = stack.redis.port();
  ob.pg_conninfo = stack.pg.conninfo();
  ob.consumer = "host-b";
  DeliverdProcess b(ob);
  auto& a = stack.daemon();
  a.add_mailbox("mbx", "acct_1", "alice@acme.example", server.host(), kMailPort);
  std::string out;
  ASSERT_EQ(a.cli({"key", "create", "--role", "owner"}, &out), 0) << out;
  const size_t at = out.find("dlv_");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string token = out.substr(at, out.find_first_of(" \n", at) - at);
  a.start();
  b.start();

  std::vector<std::string> gone = {"gone-1", "gone-2", "gone-3"};
  std::vector<std::string> jobs;
  for (const auto& id : gone) jobs.push_back(make_job(id, "acct_1", "mbx", id + "@example.org"));
  stack.redis.xadd_jobs("deliverd:jobs", jobs);
  for (const auto& [id, e] : wait_for_final_events(stack.redis, gone, 30000)) EXPECT_EQ(e.status, "bounced") << id;
  ASSERT_TRUE(wait_until(
      [&] { return stack.pg.scalar("SELECT paused_by FROM mailboxes WHERE id = 'mbx'") == "daemon"; }, 30000))
      << a.log() << b.log();
  EXPECT_EQ(stack.redis.command({"HGET", kState, "paused_by"}), "daemon");
  // Paused on both daemons.
  auto [paused_a, paused_b] = until_both_handle(a, b, stack.redis, "paused-", "deferred", "mailbox_paused");
  EXPECT_GT(paused_a, 0);
  EXPECT_GT(paused_b, 0);

  // One resume through one daemon's API; the other learns of it from the row's NOTIFY.
  const std::string loaded = "event=mailboxes_loaded";
  const size_t loads_a = count_of(a.log(), loaded), loads_b = count_of(b.log(), loaded);
  const std::string base = "http://127.0.0.1:" + std::to_string(b.admin_port());
  std::string resumed = curl("POST", base + "/v1/mailboxes/mbx/resume?account=acct_1", token);
  ASSERT_NE(resumed.find("\"paused\":false"), std::string::npos) << resumed;
  EXPECT_EQ(stack.pg.scalar("SELECT paused::text || coalesce(paused_by, '-') FROM mailboxes WHERE id = 'mbx'"),
            "false-");
  EXPECT_EQ(stack.redis.command({"HGET", kState, "paused"}), "(nil)") << "the shared state is resumed too";
  ASSERT_TRUE(
      wait_until([&] { return count_of(a.log(), loaded) > loads_a && count_of(b.log(), loaded) > loads_b; }, 30000))
      << "a daemon never read the resumed row";

  auto [sent_a, sent_b] = until_both_handle(a, b, stack.redis, "after-", "delivered", "delivered");
  EXPECT_GT(sent_a, 0) << "the daemon that paused it sends again";
  EXPECT_GT(sent_b, 0) << "and so does the one that resumed it";
  EXPECT_TRUE(server.wait_for_messages(static_cast<size_t>(sent_a + sent_b), 10000));
  EXPECT_EQ(b.stop(SIGTERM), 0) << b.log();
  EXPECT_EQ(a.stop(SIGTERM), 0) << a.log();
}
