// Issue 5: the job pipeline never loses a job and never sends one twice — retries through the
// retry set, not_before and expiry, the idempotency marker, reclaiming a dead consumer's entries,
// poison entries, kill -9 and Redis restarts, two daemons on one group, malformed entries.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <set>
#include <thread>

#include "queue/scheduler.h"
#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"
#include "tests/integration/fixtures/smtp_sink.h"

using namespace deliverd::testing;

namespace {

constexpr int kMailPort = 2525;
const std::string kStream = "deliverd:jobs";
const std::string kGroup = "deliverd";

std::unique_ptr<ScriptedSmtpServer> scripted(const std::string& script) {
  ScriptedSmtpServer::Options so;
  so.host = free_loopback_ip(kMailPort);
  so.port = kMailPort;
  return std::make_unique<ScriptedSmtpServer>(script, so);
}

long long wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string rfc3339(long long epoch_ms) {
  std::time_t secs = static_cast<std::time_t>(epoch_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Subject "Hello <id>" (make_job) → how many times the sink received each job.
std::map<std::string, int> sink_counts(const SmtpSink& sink) {
  std::map<std::string, int> counts;
  for (const auto& m : sink.messages()) {
    auto pos = m.find("Subject: Hello ");
    if (pos == std::string::npos) continue;
    auto end = m.find_first_of("\r\n", pos);
    counts[m.substr(pos + 15, end - pos - 15)]++;
  }
  return counts;
}

bool wait_until(const std::function<bool()>& done, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  while (!done()) {
    if (now_ms() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

std::vector<std::string> job_ids(const std::string& prefix, int n) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(prefix + std::to_string(i));
  return ids;
}

std::vector<std::string> jobs_for(const std::vector<std::string>& ids, const std::string& mailbox) {
  std::vector<std::string> jobs;
  for (const auto& id : ids) jobs.push_back(make_job(id, "acct_1", mailbox, id + "@example.org"));
  return jobs;
}

void expect_exactly_one_final(RedisServer& redis, const std::vector<std::string>& ids, const std::string& status) {
  std::map<std::string, int> finals;
  for (const auto& ev : all_events(redis))
    if (ev.status != "deferred") {
      finals[ev.job_id]++;
      EXPECT_EQ(ev.status, status) << ev.job_id << " " << ev.reason << " " << ev.detail;
    }
  for (const auto& id : ids) EXPECT_EQ(finals[id], 1) << id;
}

}  // namespace

TEST(Retries, DeferredTwiceThenDeliveredWithAttemptNumbersAndSpacing) {
  auto server = scripted(R"({"steps": {"DOT": [{"reply": "451 4.3.0 busy, try later", "times": 2}, "250 2.0.0 ok"]}})");
  DaemonStack stack([](DeliverdProcess::Options& o) { o.extra_toml = "[retry]\nschedule = [\"1s\", \"2s\"]\n"; });
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", server->host(), kMailPort);
  d.start();
  stack.redis.xadd_job(kStream, make_job("r1", "acct_1", "mbx", "bob@example.org"));
  auto finals = wait_for_final_events(stack.redis, {"r1"}, 30000);
  ASSERT_EQ(finals["r1"].status, "delivered") << d.log();

  auto events = all_events(stack.redis);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].status, "deferred");
  EXPECT_EQ(events[0].attempt, 1);
  EXPECT_EQ(events[0].code, 451);
  EXPECT_FALSE(events[0].next_attempt_at.empty());
  EXPECT_EQ(events[1].status, "deferred");
  EXPECT_EQ(events[1].attempt, 2);
  EXPECT_EQ(events[2].status, "delivered");
  EXPECT_EQ(events[2].attempt, 3);
  // Schedule 1 s then 2 s, ±10 % jitter: the gaps can only be longer than that, never shorter.
  EXPECT_GE(events[1].entry_ms - events[0].entry_ms, 900);
  EXPECT_GE(events[2].entry_ms - events[1].entry_ms, 1800);
  EXPECT_EQ(server->messages().size(), 1u);
  EXPECT_EQ(stack.redis.integer({"ZCARD", "deliverd:retry"}), 0);
  EXPECT_EQ(stack.redis.xpending_count(kStream, kGroup), 0);
}

TEST(Retries, NotBeforeWaitsInTheRetrySetAndExpiryEndsRetries) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  auto always451 = scripted(R"({"steps": {"RCPT": "451 4.7.1 greylisted"}})");
  DaemonStack stack([](DeliverdProcess::Options& o) { o.extra_toml = "[retry]\nschedule = [\"1s\"]\n"; });
  auto& d = stack.daemon();
  d.add_mailbox("mbx_sink", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.add_mailbox("mbx_451", "acct_1", "alice@acme.example", always451->host(), kMailPort);
  d.start();

  long long start = wall_ms();
  stack.redis.xadd_job(kStream, make_job("later", "acct_1", "mbx_sink", "bob@example.org",
                                         ",\"not_before\":\"" + rfc3339(start + 3000) + "\""));
  stack.redis.xadd_job(kStream, make_job("doomed", "acct_1", "mbx_451", "bob@example.org",
                                         ",\"expires_at\":\"" + rfc3339(start + 4000) + "\""));
  ASSERT_TRUE(wait_until([&] { return stack.redis.integer({"ZCARD", "deliverd:retry"}) >= 1; }, 10000)) << d.log();
  EXPECT_EQ(sink->message_count(), 0u);

  auto finals = wait_for_final_events(stack.redis, {"later", "doomed"}, 30000);
  EXPECT_EQ(finals["later"].status, "delivered") << d.log();
  EXPECT_GE(finals["later"].entry_ms, (start / 1000) * 1000 + 2000);
  EXPECT_EQ(finals["later"].attempt, 1);  // waiting for not_before is not an attempt
  EXPECT_EQ(finals["doomed"].status, "expired");
  EXPECT_EQ(finals["doomed"].reason, "expired");
  EXPECT_EQ(finals["doomed"].code, 451);  // the last attempt's reply goes with the final outcome
  EXPECT_NE(finals["doomed"].detail.find("expires_at"), std::string::npos) << finals["doomed"].detail;
  EXPECT_EQ(stack.redis.xpending_count(kStream, kGroup), 0);
}

// The promoter runs once a second, so a retry due just before expires_at can reach the stream
// just after it: the final outcome must still carry the reply that made the job wait.
TEST(Retries, AJobThatExpiresWhileWaitingReportsItsLastReply) {
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", "127.0.0.1", kMailPort);
  d.start();

  const long long now = wall_ms();
  deliverd::queue::RetryItem item{make_job("waited", "acct_1", "mbx", "bob@example.org",
                                           ",\"expires_at\":\"" + rfc3339(now - 2000) + "\""),
                                  3, now - 60000, "rcpt_deferred 451 greylisted", {451, "4.7.1", "greylisted"}};
  stack.redis.command({"ZADD", "deliverd:retry", std::to_string(now - 1000), deliverd::queue::encode_retry_item(item)});

  auto finals = wait_for_final_events(stack.redis, {"waited"}, 20000);
  EXPECT_EQ(finals["waited"].status, "expired") << d.log();
  EXPECT_EQ(finals["waited"].reason, "expired");
  EXPECT_EQ(finals["waited"].attempt, 3);
  EXPECT_EQ(finals["waited"].code, 451);
  EXPECT_NE(finals["waited"].detail.find("greylisted"), std::string::npos) << finals["waited"].detail;
  EXPECT_EQ(stack.redis.integer({"ZCARD", "deliverd:retry"}), 0);
  EXPECT_EQ(stack.redis.xpending_count(kStream, kGroup), 0);
}

TEST(Idempotency, ADeliveredJobIsNeverSentAgain) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.start();
  std::string job = make_job("once", "acct_1", "mbx", "bob@example.org");
  stack.redis.xadd_job(kStream, job);
  ASSERT_EQ(wait_for_final_events(stack.redis, {"once"}, 20000)["once"].status, "delivered");
  EXPECT_EQ(stack.redis.command({"EXISTS", "deliverd:done:once"}), "1");

  // The same job again (a producer's duplicate, or a redelivery after a crash).
  stack.redis.xadd_job(kStream, job);
  ASSERT_TRUE(wait_until([&] { return d.metric("deliverd_duplicates_skipped_total") >= 1; }, 20000)) << d.log();
  EXPECT_TRUE(wait_until([&] { return stack.redis.xpending_count(kStream, kGroup) == 0; }, 10000));
  EXPECT_EQ(sink->message_count(), 1u);
  EXPECT_EQ(all_events(stack.redis).size(), 1u);
}

TEST(Reclaim, EntriesOfADeadConsumerAreTakenOverAndPoisonEntriesDeadLettered) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack([](DeliverdProcess::Options& o) { o.redis_extra = "claim_idle_s = 2\n"; });
  auto& r = stack.redis;
  r.command({"XGROUP", "CREATE", kStream, kGroup, "0", "MKSTREAM"});
  auto ids = job_ids("orphan-", 5);
  r.xadd_jobs(kStream, jobs_for(ids, "mbx"));
  // A consumer that takes the jobs and dies without acking them.
  r.command({"XREADGROUP", "GROUP", kGroup, "ghost", "COUNT", "5", "STREAMS", kStream, ">"});
  // A job that took three daemons down before: handed out three times already.
  std::string poison = r.xadd_job(kStream, make_job("poison", "acct_1", "mbx", "bob@example.org"));
  r.command({"XREADGROUP", "GROUP", kGroup, "ghost", "COUNT", "1", "STREAMS", kStream, ">"});
  r.command({"XCLAIM", kStream, kGroup, "ghost", "0", poison});
  r.command({"XCLAIM", kStream, kGroup, "ghost", "0", poison});

  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.start();
  auto finals = wait_for_final_events(r, ids, 30000);
  for (const auto& id : ids) EXPECT_EQ(finals[id].status, "delivered") << id << "\n" << d.log();
  ASSERT_TRUE(wait_until([&] { return r.xlen("deliverd:dead") == 1; }, 20000)) << d.log();
  auto dead = r.xrange("deliverd:dead");
  EXPECT_NE(dead[0].fields["reason"].find("4 times"), std::string::npos) << dead[0].fields["reason"];
  EXPECT_NE(dead[0].fields["job"].find("\"poison\""), std::string::npos);
  EXPECT_TRUE(wait_until([&] { return r.xpending_count(kStream, kGroup) == 0; }, 10000));
  EXPECT_EQ(sink->message_count(), 5u);
  EXPECT_GE(d.metric("deliverd_jobs_reclaimed_total"), 6);
}

