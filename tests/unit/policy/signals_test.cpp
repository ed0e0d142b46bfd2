#include "policy/signals.h"

#include <gtest/gtest.h>

#include "policy/gate.h"
#include "tests/unit/support/names_check.h"

namespace deliverd::policy {
namespace {

core::Outcome outcome(core::Status s, std::string phase, std::string fault, int code = 0, std::string enhanced = "") {
  core::Outcome o;
  o.status = s;
  o.phase = core::phase_from_name(phase).value();
  o.fault = core::fault_from_name(fault).value();
  o.reply.code = code;
  o.reply.enhanced = std::move(enhanced);
  return o;
}

using core::Status;

TEST(Signals, MailboxSideFailuresCount) {
  EXPECT_EQ(breaker_signal(outcome(Status::Deferred, "connect", "mailbox")), Signal::Failure);
  EXPECT_EQ(breaker_signal(outcome(Status::Deferred, "starttls", "mailbox")), Signal::Failure);
  EXPECT_EQ(breaker_signal(outcome(Status::Deferred, "banner", "throttled", 421, "4.7.0")), Signal::Failure);
  EXPECT_EQ(breaker_signal(outcome(Status::Deferred, "auth", "throttled", 454, "4.7.0")), Signal::Failure);
}

TEST(Signals, AuthFailuresAreTheirOwnSignal) {
  EXPECT_EQ(breaker_signal(outcome(Status::Failed, "auth", "policy_auth", 535, "5.7.8")), Signal::AuthFailure);
  EXPECT_EQ(breaker_signal(outcome(Status::Failed, "auth", "policy_auth", 535)), Signal::AuthFailure);
}

TEST(Signals, QuotaRepliesOpenUntilTheWindowResets) {
  EXPECT_EQ(breaker_signal(outcome(Status::Deferred, "mail", "mailbox", 550, "5.4.5")), Signal::Quota);
  EXPECT_EQ(breaker_signal(outcome(Status::Failed, "body", "mailbox", 554, "5.2.0")), Signal::Quota);
}

TEST(Signals, RecipientFaultsNeverCount) {
  EXPECT_EQ(breaker_signal(outcome(Status::Bounced, "rcpt", "recipient_permanent", 550, "5.1.1")), Signal::Neutral);
  EXPECT_EQ(breaker_signal(outcome(Status::Deferred, "rcpt", "recipient_transient", 452, "4.2.2")), Signal::Neutral);
  // An unreachable MX in MX mode is the recipient domain's problem.
  EXPECT_EQ(breaker_signal(outcome(Status::Deferred, "connect", "recipient_transient")), Signal::Neutral);
  EXPECT_EQ(breaker_signal(outcome(Status::Suppressed, "policy", "")), Signal::Neutral);
}

TEST(Signals, DeliveryIsSuccess) {
  EXPECT_EQ(breaker_signal(outcome(Status::Delivered, "body", "success", 250, "2.0.0")), Signal::Success);
}

TEST(Signals, HardBouncesAre51xAnd521) {
  EXPECT_TRUE(is_hard_bounce(outcome(Status::Bounced, "rcpt", "recipient_permanent", 550, "5.1.1")));
  EXPECT_TRUE(is_hard_bounce(outcome(Status::Bounced, "rcpt", "recipient_permanent", 550, "5.1.10")));
  EXPECT_TRUE(is_hard_bounce(outcome(Status::Bounced, "rcpt", "recipient_permanent", 550, "5.2.1")));
  EXPECT_TRUE(is_hard_bounce(outcome(Status::Bounced, "rcpt", "recipient_permanent", 550)));
  EXPECT_FALSE(is_hard_bounce(outcome(Status::Bounced, "body", "recipient_permanent", 552, "5.2.2")));
  EXPECT_FALSE(is_hard_bounce(outcome(Status::Bounced, "rcpt", "recipient_permanent", 550, "5.7.1")));
  EXPECT_FALSE(is_hard_bounce(outcome(Status::Deferred, "rcpt", "recipient_transient", 450, "4.1.1")));
}

TEST(Signals, SendsAreDeliveriesAndBounces) {
  EXPECT_TRUE(counts_as_send(outcome(Status::Delivered, "body", "success")));
  EXPECT_TRUE(counts_as_send(outcome(Status::Bounced, "rcpt", "recipient_permanent")));
  EXPECT_FALSE(counts_as_send(outcome(Status::Deferred, "connect", "mailbox")));
}

}  // namespace
}  // namespace deliverd::policy

namespace deliverd::policy {
namespace {

TEST(PolicyNames, DecisionDetailsAndBreakerStatesRoundTrip) {
  testing::expect_names_round_trip(kDetailNames, [](Detail d) { return to_string(d); }, detail_from_name,
                                   testing::FirstMayBeEmpty::Yes);
  testing::expect_names_round_trip(kBreakerNames, [](Breaker b) { return to_string(b); }, breaker_from_name);
}

}  // namespace
}  // namespace deliverd::policy
