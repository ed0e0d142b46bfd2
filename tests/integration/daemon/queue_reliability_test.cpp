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
#include "tests/integration/fixtures/redis_sentinel.h"
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
                                  3, now - 60000, "rcpt_deferred", {451, "4.7.1", "greylisted"}, "acct_1"};
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

// A duplicate is not sent again, and (unlike before, when it was acked silently and a producer
// waited forever) it gets an event of its own: delivered, reason duplicate, the first time.
TEST(Idempotency, ADeliveredJobIsNeverSentAgain) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.start();
  std::string job = make_job("once", "acct_1", "mbx", "bob@example.org");
  stack.redis.xadd_job(kStream, job);
  ASSERT_EQ(wait_for_final_events(stack.redis, {"once"}, 20000)["once"].status, "delivered");
  // The marker is the account's: <prefix><length of account>:<account>:<job id>, holding the time.
  const std::string marker = stack.redis.command({"GET", "deliverd:done:6:acct_1:once"});
  EXPECT_GT(std::atoll(marker.c_str()), 1700000000000LL) << marker;
  EXPECT_EQ(stack.redis.command({"EXISTS", "deliverd:done:once"}), "0");

  // The same job again (a producer's duplicate, or a redelivery after a crash).
  stack.redis.xadd_job(kStream, job);
  ASSERT_TRUE(wait_until([&] { return d.metric("deliverd_duplicates_skipped_total") >= 1; }, 20000)) << d.log();
  EXPECT_TRUE(wait_until([&] { return stack.redis.xpending_count(kStream, kGroup) == 0; }, 10000));
  ASSERT_TRUE(wait_until([&] { return all_events(stack.redis).size() >= 2; }, 10000));
  EXPECT_EQ(sink->message_count(), 1u);
  auto events = all_events(stack.redis);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].reason, "delivered");  // the first, real delivery
  EXPECT_EQ(events[1].job_id, "once");
  EXPECT_EQ(events[1].status, "delivered");
  EXPECT_EQ(events[1].reason, "duplicate");
  EXPECT_NE(events[1].detail.find("already delivered at "), std::string::npos) << events[1].detail;
  EXPECT_EQ(events[1].first_delivered_at.size(), 24u) << events[1].first_delivered_at;  // RFC 3339, ms, Z
}

// Job ids are the producers', per account: another account's job with the same id is its own
// job (before, it was acked with no event at all, because the marker named the id alone).
TEST(Idempotency, TheSameJobIdFromTwoAccountsIsTwoJobs) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.add_mailbox("mbx", "acct_2", "carol@globex.example", sink->host(), kMailPort);
  d.start();
  stack.redis.xadd_job(kStream, make_job("inv-1", "acct_1", "mbx", "bob@example.org"));
  ASSERT_EQ(wait_for_final_events(stack.redis, {"inv-1"}, 20000)["inv-1"].status, "delivered") << d.log();
  stack.redis.xadd_job(kStream, make_job("inv-1", "acct_2", "mbx", "dave@example.org"));
  ASSERT_TRUE(wait_until([&] { return all_events(stack.redis).size() >= 2; }, 20000)) << d.log();
  auto events = all_events(stack.redis);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].account, "acct_1");
  EXPECT_EQ(events[1].account, "acct_2");
  EXPECT_EQ(events[1].status, "delivered");
  EXPECT_EQ(events[1].reason, "delivered") << "sent, not taken for acct_1's job: " << events[1].detail;
  ASSERT_TRUE(wait_until([&] { return sink->message_count() == 2; }, 10000));
  EXPECT_EQ(d.metric("deliverd_duplicates_skipped_total"), 0);
  EXPECT_EQ(stack.redis.command({"EXISTS", "deliverd:done:6:acct_2:inv-1"}), "1");
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

// ---- bounded growth --------------------------------------------------------------------------

namespace {

long long used_memory(RedisServer& redis) {
  // Redis's own slow log (up to 128 commands with their arguments) is not deliverd's state.
  redis.command({"SLOWLOG", "RESET"});
  const std::string info = redis.command({"INFO", "memory"});
  auto pos = info.find("used_memory:");
  return pos == std::string::npos ? -1 : std::atoll(info.c_str() + pos + 12);
}

// The idempotency markers of delivered jobs expire by design (max age + 1 day): a test that
// wants to see what else is left deletes them, as time would.
// The jobs' done markers, all of account acct_1 (the marker names the account, length first).
void delete_markers(RedisServer& redis, const std::vector<std::string>& ids) {
  for (size_t i = 0; i < ids.size(); i += 500) {
    std::vector<std::string> argv = {"DEL"};
    for (size_t k = i; k < std::min(ids.size(), i + 500); ++k) argv.push_back("deliverd:done:6:acct_1:" + ids[k]);
    const std::string deleted = redis.command(argv);
    EXPECT_EQ(deleted, std::to_string(argv.size() - 1)) << "every job left its marker under this key";
  }
}

}  // namespace

