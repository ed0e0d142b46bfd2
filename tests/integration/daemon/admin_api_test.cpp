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
}
