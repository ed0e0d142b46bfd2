#include "policy/policy_config.h"

#include <gtest/gtest.h>

#include "policy/ramp.h"

namespace deliverd::policy {
namespace {

TEST(PolicyConfig, DefaultsAreDesignMdsAndValid) {
  PolicyConfig c;
  EXPECT_EQ(c.ramp_start, 5);
  EXPECT_EQ(c.ramp_step, 2);
  EXPECT_EQ(c.ramp_max, 40);
  EXPECT_EQ(c.breaker_failures, 5);
  EXPECT_EQ(c.breaker_open_minutes, (std::vector<int>{1, 5, 15, 60}));
  EXPECT_EQ(c.auth_disable_after, 10);
  EXPECT_EQ(c.bounce_window, 50);
  EXPECT_DOUBLE_EQ(c.bounce_rate, 0.05);
  EXPECT_TRUE(validate(c).ok());
}

TEST(PolicyConfig, BadValuesNameTheKey) {
  PolicyConfig c;
  c.breaker_open_minutes.clear();
  auto r = validate(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("breaker_open_minutes"), std::string::npos);
  c = PolicyConfig{};
  c.bounce_rate = 1.5;
  EXPECT_FALSE(validate(c).ok());
}

TEST(PolicyConfig, MailboxOverridesWin) {
  PolicyConfig c;
  store::Mailbox m;
  MailboxPolicy p = effective_policy(c, m);
  EXPECT_EQ(p.ramp_start, 5);
  EXPECT_FALSE(p.warmup_day);
  m.ramp_start = 10;
  m.ramp_max = 100;
  m.min_gap_s = 5;
  m.warmup_start = "2026-11-01";
  m.window_days = 31;
  p = effective_policy(c, m);
  EXPECT_EQ(p.ramp_start, 10);
  EXPECT_EQ(p.ramp_step, 2);
  EXPECT_EQ(p.ramp_max, 100);
  EXPECT_EQ(p.min_gap_s, 5);
  EXPECT_EQ(p.warmup_day, parse_date("2026-11-01"));
  EXPECT_EQ(p.window_days, 31);
}

}  // namespace
}  // namespace deliverd::policy