TEST(Malformed, EveryKindOfBadEntryIsDeadLetteredWithAReason) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.start();
  auto& r = stack.redis;
  const std::string head = R"({"v":1,"id":"bad","account":"acct_1","mailbox":"mbx",)";
  // (payload, what the reason must mention)
  std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"v":1,"account":"acct_1","mailbox":"mbx","to":{"email":"b@example.org"},"subject":"s","text":"t"})", "id"},
      {head + R"("to":{"email":42},"subject":"s","text":"t"})", "to.email"},
      {head + R"("to":{"email":"b@example.org"},"subject":")" + std::string(5000, 'x') + R"(","text":"t"})", "subject"},
      {head + "\"to\":{\"email\":\"b@example.org\"},\"subject\":\"\xff\xfe\",\"text\":\"t\"}", "UTF-8"},
      {head + R"("to":{"email":"b@example.org"},"subject":"s","text":"t","headers":{"X-A":"a\r\nBcc: evil@example.net"}})",
       "headers.X-A"},
      {head + R"("to":{"email":"b@example.org"},"subject":"s","text":")" + std::string(11 * 1024 * 1024, 'a') + "\"}",
       "text"},
      {"not json at all", "job"},
  };
  for (const auto& c : cases) r.xadd_job(kStream, c.first);
  r.command({"XADD", kStream, "*", "payload", "wrong field name"});
  r.xadd_job(kStream, make_job("good", "acct_1", "mbx", "bob@example.org"));

  ASSERT_EQ(wait_for_final_events(r, {"good"}, 30000)["good"].status, "delivered") << d.log();
  ASSERT_TRUE(wait_until([&] { return r.xlen("deliverd:dead") == static_cast<long long>(cases.size() + 1); }, 20000));
  auto dead = r.xrange("deliverd:dead");
  for (size_t i = 0; i < cases.size(); ++i)
    EXPECT_NE(dead[i].fields["reason"].find(cases[i].second), std::string::npos)
        << "case " << i << ": reason \"" << dead[i].fields["reason"] << "\" does not name " << cases[i].second;
  EXPECT_NE(dead.back().fields["reason"].find("job"), std::string::npos);
  EXPECT_EQ(r.xpending_count(kStream, kGroup), 0);
  EXPECT_EQ(sink->message_count(), 1u);
  EXPECT_TRUE(d.running());
}

