#include "daemon/config.h"

#include <gtest/gtest.h>

#include "tests/integration/fixtures/process.h"

using deliverd::daemon::load_config;
using deliverd::testing::TempDir;
using deliverd::testing::write_file;

namespace {
std::string load_error(const std::string& toml) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), toml);
  auto r = load_config(dir.file("d.toml"));
  if (r) return "";
  // Strip the temp dir so expectations read cleanly.
  std::string e = r.error();
  return e.substr(e.find("d.toml"));
}
const std::string kMinimal = "[security]\nsecret_key_file = \"/k\"\n";
}  // namespace

TEST(Config, MinimalFileLoadsWithDefaults) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal);
  auto r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->stream, "deliverd:jobs");
  EXPECT_EQ(r->group, "deliverd");
  EXPECT_EQ(r->admin_listen, "127.0.0.1:8025");
  EXPECT_TRUE(r->allow_private_targets.empty());
  EXPECT_EQ(r->consumer, r->hostname);
}

TEST(Config, ExampleConfigInTreeIsValid) {
  const char* src = std::getenv("DELIVERD_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  auto r = load_config(std::string(src) + "/conf/deliverd.toml");
  EXPECT_TRUE(r) << r.error();
}

TEST(Config, WrongTypeNamesFileLineTableAndKey) {
  EXPECT_EQ(load_error(kMinimal + "[redis]\nstream = \"s\"\nmax_inflight = \"many\"\n"),
            "d.toml:5: [redis] max_inflight: must be an integer");
}

TEST(Config, OutOfRangeValueSaysTheRange) {
  EXPECT_EQ(load_error(kMinimal + "[redis]\nmax_inflight = 0\n"),
            "d.toml:4: [redis] max_inflight: must be between 1 and 100000");
}

TEST(Config, UnknownKeyIsAnError) {
  EXPECT_EQ(load_error(kMinimal + "[admin]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n"), "d.toml:5: [admin] lisen: unknown key");
}

TEST(Config, UnknownTableIsAnError) {
  EXPECT_EQ(load_error(kMinimal + "[redsi]\nurl = \"redis://x\"\n"), "d.toml:3: [redsi]: unknown table");
}

TEST(Config, SyntaxErrorNamesTheLine) {
  std::string e = load_error(kMinimal + "[redis\n");
  EXPECT_EQ(e.rfind("d.toml:3: ", 0), 0u) << e;
}

TEST(Config, MissingSecretKeyFileIsRequired) {
  std::string e = load_error("[daemon]\nlog_level = \"info\"\n");
  EXPECT_NE(e.find("[security] secret_key_file: is required"), std::string::npos) << e;
}

TEST(Config, BadLogLevelIsRefused) {
  EXPECT_EQ(load_error(kMinimal + "[daemon]\nlog_level = \"loud\"\n"),
            "d.toml:4: [daemon] log_level: must be debug, info, warn or error");
}

TEST(Config, AllowListMustBeStrings) {
  EXPECT_EQ(load_error("[security]\nsecret_key_file = \"/k\"\nallow_private_targets = [1]\n"),
            "d.toml:3: [security] allow_private_targets: must be a list of strings");
}
