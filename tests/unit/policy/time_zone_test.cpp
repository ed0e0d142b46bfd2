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

TEST(TimeZone, DatesAfter2037FollowTheZonesRule) {
  // Explicit transitions in the TZif data end in 2037; the POSIX footer carries the rule on.
  auto berlin = TimeZone::load("/usr/share/zoneinfo", "Europe/Berlin");
  ASSERT_TRUE(berlin.ok()) << berlin.error();
  EXPECT_EQ(berlin->offset_at(utc_ms(2040, 7, 15) / 1000), 7200);
  EXPECT_EQ(berlin->offset_at(utc_ms(2040, 12, 15) / 1000), 3600);
  EXPECT_EQ(berlin->offset_at(utc_ms(2040, 3, 25, 0, 59) / 1000), 3600);
  EXPECT_EQ(berlin->offset_at(utc_ms(2040, 3, 25, 1, 0) / 1000), 7200);
  auto ny = TimeZone::load("/usr/share/zoneinfo", "America/New_York");
  ASSERT_TRUE(ny.ok()) << ny.error();
  LocalDay summer = local_day(*ny, utc_ms(2061, 7, 4, 16));
  EXPECT_EQ(summer.start_ms, utc_ms(2061, 7, 4, 4));  // UTC-4
}

TEST(TimeZone, ADayWhoseMidnightIsSkippedStartsWhenTheClocksJump) {
  // Santiago, 2022-09-11: at 00:00 (UTC-4) the clocks went to 01:00 (UTC-3).
  auto z = TimeZone::load("/usr/share/zoneinfo", "America/Santiago");
  ASSERT_TRUE(z.ok()) << z.error();
  const int64_t day = days_from_civil(2022, 9, 11);
  EXPECT_EQ(local_day_start_ms(*z, day), utc_ms(2022, 9, 11, 4));
  LocalDay d = local_day(*z, utc_ms(2022, 9, 11, 12));
  EXPECT_EQ(d.day, day);
  EXPECT_EQ(d.start_ms, utc_ms(2022, 9, 11, 4));
  EXPECT_EQ(d.end_ms, utc_ms(2022, 9, 12, 3));
  EXPECT_EQ(d.end_ms - d.start_ms, 23 * kHour);
  // The evening before still belongs to the 10th, which ends where the 11th begins.
  LocalDay eve = local_day(*z, utc_ms(2022, 9, 11, 3, 30));
  EXPECT_EQ(eve.day, day - 1);
  EXPECT_EQ(eve.end_ms, d.start_ms);
}

TEST(TimeZone, HavanaSkipsMidnightInSpringAndRepeatsItInAutumn) {
  auto z = TimeZone::load("/usr/share/zoneinfo", "America/Havana");
  ASSERT_TRUE(z.ok()) << z.error();
  // 2022-03-13 00:00 CST (UTC-5) became 01:00 CDT: the day starts at 05:00 UTC, 23 hours long.
  LocalDay spring = local_day(*z, utc_ms(2022, 3, 13, 15));
  EXPECT_EQ(spring.start_ms, utc_ms(2022, 3, 13, 5));
  EXPECT_EQ(spring.end_ms - spring.start_ms, 23 * kHour);
  // 2022-11-06 01:00 CDT became 00:00 CST: midnight happened twice; the day starts at the first.
  LocalDay autumn = local_day(*z, utc_ms(2022, 11, 6, 15));
  EXPECT_EQ(autumn.start_ms, utc_ms(2022, 11, 6, 4));
  EXPECT_EQ(autumn.end_ms, utc_ms(2022, 11, 7, 5));
  EXPECT_EQ(autumn.end_ms - autumn.start_ms, 25 * kHour);
  // The repeated hour after the first midnight is the 6th as well.
  EXPECT_EQ(local_day(*z, utc_ms(2022, 11, 6, 5, 30)).day, days_from_civil(2022, 11, 6));
}

TEST(TimeZone, ASendWindowOpensAtTheLocalHourOnADayWithAJump) {
  auto z = TimeZone::load("/usr/share/zoneinfo", "America/Santiago");
  ASSERT_TRUE(z.ok()) << z.error();
  SendWindow w{127, 9, 17};
  // 09:00 on 2022-09-11 is UTC-3, 12:00 UTC (not start of day + 9 h, which would be 13:00 UTC).
  EXPECT_EQ(next_window_open_ms(*z, w, utc_ms(2022, 9, 11, 5)), utc_ms(2022, 9, 11, 12));
}

TEST(ZoneTable, HoldsEveryZoneAndLinkButNotThePosixCopies) {
  auto t = ZoneTable::load("/usr/share/zoneinfo");
  ASSERT_TRUE(t);
  EXPECT_GT(t->size(), 300u);
  ASSERT_TRUE(t->find("America/New_York"));
  EXPECT_EQ(t->find("America/New_York")->offset_at(utc_ms(2026, 1, 15) / 1000), -18000);
  ASSERT_TRUE(t->find("Cuba")) << "links are zones too";
  EXPECT_EQ(t->find("Cuba")->offset_at(utc_ms(2026, 1, 15) / 1000), -18000);
  EXPECT_TRUE(t->find(""));
  EXPECT_TRUE(t->find("UTC"));
  EXPECT_FALSE(t->find("posix/Europe/Berlin"));
  EXPECT_FALSE(t->find("zone.tab"));
  EXPECT_FALSE(t->find("Mars/Olympus"));
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
