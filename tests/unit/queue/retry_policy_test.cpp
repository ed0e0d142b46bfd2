#include "queue/retry_policy.h"

#include <gtest/gtest.h>

#include "tests/unit/support/names_check.h"

using namespace deliverd::queue;

TEST(RetryPolicy, FollowsTheScheduleAndRepeatsItsLastStep) {
  RetryPolicy p;
  p.jitter = 0;
  p.schedule_ms = {1000, 5000};
  p.max_age_ms = 1'000'000;
  EXPECT_EQ(next_retry(p, 1, 10'000, 10'000, 0, 0.5).due_ms, 11'000);
  EXPECT_EQ(next_retry(p, 2, 10'000, 10'000, 0, 0.5).due_ms, 15'000);
  EXPECT_EQ(next_retry(p, 7, 10'000, 10'000, 0, 0.5).due_ms, 15'000);
  EXPECT_FALSE(next_retry(p, 7, 10'000, 10'000, 0, 0.5).give_up);
}

TEST(RetryPolicy, JitterStaysWithinItsFraction) {
  RetryPolicy p;
  p.schedule_ms = {100'000};
  p.jitter = 0.1;
  EXPECT_EQ(next_retry(p, 1, 0, 0, 0, 0.0).due_ms, 90'000);
  EXPECT_EQ(next_retry(p, 1, 0, 0, 0, 0.5).due_ms, 100'000);
  EXPECT_LE(next_retry(p, 1, 0, 0, 0, 0.999999).due_ms, 110'000);
}

TEST(RetryPolicy, GivesUpAtExpiresAtAndAtMaxAge) {
  RetryPolicy p;
  p.jitter = 0;
  p.schedule_ms = {60'000};
  p.max_age_ms = 3'600'000;
  auto expiring = next_retry(p, 1, 1'000'000, 1'000'000, 1'030'000, 0.5);
  EXPECT_TRUE(expiring.give_up);
  EXPECT_EQ(to_string(expiring.why), "expires_at");
  auto old = next_retry(p, 3, 1'000'000 + 3'590'000, 1'000'000, 0, 0.5);
  EXPECT_TRUE(old.give_up);
  EXPECT_EQ(to_string(old.why), "max_age");
  EXPECT_FALSE(next_retry(p, 1, 1'000'000, 1'000'000, 2'000'000, 0.5).give_up);
}

TEST(Duration, ParsesEveryUnitAndNamesMistakes) {
  EXPECT_EQ(parse_duration_ms("250ms").value(), 250);
  EXPECT_EQ(parse_duration_ms("90s").value(), 90'000);
  EXPECT_EQ(parse_duration_ms("5m").value(), 300'000);
  EXPECT_EQ(parse_duration_ms("3h").value(), 10'800'000);
  EXPECT_EQ(parse_duration_ms("3d").value(), 259'200'000);
  EXPECT_NE(parse_duration_ms("5").error().find("unit"), std::string::npos);
  EXPECT_NE(parse_duration_ms("m").error().find("not a duration"), std::string::npos);
  EXPECT_NE(parse_duration_ms("-1s").error().find("range"), std::string::npos);
  EXPECT_NE(parse_duration_ms("99999999999999999d").error().find("range"), std::string::npos);
}

TEST(EntryId, TimePartOfAStreamId) {
  EXPECT_EQ(entry_id_ms("1764412345678-0"), 1764412345678);
  EXPECT_EQ(entry_id_ms("1764412345678"), 1764412345678);
  EXPECT_EQ(entry_id_ms("x-1"), 0);
  EXPECT_EQ(entry_id_ms("12x-1"), 0);
}

namespace deliverd::queue {
namespace {

TEST(RetryPolicyNames, GiveUpReasonsRoundTrip) {
  testing::expect_names_round_trip(kGiveUpNames, [](GiveUp g) { return to_string(g); }, give_up_from_name,
                                   testing::FirstMayBeEmpty::Yes);
}

}  // namespace
}  // namespace deliverd::queue