// The job stream holds only unfinished work: acked entries (and promoted copies) are deleted
// with their ack, so after a drained run Redis memory is back where it was.
TEST(BoundedGrowth, ADrainedRunLeavesTheJobStreamEmptyAndRedisMemoryWhereItStarted) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.start();
  const std::string html = ",\"html\":\"<p>" + std::string(2000, 'x') + "</p>\"";
  auto job_list = [&](const std::vector<std::string>& ids) {
    std::vector<std::string> out;
    for (const auto& id : ids) out.push_back(make_job(id, "acct_1", "mbx", id + "@example.org", html));
    return out;
  };
  // A warm-up, so scripts are loaded and per-mailbox keys exist before the first measurement.
  auto warm = job_ids("warm-", 20);
  stack.redis.xadd_jobs(kStream, job_list(warm));
  wait_for_final_events(stack.redis, warm, 30000);
  ASSERT_TRUE(wait_until([&] { return stack.redis.xlen(kStream) == 0; }, 10000));
  stack.redis.command({"XTRIM", "deliverd:results", "MAXLEN", "0"});
  const long long before = used_memory(stack.redis);

  auto ids = job_ids("drain-", 3000);
  long long max_len = 0, job_bytes = 0;
  for (const auto& j : job_list(ids)) job_bytes += static_cast<long long>(j.size());
  for (size_t wave = 0; wave < 10; ++wave) {
    std::vector<std::string> wave_ids(ids.begin() + static_cast<long>(wave * 300),
                                      ids.begin() + static_cast<long>((wave + 1) * 300));
    stack.redis.xadd_jobs(kStream, job_list(wave_ids));
    ASSERT_TRUE(wait_until([&] {
      max_len = std::max(max_len, stack.redis.xlen(kStream));
      return stack.redis.xlen("deliverd:results") >= static_cast<long long>((wave + 1) * 300 - 150);
    }, 60000)) << d.log();
  }
  wait_for_final_events(stack.redis, ids, 120000);
  expect_exactly_one_final(stack.redis, ids, "delivered");
  ASSERT_TRUE(wait_until([&] { return stack.redis.xlen(kStream) == 0; }, 10000)) << "acked entries are deleted";
  EXPECT_LE(max_len, 450) << "the stream held more than the waves not yet finished";
  EXPECT_EQ(stack.redis.xpending_count(kStream, kGroup), 0);

  // What stays by design: the results (the producer's to read and trim; the daemon trims them by
  // MAXLEN and age) and the markers (expiring). Without them, memory is where it started.
  stack.redis.command({"XTRIM", "deliverd:results", "MAXLEN", "0"});
  delete_markers(stack.redis, ids);
  const long long after = used_memory(stack.redis);
  std::cout << "redis used_memory: " << before << " before, " << after << " after 3000 jobs of " << job_bytes / 3000
            << " bytes (" << job_bytes << " bytes the stream would hold untrimmed)\n";
  EXPECT_LE(after, before + before / 10);
}