TEST(Shutdown, UnfinishedDeliveriesGoToTheRetrySetAtTheDrainBound) {
  auto slow = scripted(R"({"steps": {"DOT": {"reply": "250 2.0.0 ok", "delay_ms": 20000}}})");
  DaemonStack stack([](DeliverdProcess::Options& o) {
    o.shutdown_grace_s = 1;
    o.smtp_timeout_s = 60;
  });
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", slow->host(), kMailPort);
  d.start();
  auto ids = job_ids("slow-", 3);
  stack.redis.xadd_jobs(kStream, jobs_for(ids, "mbx"));
  ASSERT_TRUE(wait_until([&] { return stack.redis.xpending_count(kStream, kGroup) == 3; }, 10000));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
  EXPECT_EQ(stack.redis.integer({"ZCARD", "deliverd:retry"}), 3);
  EXPECT_EQ(stack.redis.xpending_count(kStream, kGroup), 0);
  for (const auto& ev : all_events(stack.redis)) EXPECT_EQ(ev.status, "deferred");
}

TEST(Fleet, TwoDaemonsShareOneGroupAndNeverSendAJobTwice) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack([](DeliverdProcess::Options& o) { o.consumer = "host-a"; });
  DeliverdProcess::Options ob;
  ob.redis_port = stack.redis.port();
  ob.pg_conninfo = stack.pg.conninfo();
  ob.consumer = "host-b";
  DeliverdProcess b(ob);
  auto& a = stack.daemon();
  a.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  a.start();
  b.start();
  auto ids = job_ids("fleet-", 2000);
  stack.redis.xadd_jobs(kStream, jobs_for(ids, "mbx"));
  wait_for_final_events(stack.redis, ids, 120000);
  expect_exactly_one_final(stack.redis, ids, "delivered");
  ASSERT_TRUE(sink->wait_for_messages(2000, 10000));
  auto counts = sink_counts(*sink);
  EXPECT_EQ(counts.size(), 2000u);
  for (const auto& [id, n] : counts) EXPECT_EQ(n, 1) << id;
  EXPECT_GT(a.metric("deliverd_jobs_consumed_total"), 0);
  EXPECT_GT(b.metric("deliverd_jobs_consumed_total"), 0);
  EXPECT_EQ(stack.redis.xpending_count(kStream, kGroup), 0);
}

