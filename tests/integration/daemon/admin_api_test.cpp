// The /v1 admin API as the daemon serves it: a key bootstrapped with `deliverd key create`,
// a mailbox read back with today's count, limit and breaker state from the policy gate, and a
// job injected over HTTP delivered like one from the stream.
#include <gtest/gtest.h>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/smtp_sink.h"

using namespace deliverd::testing;

TEST(DaemonAdminApi, KeyFromTheCommandLineReadsMailboxesAndInjectsJobs) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(2525));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx", "acct_1", "alice@acme.example", sink->host(), 2525);
  std::string out;
  ASSERT_EQ(d.cli({"key", "create", "--role", "owner"}, &out), 0) << out;
  auto pos = out.find("dlv_");
  ASSERT_NE(pos, std::string::npos) << out;
  std::string token = out.substr(pos, out.find_first_of(" \n", pos) - pos);
  d.start();
  const std::string base = "http://127.0.0.1:" + std::to_string(d.admin_port());

  std::string job = make_job("api-1", "acct_1", "mbx", "bob@example.org");
  std::string injected = curl("POST", base + "/v1/messages", token, job);
  EXPECT_EQ(wait_for_final_events(stack.redis, {"api-1"}, 30000)["api-1"].status, "delivered") << injected;

  std::string mbx = curl("GET", base + "/v1/mailboxes/mbx", token);
  EXPECT_NE(mbx.find("\"today\":{\"sent\":1,"), std::string::npos) << mbx;
  EXPECT_NE(mbx.find("\"breaker\":\"closed\""), std::string::npos) << mbx;
  EXPECT_EQ(mbx.find("password\":\""), std::string::npos) << "a secret came back: " << mbx;
  EXPECT_NE(curl("GET", base + "/v1/mailboxes/mbx", "dlv_wrong").find("\"error\""), std::string::npos);

  // The breaker series names the tenant: the open /metrics leaves it out, the owner's key sees it.
  const std::string series = "deliverd_policy_breaker_state{account=\"acct_1\",mailbox=\"mbx\"}";
  EXPECT_EQ(d.http_get("/metrics").find("deliverd_policy_breaker_state{"), std::string::npos);
  EXPECT_NE(curl("GET", base + "/metrics", token).find(series), std::string::npos);
  EXPECT_NE(curl("GET", base + "/v1/metrics", token).find(series), std::string::npos);
}

// Policy state written before mailbox ids were per account (deliverd:mbx:<id>:…) is moved to the
// per-account keys before the first job is admitted, so no warm-up starts again from day 0.
TEST(DaemonAdminApi, PolicyStateUnderTheOldKeysIsMovedToTheAccountsKeys) {
  auto sink = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(2525));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx:7", "acct_1", "alice@acme.example", sink->host(), 2525);
  stack.redis.command({"SET", "deliverd:mbx:mbx:7:warmup", "19000"});
  stack.redis.command({"SET", "deliverd:mbx:mbx:7:day:21000", "4"});
  stack.redis.command({"HSET", "deliverd:mbx:mbx:7:state", "state", "open", "open_until", "1"});
  stack.redis.command({"SET", "deliverd:mbx:gone:warmup", "19000"});  // no such mailbox: left to expire
  d.start();
  EXPECT_EQ(stack.redis.command({"GET", "deliverd:acct:6:acct_1:mbx:mbx:7:warmup"}), "19000");
  EXPECT_EQ(stack.redis.command({"GET", "deliverd:acct:6:acct_1:mbx:mbx:7:day:21000"}), "4");
  EXPECT_EQ(stack.redis.command({"HGET", "deliverd:acct:6:acct_1:mbx:mbx:7:state", "state"}), "open");
  EXPECT_EQ(stack.redis.integer({"EXISTS", "deliverd:mbx:mbx:7:warmup"}), 0);
  EXPECT_EQ(stack.redis.integer({"EXISTS", "deliverd:mbx:gone:warmup"}), 1);
  EXPECT_NE(d.log().find("event=policy_keys_upgraded renamed=3"), std::string::npos) << d.log();
}
