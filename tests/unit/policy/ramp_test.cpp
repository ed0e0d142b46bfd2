#include "policy/ramp.h"

#include <gtest/gtest.h>

namespace deliverd::policy {
namespace {

TEST(Ramp, DayLimitFollowsStartPlusStepUpToMax) {
  EXPECT_EQ(day_limit(5, 2, 40, 0), 5);
  EXPECT_EQ(day_limit(5, 2, 40, 1), 7);
  EXPECT_EQ(day_limit(5, 2, 40, 17), 39);
  EXPECT_EQ(day_limit(5, 2, 40, 18), 40);
  EXPECT_EQ(day_limit(5, 2, 40, 365), 40);
}

TEST(Ramp, NothingBeforeTheWarmupStarts) {
  EXPECT_EQ(day_limit(5, 2, 40, -1), 0);
  EXPECT_EQ(day_limit(5, 2, 40, -1000), 0);
}

TEST(Ramp, HugeDayNumbersDoNotOverflow) {
  EXPECT_EQ(day_limit(5, 1000000, 40, 1LL << 50), 40);
  EXPECT_EQ(day_limit(0, 0, 40, 1LL << 50), 0);
  EXPECT_EQ(day_limit(50, 2, 40, 0), 40) << "start above max is capped";
}

TEST(Ramp, CivilDatesRoundTrip) {
  EXPECT_EQ(days_from_civil(1970, 1, 1), 0);
  EXPECT_EQ(days_from_civil(2000, 3, 1), 11017);
  EXPECT_EQ(days_from_civil(1969, 12, 31), -1);
  for (int64_t d = -800000; d < 800000; d += 997) {
    CivilDate c = civil_from_days(d);
    EXPECT_EQ(days_from_civil(c.year, c.month, c.day), d);
  }
}

TEST(Ramp, WeekdaysStartOnMonday) {
  EXPECT_EQ(weekday_from_days(0), 3);                          // 1970-01-01 Thursday
  EXPECT_EQ(weekday_from_days(*parse_date("2026-11-30")), 0);  // Monday
  EXPECT_EQ(weekday_from_days(*parse_date("2026-11-29")), 6);  // Sunday
  EXPECT_EQ(weekday_from_days(-1), 2);
}

TEST(Ramp, ParseDateRefusesWhatIsNotADate) {
  EXPECT_EQ(parse_date("2026-11-29"), days_from_civil(2026, 11, 29));
  EXPECT_EQ(parse_date("2024-02-29"), days_from_civil(2024, 2, 29));
  EXPECT_FALSE(parse_date("2026-02-29"));
  EXPECT_FALSE(parse_date("2026-13-01"));
  EXPECT_FALSE(parse_date("2026-1-01"));
  EXPECT_FALSE(parse_date("26-11-29xx"));
  EXPECT_FALSE(parse_date("2026/11/29"));
  EXPECT_FALSE(parse_date(""));
}

}  // namespace
}  // namespace deliverd::policy
