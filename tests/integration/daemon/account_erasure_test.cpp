// Account erasure as the daemon does it, with the account's jobs in every place Redis keeps
// them: retry-set members, results events and dead letters of two accounts, three of the erased
// account's jobs in flight against a slow server and two more queued after the erasure. After
// it, nothing of the erased account's recipients is left in Redis, PostgreSQL or the log; its
// jobs ended rejected/account_erased; the other account's entries and deliveries are untouched.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/smtp_sink.h"

using namespace deliverd::testing;

namespace {

constexpr int kMailPort = 2525;

bool eventually(const std::function<bool()>& pred, int timeout_ms = 30000) {
  const long long deadline = now_ms() + timeout_ms;
  while (!pred()) {
    if (now_ms() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// A retry-set member in the JSON form of versions before the r2 header (the job text escaped
// inside): members left by an upgrade are erased too.
std::string retry_member(const std::string& job) {
  std::string escaped;
  for (char c : job) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  return R"({"job":")" + escaped + R"(","attempt":"2","first_seen":")" + std::to_string(now_ms()) +
         R"(","last":"rcpt_deferred"})";
}

int count_containing(const std::vector<RedisServer::Entry>& entries, const std::string& needle) {
  int n = 0;
  for (const auto& e : entries)
    for (const auto& [f, v] : e.fields) n += v.find(needle) != std::string::npos;
  return n;
}

}  // namespace

