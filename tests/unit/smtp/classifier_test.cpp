#include "smtp/classifier.h"

#include <gtest/gtest.h>

#include "smtp/session.h"

#include <set>
#include <string>

namespace deliverd::smtp {
namespace {

using core::Status;

struct Case {
  int code;
  const char* enhanced;
  const char* text;
  const char* phase;
  bool relay;
  Fault fault;
  Status status;
};

// The provider replies the issue names, with the texts Gmail and Microsoft 365 actually send.
constexpr Case kCases[] = {
    {550, "5.4.5", "Daily user sending quota exceeded.", "rcpt", true, Fault::Mailbox, Status::Deferred},
    {550, "5.4.5", "Daily sending quota exceeded.", "mail", true, Fault::Mailbox, Status::Deferred},
    {421, "4.7.0", "Try again later, closing connection.", "ehlo", false, Fault::Throttled, Status::Deferred},
    {450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that prevents additional messages",
     "rcpt", false, Fault::RecipientTransient, Status::Deferred},
    {421, "4.7.28", "Gmail has detected an unusual rate of unsolicited mail", "body", false, Fault::Throttled,
     Status::Deferred},
    {432, "4.3.2", "STOREDRV.ClientSubmit; sender thread limit exceeded", "body", true, Fault::Throttled,
     Status::Deferred},
    {554, "5.2.0", "STOREDRV.Submission.Exception:OutboundSpamException", "body", true, Fault::Mailbox, Status::Failed},
    {550, "5.7.26", "Unauthenticated email from acme.example is not accepted due to domain's DMARC policy", "body",
     false, Fault::PolicyAuth, Status::Failed},
    {550, "5.7.515", "Access denied, sending domain does not meet the required authentication level", "rcpt", false,
     Fault::PolicyAuth, Status::Failed},
    {535, "5.7.8", "Username and Password not accepted", "auth", true, Fault::PolicyAuth, Status::Failed},
    {535, "5.7.3", "Authentication unsuccessful", "auth", true, Fault::PolicyAuth, Status::Failed},
    {535, "5.7.139", "Authentication unsuccessful, basic authentication is disabled", "auth", true, Fault::PolicyAuth,
     Status::Failed},
    {534, "5.7.9", "Application-specific password required", "auth", true, Fault::PolicyAuth, Status::Failed},
    {454, "4.7.0", "Too many login attempts, please try again later", "auth", true, Fault::Throttled, Status::Deferred},
    {451, "4.7.500", "Server busy. Please try again later", "mail", true, Fault::Throttled, Status::Deferred},
    // Generic rules.
    {550, "5.1.1", "The email account that you tried to reach does not exist", "rcpt", false, Fault::RecipientPermanent,
     Status::Bounced},
    {451, "4.3.0", "try later", "rcpt", false, Fault::RecipientTransient, Status::Deferred},
    {552, "5.3.4", "message too big", "body", false, Fault::RecipientPermanent, Status::Bounced},
    {553, "5.1.8", "bad sender", "mail", true, Fault::Mailbox, Status::Failed},
    {554, "5.7.1", "no service for you", "banner", false, Fault::PolicyAuth, Status::Failed},
    {421, "", "closing", "data", false, Fault::Throttled, Status::Deferred},
    {450, "4.7.1", "greylisted", "rcpt", false, Fault::Throttled, Status::Deferred},
    {451, "", "local error", "ehlo", true, Fault::Mailbox, Status::Deferred},
    {451, "", "local error", "ehlo", false, Fault::RecipientTransient, Status::Deferred},
    {250, "2.0.0", "queued", "body", false, Fault::Success, Status::Delivered},
};

TEST(ReplyClassifier, ProviderAndGenericRepliesMapToTheRightFault) {
  for (const auto& c : kCases) {
    auto got = classify(core::Reply{c.code, c.enhanced, c.text}, core::phase_from_name(c.phase).value(), c.relay);
    EXPECT_EQ(got.fault, c.fault) << c.code << " " << c.enhanced << " " << c.text << " → " << got.rule;
    EXPECT_EQ(got.status, c.status) << c.code << " " << c.enhanced << " " << c.text << " → " << got.rule;
  }
}

TEST(ReplyClassifier, QuotaIsNotABounceEvenAtRcpt) {
  auto got = classify({550, "5.4.5", "Daily user sending quota exceeded."}, core::Phase::Rcpt, true);
  EXPECT_NE(got.status, Status::Bounced);
  EXPECT_EQ(to_string(got.fault), "mailbox");
}

TEST(ReplyClassifier, TableRowsHaveUniqueRuleNamesAndConsistentClasses) {
  std::set<std::string> rules;
  for (const auto& k : known_replies()) {
    EXPECT_TRUE(rules.insert(std::string(k.rule)).second) << k.rule;
    if (k.code != 0 && !k.enhanced.empty()) {
      EXPECT_EQ(k.enhanced[0], static_cast<char>('0' + k.code / 100)) << k.rule;
    }
    EXPECT_NE(k.fault, Fault::Success);
  }
}

TEST(ReplyClassifier, NetworkFaultsBelongToTheMailboxOnlyInRelayMode) {
  EXPECT_EQ(network_fault(true), Fault::Mailbox);
  EXPECT_EQ(network_fault(false), Fault::RecipientTransient);
}

}  // namespace
}  // namespace deliverd::smtp

namespace deliverd::smtp {
namespace {

// Every session state names the outcome phase of the same name.
TEST(SessionPhases, EachStateMapsOntoItsOutcomePhase) {
  for (const auto& p : kPhases) {
    EXPECT_FALSE(to_string(p.phase).empty());
    EXPECT_EQ(core::phase_from_name(to_string(p.phase)), p.outcome);
  }
  EXPECT_EQ(to_string(Phase::StartTls), "starttls");
  EXPECT_EQ(to_string(Phase::Body), "body");
}

}  // namespace
}  // namespace deliverd::smtp