TEST(Crash, KillNineWithFiveThousandJobsInFlightLosesNothing) {
  // A slow sink (each DATA answered after 1 s) keeps hundreds of sessions mid-transaction.
  SmtpSink::Options so = SmtpSink::Options::at_mail_port(kMailPort);
  so.extra_args = {"-w", "1"};
  auto sink = std::make_unique<SmtpSink>(so);
  const int kInflight = 400;
  DaemonStack stack([&](DeliverdProcess::Options& o) {
    o.max_inflight = kInflight;
    // After the kill the sink is still tearing down 400 dead sessions and greets new ones late:
    // that must not open the mailbox's breaker here (policy tests cover breakers).
    o.policy_toml += "breaker_failures = 1000\n";
    o.smtp_timeout_s = 30;
    // continues [smtp]; a session cut by the kill is retried after a second, not a minute
    o.extra_toml = "max_sessions_per_destination = 400\n[retry]\nschedule = [\"1s\"]\n";
  });
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  auto ids = job_ids("crash-", 5000);
  stack.redis.xadd_jobs(kStream, jobs_for(ids, "mbx"));
  d.start();
  ASSERT_TRUE(wait_until([&] { return stack.redis.xlen("deliverd:results") >= 1000; }, 60000)) << d.log();
  EXPECT_EQ(d.stop(SIGKILL), 128 + SIGKILL);
  const long long pending_at_kill = stack.redis.xpending_count(kStream, kGroup);
  EXPECT_GT(pending_at_kill, 0);

  // The same consumer name (the host name by default) comes back and takes its entries first.
  long long restarted = now_ms();
  d.start();
  wait_for_final_events(stack.redis, ids, 300000);
  std::map<std::string, int> deferrals;
  for (const auto& ev : all_events(stack.redis))
    if (ev.status == "deferred") deferrals[ev.reason + " " + ev.detail.substr(0, 60)]++;
  for (const auto& [why, n] : deferrals) std::cout << "deferred " << n << " x " << why << "\n";
  std::cout << "kill -9: all 5000 final " << (now_ms() - restarted) << " ms after the restart\n";
  expect_exactly_one_final(stack.redis, ids, "delivered");
  EXPECT_TRUE(wait_until([&] { return stack.redis.xpending_count(kStream, kGroup) == 0; }, 10000));
  ASSERT_TRUE(sink->wait_for_messages(5000, 10000));
  auto counts = sink_counts(*sink);
  EXPECT_EQ(counts.size(), 5000u);
  // Only a job whose 250 arrived in the instant before the kill, before its marker reached Redis,
  // can have been sent twice: at most the entries in flight at the kill.
  long long twice = 0;
  for (const auto& [id, n] : counts) {
    EXPECT_LE(n, 2) << id;
    twice += n - 1;
  }
  EXPECT_LE(twice, pending_at_kill);
  std::cout << "kill -9: " << pending_at_kill << " entries pending at the kill, " << twice
            << " messages sent twice (the crash window)\n";
}

