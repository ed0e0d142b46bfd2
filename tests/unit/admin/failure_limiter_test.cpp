// The bounded bucket table behind the authentication throttle and the unsubscribe endpoint.
#include "admin/failure_limiter.h"

#include <gtest/gtest.h>

#include <string>

namespace deliverd::admin {
namespace {

TEST(FailureLimiter, BurstThenRetryAfterThenRefill) {
  FailureLimiter l(3, 0.5, 100);
  EXPECT_EQ(l.retry_after_s("ip", 0), 0);
  for (int i = 0; i < 3; ++i) l.record_failure("ip", 0);
  EXPECT_EQ(l.retry_after_s("ip", 0), 2);  // one token every 2 s
  EXPECT_EQ(l.retry_after_s("other", 0), 0);
  EXPECT_EQ(l.retry_after_s("ip", 2000), 0);
  l.record_failure("ip", 2000);
  EXPECT_GT(l.retry_after_s("ip", 2000), 0);
}

TEST(FailureLimiter, StaysBounded) {
  FailureLimiter l(2, 1, 50);
  for (int i = 0; i < 1000; ++i) l.record_failure("k" + std::to_string(i), 0);
  EXPECT_LE(l.tracked(), 50u);
}

TEST(FailureLimiter, AFullTableForgetsTheStalestKeyAndKeepsTheRecentOnes) {
  FailureLimiter l(1, 0, 3);  // no refill: a throttled key stays throttled while remembered
  l.record_failure("a", 0);
  l.record_failure("b", 1);
  l.record_failure("c", 2);
  l.record_failure("a", 3);  // a is now the most recent
  l.record_failure("d", 4);  // the table is full: b, the stalest, goes
  EXPECT_EQ(l.tracked(), 3u);
  EXPECT_EQ(l.retry_after_s("b", 5), 0);
  EXPECT_GT(l.retry_after_s("a", 5), 0);
  EXPECT_GT(l.retry_after_s("c", 5), 0);
  EXPECT_GT(l.retry_after_s("d", 5), 0);
}

TEST(FailureLimiter, AFloodOfNewKeysNeverRefusesAKeyThatHasNotFailed) {
  FailureLimiter l(2, 0.1, 100);
  for (int i = 0; i < 100000; ++i) {
    const std::string k = "attacker-" + std::to_string(i);
    l.record_failure(k, static_cast<uint64_t>(i));
    l.record_failure(k, static_cast<uint64_t>(i));
  }
  EXPECT_EQ(l.tracked(), 100u);
  EXPECT_EQ(l.retry_after_s("someone-else", 100000), 0);
}

TEST(FailureLimiter, ARefilledBucketIsForgotten) {
  FailureLimiter l(2, 1, 10);
  l.record_failure("ip", 0);
  EXPECT_EQ(l.tracked(), 1u);
  EXPECT_EQ(l.retry_after_s("ip", 5000), 0);
  EXPECT_EQ(l.tracked(), 0u);
}

TEST(FailureLimiterKey, Ipv6CountsByItsSlash64AndIpv4AsItIs) {
  EXPECT_EQ(limiter_key_for_address("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(limiter_key_for_address("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64");
  EXPECT_NE(limiter_key_for_address("2001:db8:1:3::1"), limiter_key_for_address("2001:db8:1:2::1"));
  EXPECT_EQ(limiter_key_for_address("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(limiter_key_for_address("not an address"), "not an address");
}

}  // namespace
}  // namespace deliverd::admin
