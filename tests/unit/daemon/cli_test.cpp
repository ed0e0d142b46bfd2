#include "daemon/cli.h"

#include <gtest/gtest.h>

using namespace deliverd::daemon;

namespace {
const std::vector<OptionSpec> kSpecs = {{"config", true, "file"}, {"help", false, "help"}};
}

TEST(Cli, ParsesValueOptionsInBothSpellings) {
  auto a = parse_args({"--config", "a.toml"}, kSpecs);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->get("config"), "a.toml");
  auto b = parse_args({"--config=b.toml", "--help"}, kSpecs);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->get("config"), "b.toml");
  EXPECT_TRUE(b->has("help"));
}

TEST(Cli, ErrorsNameTheArgument) {
  EXPECT_EQ(parse_args({"--confg", "x"}, kSpecs).error(), "unknown option --confg");
  EXPECT_EQ(parse_args({"--config"}, kSpecs).error(), "option --config needs a value");
  EXPECT_EQ(parse_args({"stray"}, kSpecs).error(), "unexpected argument \"stray\"");
  EXPECT_EQ(parse_args({"--help=1"}, kSpecs).error(), "option --help takes no value");
}
