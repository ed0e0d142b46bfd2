// Issue 9: SIGHUP under load applies a changed limit without losing a job or dropping a session;
// a broken file on SIGHUP is refused and the daemon goes on as before.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <thread>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/smtp_sink.h"

using namespace deliverd::testing;

namespace {

bool wait_for_log(DeliverdProcess& d, const std::string& needle, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  while (d.log().find(needle) == std::string::npos) {
    if (now_ms() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace

TEST(Reload, SighupUnderLoadAppliesTheNewLimitAndLosesNothing) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(2525));
  DaemonStack stack([](DeliverdProcess::Options& o) { o.max_inflight = 200; });
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), 2525);
  d.start();
  const int kJobs = 20000;
  std::vector<std::string> ids, jobs;
  for (int i = 0; i < kJobs; ++i) {
    ids.push_back("reload-" + std::to_string(i));
    jobs.push_back(make_job(ids.back(), "acct_1", "mbx", "r" + std::to_string(i) + "@example.org"));
  }
  stack.redis.xadd_jobs("deliverd:jobs", jobs);
  ASSERT_TRUE([&] {
    long long deadline = now_ms() + 60000;
    while (stack.redis.xlen("deliverd:results") < 2000)
      if (now_ms() > deadline) return false;
      else std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return true;
  }()) << d.log();

  // A broken file first: refused, and the daemon carries on with what it had.
  const std::string good = read_file(d.config_path());
  write_file(d.config_path(), good + "\n[redis\nthis is not TOML\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "event=reload_refused", 10000)) << d.log();
  EXPECT_TRUE(d.running());

  // Then a valid change of the in-flight limit: 200 → 7, under load.
  write_file(d.config_path(), good);
  ASSERT_TRUE(replace_in_file(d.config_path(), "max_inflight = 200", "max_inflight = 7")) << read_file(d.config_path());
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "event=reloaded", 10000)) << d.log();
  // Entries handed out before the reload drain away (waited for, not slept on); from then on at
  // most 7 are held. Every sample counts only if jobs were still left when it was taken, and
  // there must be several: a run whose jobs all finished first fails instead of passing.
  ASSERT_TRUE([&] {
    long long deadline = now_ms() + 120000;
    while (stack.redis.xpending_count("deliverd:jobs", "deliverd") > 7)
      if (now_ms() > deadline)
        return false;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return true;
  }()) << "the entries read before the reload never drained";
  long long max_pending = 0;
  int samples = 0;
  for (int i = 0; i < 200; ++i) {
    const long long pending = stack.redis.xpending_count("deliverd:jobs", "deliverd");
    if (stack.redis.xlen("deliverd:results") >= kJobs) break;
    max_pending = std::max(max_pending, pending);
    ++samples;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(samples, 5) << "the jobs finished before the new limit could be watched";
  EXPECT_LE(max_pending, 7);

  auto finals = wait_for_final_events(stack.redis, ids, 600000);
  size_t delivered = 0;
  for (const auto& id : ids) delivered += finals.count(id) && finals[id].status == "delivered";
  EXPECT_EQ(delivered, static_cast<size_t>(kJobs));
  // No session was dropped: a dropped one would have left a deferred event behind.
  for (const auto& ev : all_events(stack.redis)) ASSERT_EQ(ev.status, "delivered") << ev.job_id << " " << ev.reason;
  EXPECT_EQ(static_cast<long long>(all_events(stack.redis).size()), kJobs);
  EXPECT_TRUE(sink->wait_for_messages(kJobs, 20000));
  EXPECT_EQ(stack.redis.xpending_count("deliverd:jobs", "deliverd"), 0);
  EXPECT_EQ(d.stop(SIGTERM), 0);
}