TEST(RedisOutage, RestartingRedisMidRunLosesNothing) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.start();
  auto ids = job_ids("outage-", 3000);
  stack.redis.xadd_jobs(kStream, jobs_for(ids, "mbx"));
  ASSERT_TRUE(wait_until([&] { return stack.redis.xlen("deliverd:results") >= 300; }, 60000)) << d.log();
  stack.redis.restart(/*keep_data=*/true);
  wait_for_final_events(stack.redis, ids, 180000);
  expect_exactly_one_final(stack.redis, ids, "delivered");
  EXPECT_TRUE(wait_until([&] { return stack.redis.xpending_count(kStream, kGroup) == 0; }, 20000)) << d.log();
  EXPECT_TRUE(d.running());
  const std::string metrics = d.http_get("/metrics");
  EXPECT_NE(metrics.find("deliverd_redis_reconnects_total{conn=\"main\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("deliverd_redis_connected{conn=\"main\"} 1"), std::string::npos);
}

TEST(RedisTls, DeliversThroughRedissWithAnAclUserAndAPasswordFile) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  RedisServer redis(RedisServer::Options{{}, /*tls=*/true});
  redis.add_acl_user("deliverd", "pw-from-a-file");
  PostgresServer pg;
  TempDir dir("deliverd-redis-tls");
  write_file(dir.file("redis.pw"), "pw-from-a-file\n");
  DeliverdProcess::Options o;
  o.redis_url = "rediss://deliverd@127.0.0.1:" + std::to_string(redis.tls_port());
  o.redis_extra = "password_file = \"" + dir.file("redis.pw") + "\"\nca_file = \"" + redis.ca_file() + "\"\n";
  o.pg_conninfo = pg.conninfo();
  DeliverdProcess d(o);
  std::string out;
  ASSERT_EQ(d.cli({"migrate"}, &out), 0) << out;
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.start();
  auto ids = job_ids("tls-", 50);
  redis.xadd_jobs(kStream, jobs_for(ids, "mbx"));
  wait_for_final_events(redis, ids, 30000);
  expect_exactly_one_final(redis, ids, "delivered");
  EXPECT_EQ(redis.xpending_count(kStream, kGroup), 0);
  EXPECT_EQ(d.log().find("pw-from-a-file"), std::string::npos);  // the password is never logged
  EXPECT_NE(d.log().find("event=redis_connected conn=main tls=yes"), std::string::npos) << d.log();

  // A wrong CA or password is refused with its reason: redis_client_test covers those.
}