// Big input cannot wedge or bloat the daemon: reads that are too large shrink to one entry, and
// the bytes in hand are bounded whatever producers send.
TEST(BoundedGrowth, SixtyJobsOfNineMiBThenTwentySmallOnesAllFinishInBoundedMemory) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  const long long kInflightBytes = 64LL << 20;
  const long long kMaxJob = 19LL << 19;  // 9.5 MiB: every other big job is larger
  DaemonStack stack([&](DeliverdProcess::Options& o) {
    o.redis_extra = "max_inflight_bytes = " + std::to_string(kInflightBytes) + "\nmax_job_bytes = " +
                    std::to_string(kMaxJob) + "\n";
    o.smtp_timeout_s = 60;
  });
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.start();
  const long long rss_idle = d.rss_kb();
  auto big = job_ids("big-", 60), small = job_ids("small-", 20);
  // 9 MiB jobs (delivered), and 9.75 MiB ones above max_job_bytes (dead-lettered with their size).
  const std::string body = ",\"html\":\"" + std::string(9 << 20, 'b') + "\"";
  const std::string larger = ",\"html\":\"" + std::string(39 << 18, 'b') + "\"";
  std::vector<std::string> big_jobs;
  for (size_t i = 0; i < big.size(); ++i)
    big_jobs.push_back(make_job(big[i], "acct_1", "mbx", big[i] + "@example.org", i % 2 ? larger : body));
  stack.redis.xadd_jobs(kStream, big_jobs);
  big_jobs.clear();
  stack.redis.xadd_jobs(kStream, jobs_for(small, "mbx"));

  auto finals = wait_for_final_events(stack.redis, small, 300000);
  for (const auto& id : small) EXPECT_EQ(finals[id].status, "delivered") << id;
  // Every big one ends: delivered, or dead-lettered with its size named.
  std::set<std::string> dead;
  ASSERT_TRUE(wait_until([&] {
    auto events = events_by_job(stack.redis);
    dead.clear();
    for (const auto& e : stack.redis.xrange("deliverd:dead")) dead.insert(e.id);
    size_t ended = dead.size();
    for (const auto& id : big) ended += events.count(id) && events[id].status != "deferred";
    return ended == big.size();
  }, 300000)) << d.log().substr(0, 4000);
  EXPECT_EQ(dead.size(), big.size() / 2);
  for (const auto& e : stack.redis.xrange("deliverd:dead")) {
    EXPECT_NE(e.fields.at("reason").find("larger than [redis] max_job_bytes (" + std::to_string(kMaxJob) + ")"),
              std::string::npos)
        << e.fields.at("reason");
    EXPECT_EQ(e.fields.at("job").size(), 4096u) << "only the start of the job is kept";
  }
  EXPECT_TRUE(wait_until([&] { return stack.redis.xpending_count(kStream, kGroup) == 0; }, 20000));
  EXPECT_EQ(stack.redis.xlen(kStream), 0);
  const long long peak = d.peak_rss_kb();
  std::cout << "60 x 9 MiB: daemon RSS " << rss_idle / 1024 << " MiB idle, peak (VmHWM) " << peak / 1024
            << " MiB, with max_inflight_bytes " << (kInflightBytes >> 20) << " MiB; " << dead.size()
            << " dead-lettered\n";
  // 540 MiB of jobs went through; what the daemon held at once is bounded by max_inflight_bytes
  // (and the message each of those jobs became), not by the total.
  EXPECT_LT(peak - rss_idle, 8 * (kInflightBytes >> 10)) << "peak " << peak << " KiB";
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

// Redis at maxmemory refuses writes: no new send while its outcome cannot be recorded, a gauge
// and a log line say why, nothing is sent twice, and delivery resumes once memory is freed.
TEST(RedisRefusingWrites, AtMaxmemoryIntakeStopsAndResumesWithoutSendingTwice) {
  auto slow = scripted(R"({"steps": {"DOT": {"reply": "250 2.0.0 ok", "delay_ms": 300}}})");
  DaemonStack stack([](DeliverdProcess::Options& o) { o.max_inflight = 50; });
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", slow->host(), kMailPort);
  d.start();
  auto ids = job_ids("oom-", 300);
  stack.redis.xadd_jobs(kStream, jobs_for(ids, "mbx"));
  ASSERT_TRUE(wait_until([&] { return stack.redis.xlen("deliverd:results") >= 20; }, 60000)) << d.log();
  // Redis is full: every write that could grow it is refused from now on.
  stack.redis.command({"CONFIG", "SET", "maxmemory", std::to_string(used_memory(stack.redis) - 1024)});
  ASSERT_TRUE(wait_until([&] { return d.metric("deliverd_redis_writes_refused{reason=\"oom\"}") == 1; }, 30000))
      << d.log();
  EXPECT_NE(d.log().find("event=redis_writes_refused reason=oom"), std::string::npos);
  // Transactions that were under way finish; after that nothing more is sent or read.
  ASSERT_TRUE(wait_until([&] {
    const size_t n = slow->message_count();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // longer than one DATA reply
    return slow->message_count() == n;
  }, 30000));
  const size_t sent_while_full = slow->message_count();
  const double consumed = d.metric("deliverd_jobs_consumed_total");
  const double retries = d.metric("deliverd_redis_write_retries_total");
  // Outcomes in hand keep being retried meanwhile: wait for several more rounds of retries.
  ASSERT_TRUE(wait_until([&] { return d.metric("deliverd_redis_write_retries_total") >= retries + 20; }, 60000));
  EXPECT_EQ(slow->message_count(), sent_while_full) << "a message was sent while Redis refused writes";
  EXPECT_EQ(d.metric("deliverd_jobs_consumed_total"), consumed) << "intake did not stop";
  EXPECT_LT(sent_while_full, ids.size());

  stack.redis.command({"CONFIG", "SET", "maxmemory", "0"});
  wait_for_final_events(stack.redis, ids, 120000);
  expect_exactly_one_final(stack.redis, ids, "delivered");
  EXPECT_EQ(d.metric("deliverd_redis_writes_refused{reason=\"oom\"}"), 0);
  EXPECT_NE(d.log().find("event=redis_writes_accepted reason=oom"), std::string::npos);
  // Nothing was sent twice: every job reached the server exactly once.
  std::map<std::string, int> per_job;
  for (const auto& m : slow->messages()) {
    auto pos = m.find("Subject: Hello ");
    if (pos != std::string::npos) per_job[m.substr(pos + 15, m.find_first_of("\r\n", pos) - pos - 15)]++;
  }
  EXPECT_EQ(per_job.size(), ids.size());
  for (const auto& [id, n] : per_job) EXPECT_EQ(n, 1) << id;
  EXPECT_TRUE(wait_until([&] { return stack.redis.xpending_count(kStream, kGroup) == 0; }, 20000));
}