TEST(AccountErasure, ReachesTheRetrySetTheStreamsAndTheJobsStillQueuedOrInFlight) {
  SmtpSink::Options slow_opts = SmtpSink::Options::at_mail_port(kMailPort);
  slow_opts.extra_args = {"-w", "5"};  // five seconds before each DATA reply: A's jobs stay in flight
  SmtpSink slow(slow_opts);
  SmtpSink fast(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  RedisServer& redis = stack.redis;
  DeliverdProcess& d = stack.daemon();
  d.add_mailbox("mbx_a", "acct_a", "alice@a.example", slow.host(), kMailPort);
  d.add_mailbox("mbx_b", "acct_b", "bert@b.example", fast.host(), kMailPort);
  std::string out;
  ASSERT_EQ(d.cli({"key", "create", "--role", "owner"}, &out), 0) << out;
  const size_t pos = out.find("dlv_");
  ASSERT_NE(pos, std::string::npos) << out;
  const std::string token = out.substr(pos, out.find_first_of(" \n", pos) - pos);

  // Both accounts' state from before: deferred jobs not yet due, events, dead letters. Every
  // recipient of acct_a is someone.a@…, so a search for ".a@" finds what is left of them.
  const std::string later = "9999999999999";  // due centuries from now: nothing promotes them
  for (int i = 0; i < 4; ++i) {
    const std::string n = std::to_string(i);
    for (const std::string acct : {"acct_a", "acct_b"}) {
      const std::string who = acct == "acct_a" ? "carol" + n + ".a@x.example" : "dan" + n + ".b@x.example";
      const std::string job = make_job("old-" + acct + "-" + n, acct, acct == "acct_a" ? "mbx_a" : "mbx_b", who);
      redis.command({"ZADD", "deliverd:retry", later, retry_member(job)});
      redis.command({"XADD", "deliverd:results", "*", "event",
                     R"({"v":1,"job_id":"old-)" + acct + "-" + n + R"(","account":")" + acct + R"(","to":")" + who +
                         R"(","status":"deferred","phase":"rcpt","reason":"rcpt_deferred","detail":"",)"
                         R"("reply":{"code":451,"enhanced":"4.2.0","text":"later"},"attempt":1})"});
      redis.command({"XADD", "deliverd:dead", "*", "job", job, "reason", "subject: too long"});
    }
  }
  d.start();

  std::vector<std::string> in_flight;
  for (int i = 0; i < 3; ++i) {
    in_flight.push_back("a-flight-" + std::to_string(i));
    redis.xadd_job("deliverd:jobs", make_job(in_flight.back(), "acct_a", "mbx_a", "erin" + std::to_string(i) + ".a@x.example"));
  }
  ASSERT_TRUE(eventually([&] { return d.metric("deliverd_queue_inflight") >= 3; })) << d.log();

  const std::string erased = curl("DELETE", "http://127.0.0.1:" + std::to_string(d.admin_port()) + "/v1/accounts/acct_a", token);
  EXPECT_NE(erased.find(R"("mailboxes":1,)"), std::string::npos) << erased;
  EXPECT_NE(erased.find(R"("retry_members":4,"results_entries":4,"dead_letters":4})"), std::string::npos) << erased;

  std::vector<std::string> queued, b_jobs;
  for (int i = 0; i < 2; ++i) {
    queued.push_back("a-queued-" + std::to_string(i));
    redis.xadd_job("deliverd:jobs", make_job(queued.back(), "acct_a", "mbx_a", "fred" + std::to_string(i) + ".a@x.example"));
    b_jobs.push_back("b-" + std::to_string(i));
    redis.xadd_job("deliverd:jobs", make_job(b_jobs.back(), "acct_b", "mbx_b", "gus" + std::to_string(i) + ".b@x.example"));
  }
  std::vector<std::string> all = in_flight;
  all.insert(all.end(), queued.begin(), queued.end());
  all.insert(all.end(), b_jobs.begin(), b_jobs.end());
  auto finals = wait_for_final_events(redis, all, 60000);
  for (const auto& id : in_flight) {
    EXPECT_EQ(finals[id].status, "rejected") << id;
    EXPECT_EQ(finals[id].reason, "account_erased") << id;
  }
  for (const auto& id : queued) {
    EXPECT_EQ(finals[id].status, "rejected") << id;
    EXPECT_EQ(finals[id].reason, "account_erased") << id;
  }
  for (const auto& id : b_jobs) EXPECT_EQ(finals[id].status, "delivered") << id;

  // Redis: nothing of acct_a's recipients; all of acct_b's entries.
  const std::string members = redis.command({"ZRANGE", "deliverd:retry", "0", "-1"});
  EXPECT_EQ(members.find(".a@"), std::string::npos) << members;
  EXPECT_EQ(redis.integer({"ZCARD", "deliverd:retry"}), 4);
  const auto results = redis.xrange("deliverd:results");
  const auto dead = redis.xrange("deliverd:dead");
  EXPECT_EQ(count_containing(results, ".a@"), 0);
  EXPECT_EQ(count_containing(dead, ".a@"), 0);
  EXPECT_EQ(count_containing(results, R"("to":"dan)"), 4);
  EXPECT_EQ(redis.xlen("deliverd:dead"), 4);
  EXPECT_EQ(count_containing(results, R"("account":"acct_a")"), 5) << "one event per job of acct_a, none older";
  EXPECT_GT(redis.integer({"PTTL", "deliverd:erased:acct_a"}), 0);

  // PostgreSQL: acct_b's deliveries are recorded (the rows of both accounts go in the same
  // batches), and acct_a's jobs after the erasure are there without an address.
  ASSERT_TRUE(eventually([&] {
    return stack.pg.scalar("SELECT count(*) FROM delivery_events WHERE account = 'acct_b' AND status = 'delivered'") == "2" &&
           stack.pg.scalar("SELECT count(*) FROM delivery_events WHERE account = 'acct_a'") != "0";
  }));
  EXPECT_EQ(stack.pg.scalar("SELECT count(*) FROM delivery_events WHERE account = 'acct_a' AND (recipient IS NOT NULL"
                            " OR recipient_sha256 IS NOT NULL OR reply_text IS NOT NULL OR status <> 'rejected')"),
            "0");
  EXPECT_EQ(stack.pg.scalar("SELECT count(*) FROM delivery_events WHERE concat_ws(' ', recipient, reply_text, detail)"
                            " LIKE '%.a@%'"),
            "0");
  EXPECT_EQ(stack.pg.scalar("SELECT count(*) FROM suppressions WHERE address LIKE '%.a@%'"), "0");
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
  EXPECT_EQ(d.log().find(".a@"), std::string::npos) << d.log();
}
