#include "core/log.h"

#include <gtest/gtest.h>

using namespace deliverd::core;

TEST(Log, ParsesLevelNames) {
  LogLevel l;
  ASSERT_TRUE(parse_log_level("warn", l));
  EXPECT_EQ(l, LogLevel::Warn);
  EXPECT_FALSE(parse_log_level("loud", l));
}

TEST(Log, OneEventIsOneLineEvenWithNewlinesInValues) {
  testing::internal::CaptureStderr();
  log_info("reply", {{"text", "line1\nline2"}, {"plain", "ok"}});
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out, "level=info event=reply text=\"line1\\nline2\" plain=ok\n");
}