// ---- Redis failover ----------------------------------------------------------------------

// A real primary, a replica and three sentinels; the primary is killed mid-run. The daemon finds
// the new primary through the sentinels: nothing is lost, and a job is sent twice only if its
// outcome was written to the old primary in the moment before it died and never reached the
// replica (docs/redis.md "Failover").
TEST(Failover, KillingThePrimaryMidRunLosesNothing) {
  using deliverd::testing::RedisSentinel;
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
  RedisServer primary;
  RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(primary.port())});
  RedisSentinel::Options so;
  so.master_port = primary.port();
  so.quorum = 2;
  so.down_after_ms = 1000;
  so.failover_timeout_ms = 5000;
  std::vector<std::unique_ptr<RedisSentinel>> sentinels;
  std::string list;
  for (int i = 0; i < 3; ++i) {
    sentinels.push_back(std::make_unique<RedisSentinel>(so));
    list += (i ? ", \"" : "\"") + sentinels.back()->address() + "\"";
  }
  // Every sentinel knows the replica and the two others before anything fails.
  ASSERT_TRUE(wait_until([&] {
    for (auto& s : sentinels) {
      const std::string m = s->command({"SENTINEL", "master", "mymaster"});
      if (m.find("num-slaves, 1") == std::string::npos || m.find("num-other-sentinels, 2") == std::string::npos)
        return false;
    }
    return true;
  }, 30000)) << sentinels[0]->command({"SENTINEL", "master", "mymaster"});

  PostgresServer pg;
  DeliverdProcess::Options o;
  o.redis_url = "redis://127.0.0.1:1";  // host and port come from the sentinels
  o.redis_extra = "sentinels = [" + list + "]\nsentinel_master = \"mymaster\"\n";
  o.pg_conninfo = pg.conninfo();
  o.max_inflight = 100;
  DeliverdProcess d(o);
  std::string out;
  ASSERT_EQ(d.cli({"migrate"}, &out), 0) << out;
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), kMailPort);
  d.start();
  // Enough that the run is still going when the primary dies (a 2,000-job run could finish first).
  auto ids = job_ids("failover-", 10000);
  primary.xadd_jobs(kStream, jobs_for(ids, "mbx"));
  // The jobs themselves are safe on the replica before the primary goes (a producer's concern).
  ASSERT_EQ(primary.command({"WAIT", "1", "10000"}), "1");
  ASSERT_TRUE(wait_until([&] { return primary.xlen("deliverd:results") >= 400; }, 60000)) << d.log();
  const long long pending_at_kill = primary.xpending_count(kStream, kGroup);
  primary.kill();
  const long long killed = now_ms();
  ASSERT_TRUE(wait_until([&] { return sentinels[0]->primary_port() == replica.port(); }, 60000))
      << sentinels[0]->log();

  wait_for_final_events(replica, ids, 120000);
  std::cout << "failover: all 10000 final " << now_ms() - killed << " ms after the kill\n";
  expect_exactly_one_final(replica, ids, "delivered");
  EXPECT_TRUE(wait_until([&] { return replica.xpending_count(kStream, kGroup) == 0; }, 20000)) << d.log();
  EXPECT_EQ(replica.xlen(kStream), 0);
  ASSERT_TRUE(sink->wait_for_messages(10000, 20000));
  auto counts = sink_counts(*sink);
  EXPECT_EQ(counts.size(), 10000u) << "nothing lost";
  long long twice = 0;
  for (const auto& [id, n] : counts) {
    EXPECT_LE(n, 2) << id;
    twice += n - 1;
  }
  // At most what was in flight (pending) when the primary died can have been sent twice.
  EXPECT_LE(twice, std::max<long long>(pending_at_kill, o.max_inflight));
  std::cout << "failover: " << pending_at_kill << " pending at the kill, " << twice << " sent twice\n";
  const std::string followed = "event=redis_primary conn=main primary=127.0.0.1:" + std::to_string(replica.port());
  EXPECT_TRUE(wait_until([&] { return d.log().find(followed) != std::string::npos; }, 30000)) << d.log();
  EXPECT_GT(pending_at_kill, 0) << "the primary died mid-run";
  EXPECT_EQ(d.stop(SIGTERM), 0);
}
