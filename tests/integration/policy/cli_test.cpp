// `deliverd suppress add|remove|list` and the `mailbox add` policy flags, run as an operator
// would, against a real PostgreSQL.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "store/migrations.h"
#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/process.h"

namespace deliverd::policy {
namespace {

using deliverd::testing::PostgresServer;
using deliverd::testing::TempDir;

class PolicyCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("DELIVERD_BINARY");
    ASSERT_NE(bin, nullptr) << "DELIVERD_BINARY not set";
    binary_ = bin;
    ASSERT_TRUE(store::migrate(pg_.conninfo()).ok());
    testing::write_secret_file(dir_.path() + "/secret.key", std::string(64, 'a'));
    config_ = dir_.path() + "/deliverd.toml";
    testing::write_file(config_, "[redis]\nurl = \"redis://127.0.0.1:1\"\n[postgres]\nconninfo = \"" + pg_.conninfo() +
                                     "\"\n[admin]\nlisten = \"127.0.0.1:1\"\n[security]\nsecret_key_file = \"" +
                                     dir_.path() + "/secret.key\"\n");
  }

  int run(std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), binary_);
    return testing::run_command(args, out);
  }

  PostgresServer pg_;
  TempDir dir_{"deliverd-policy-cli"};
  std::string binary_, config_;
};

TEST_F(PolicyCli, SuppressAddListRemove) {
  std::string out;
  ASSERT_EQ(run({"suppress", "add", "--config", config_, "--account", "acct_1", "Bob+news@Example.ORG"}, &out), 0)
      << out;
  EXPECT_NE(out.find("Bob+news@example.org suppressed"), std::string::npos) << out;
  ASSERT_EQ(run({"suppress", "add", "--config", config_, "--account", "acct_1", "Bob+news@example.org"}, &out), 0);
  EXPECT_NE(out.find("already"), std::string::npos) << out;
  ASSERT_EQ(run({"suppress", "add", "--config", config_, "--account", "*", "--reason", "spamtrap", "trap@x.org"}, &out),
            0)
      << out;

  ASSERT_EQ(run({"suppress", "list", "--config", config_, "--account", "acct_1"}, &out), 0) << out;
  EXPECT_NE(out.find("Bob+news@example.org\tmanual\tcli\t"), std::string::npos) << out;
  EXPECT_EQ(out.find("trap@x.org"), std::string::npos) << "the global list is listed as account *";
  ASSERT_EQ(run({"suppress", "list", "--config", config_, "--account", "*"}, &out), 0) << out;
  EXPECT_NE(out.find("trap@x.org\tspamtrap"), std::string::npos) << out;

  ASSERT_EQ(run({"suppress", "remove", "--config", config_, "--account", "acct_1", "Bob+news@EXAMPLE.org"}, &out), 0)
      << out;
  EXPECT_EQ(run({"suppress", "remove", "--config", config_, "--account", "acct_1", "Bob+news@example.org"}, &out), 1)
      << out;
  ASSERT_EQ(run({"suppress", "list", "--config", config_, "--account", "acct_1"}, &out), 0);
  EXPECT_EQ(out.find("Bob"), std::string::npos) << out;

  EXPECT_EQ(run({"suppress", "add", "--config", config_, "--account", "acct_1", "not-an-address"}, &out), 2);
  EXPECT_NE(out.find("not an address"), std::string::npos) << out;
  EXPECT_EQ(run({"suppress", "add", "--config", config_, "bob@x.org"}, &out), 2);
  EXPECT_NE(out.find("--account is required"), std::string::npos) << out;
}

TEST_F(PolicyCli, MailboxAddStoresPolicyOverrides) {
  std::string out;
  std::vector<std::string> base = {"mailbox",     "add",
                                   "--config",    config_,
                                   "--id",        "mbx_1",
                                   "--account",   "acct_1",
                                   "--email",     "a@sender.example",
                                   "--smtp-host", "smtp.sender.example",
                                   "--smtp-port", "587"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  ASSERT_EQ(run(with({"--ramp-start", "10", "--ramp-step", "3", "--ramp-max", "60", "--warmup-start", "2026-11-01",
                      "--min-gap-s", "90", "--timezone", "Europe/Berlin"}),
                &out),
            0)
      << out;
  pg_.exec(
      "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM mailboxes WHERE id = 'mbx_1' AND ramp_start = 10 AND ramp_step = 3"
      " AND ramp_max = 60 AND warmup_start = '2026-11-01' AND min_gap_s = 90 AND per_hour IS NULL"
      " AND timezone = 'Europe/Berlin') THEN RAISE EXCEPTION 'overrides not stored'; END IF; END $$");

  EXPECT_EQ(run(with({"--warmup-start", "2026-02-30"}), &out), 2);
  EXPECT_NE(out.find("warmup_start"), std::string::npos) << out;
  EXPECT_EQ(run(with({"--ramp-max", "-1"}), &out), 2);
  EXPECT_NE(out.find("--ramp-max"), std::string::npos) << out;
  EXPECT_EQ(run(with({"--min-gap-s", "ten"}), &out), 2);
}

}  // namespace
}  // namespace deliverd::policy
