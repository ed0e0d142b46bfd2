#include "policy/time_zone.h"

#include <gtest/gtest.h>

#include "policy/ramp.h"

namespace deliverd::policy {
namespace {

constexpr int64_t kHour = 3'600'000;

int64_t utc_ms(int y, unsigned m, unsigned d, int h = 0, int min = 0) {
  return (days_from_civil(y, m, d) * 86400 + h * 3600 + min * 60) * 1000LL;
}

TEST(TimeZone, BerlinHasWinterAndSummerOffsets) {
  auto z = TimeZone::load("/usr/share/zoneinfo", "Europe/Berlin");
  ASSERT_TRUE(z.ok()) << z.error();
  EXPECT_EQ(z->offset_at(utc_ms(2026, 1, 15) / 1000), 3600);
  EXPECT_EQ(z->offset_at(utc_ms(2026, 7, 15) / 1000), 7200);
  // 2026-03-29 01:00 UTC the clocks go forward.
  EXPECT_EQ(z->offset_at(utc_ms(2026, 3, 29, 0, 59) / 1000), 3600);
  EXPECT_EQ(z->offset_at(utc_ms(2026, 3, 29, 1, 0) / 1000), 7200);
}

TEST(TimeZone, LocalDayOfANewYorkMailbox) {
  auto z = TimeZone::load("/usr/share/zoneinfo", "America/New_York");
  ASSERT_TRUE(z.ok()) << z.error();
  // 2026-11-29 03:00 UTC is still the 28th in New York (UTC-5).
  LocalDay d = local_day(*z, utc_ms(2026, 11, 29, 3));
  EXPECT_EQ(d.day, days_from_civil(2026, 11, 28));
  EXPECT_EQ(d.weekday, 5);  // Saturday
  EXPECT_EQ(d.start_ms, utc_ms(2026, 11, 28, 5));
  EXPECT_EQ(d.end_ms, utc_ms(2026, 11, 29, 5));
  // The day the clocks go back has 25 hours.
  LocalDay fall = local_day(*z, utc_ms(2026, 11, 1, 12));
  EXPECT_EQ(fall.end_ms - fall.start_ms, 25 * kHour);
}

TEST(TimeZone, UnknownOrHostileNamesAreErrors) {
  EXPECT_FALSE(TimeZone::load("/usr/share/zoneinfo", "Mars/Olympus").ok());
  EXPECT_FALSE(TimeZone::load("/usr/share/zoneinfo", "../../etc/passwd").ok());
  EXPECT_FALSE(TimeZone::load("/usr/share/zoneinfo", "/etc/passwd").ok());
  EXPECT_FALSE(TimeZone::load("/etc", "passwd").ok()) << "not a TZif file";
  EXPECT_TRUE(TimeZone::load("/usr/share/zoneinfo", "").ok()) << "empty is UTC";
}

TEST(SendWindow, InsideTheWindowIsNow) {
  TimeZone utc;
  SendWindow w{0b0011111, 9, 17};             // Monday to Friday, 09-17
  int64_t mon_10 = utc_ms(2026, 11, 30, 10);  // a Monday
  EXPECT_EQ(next_window_open_ms(utc, w, mon_10), mon_10);
  EXPECT_EQ(next_window_open_ms(utc, SendWindow{}, mon_10), mon_10);
}

TEST(SendWindow, BeforeAfterAndOverTheWeekend) {
  TimeZone utc;
  SendWindow w{0b0011111, 9, 17};
  EXPECT_EQ(next_window_open_ms(utc, w, utc_ms(2026, 11, 30, 7)), utc_ms(2026, 11, 30, 9));
  EXPECT_EQ(next_window_open_ms(utc, w, utc_ms(2026, 11, 30, 17)), utc_ms(2026, 12, 1, 9));
  // Friday evening → Monday morning.
  EXPECT_EQ(next_window_open_ms(utc, w, utc_ms(2026, 12, 4, 18)), utc_ms(2026, 12, 7, 9));
  EXPECT_EQ(next_window_open_ms(utc, w, utc_ms(2026, 12, 5, 12)), utc_ms(2026, 12, 7, 9));
}

TEST(SendWindow, FollowsTheMailboxZone) {
  TimeZone tokyo = TimeZone::fixed(9 * 3600);
  SendWindow w{127, 9, 17};
  // 23:00 UTC is 08:00 next day in Tokyo: opens an hour later.
  EXPECT_EQ(next_window_open_ms(tokyo, w, utc_ms(2026, 11, 30, 23)), utc_ms(2026, 12, 1, 0));
}

TEST(SendWindow, AWindowThatNeverOpens) {
  TimeZone utc;
  EXPECT_EQ(next_window_open_ms(utc, SendWindow{0, 9, 17}, utc_ms(2026, 11, 30)), -1);
  EXPECT_EQ(next_window_open_ms(utc, SendWindow{127, 12, 12}, utc_ms(2026, 11, 30)), -1);
}

}  // namespace
}  // namespace deliverd::policy
