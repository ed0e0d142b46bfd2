#include "daemon/message_builder.h"

#include <gtest/gtest.h>

namespace deliverd::daemon {
namespace {

constexpr std::time_t kNow = 1'764'410'400;

queue::Job job() {
  queue::Job j;
  j.id = "job-1";
  j.account = "acct_42";
  j.mailbox = "mbx_7";
  j.to_email = "bob@example.org";
  j.to_name = "Bob";
  j.subject = "Quick question";
  j.text = "Hello Bob";
  return j;
}

store::Mailbox mailbox() {
  store::Mailbox m;
  m.id = "mbx_7";
  m.account = "acct_42";
  m.email = "alice@Acme.example";
  return m;
}

MessageBuilderConfig config() {
  MessageBuilderConfig c;
  c.message_id_domain = "deliverd.example.net";
  c.unsubscribe_base_url = "https://u.example.net";
  c.unsubscribe_mailto = "unsub@acme.example";
  c.postal_address = "Acme Inc, 1 Main St, Springfield";
  c.account_postal_addresses = {{"acct_9", "Other Ltd, 2 High St"}};
  return c;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

TEST(MessageBuilder, ComposesFromTheMailboxToTheRecipient) {
  MessageBuilder b(config(), std::nullopt, {});
  auto m = b.build(job(), mailbox(), kNow);
  ASSERT_TRUE(m) << m.error().detail;
  EXPECT_TRUE(contains(*m, "From: alice@acme.example\r\n")) << "the domain normalised: " << *m;
  EXPECT_TRUE(contains(*m, "Subject: Quick question\r\n")) << *m;
  EXPECT_TRUE(contains(*m, "@deliverd.example.net>")) << "Message-ID in our domain: " << *m;
  EXPECT_FALSE(contains(*m, "List-Unsubscribe")) << "not a campaign: no unsubscribe headers";
  EXPECT_FALSE(contains(*m, "DKIM-Signature")) << "no key for acme.example";
}

TEST(MessageBuilder, CampaignMailGetsOurSignedUnsubscribeLinkAndTheAccountsFooter) {
  auto tokens = smtp::UnsubscribeTokens::from_key(std::array<unsigned char, 32>{});
  MessageBuilder b(config(), tokens, {});
  queue::Job j = job();
  j.campaign = "cmp_1";
  auto m = b.build(j, mailbox(), kNow);
  ASSERT_TRUE(m) << m.error().detail;
  const std::string token = tokens.issue({"acct_42", "bob@example.org", "cmp_1"});
  EXPECT_TRUE(contains(*m, "https://u.example.net/u/" + token)) << *m;
  EXPECT_TRUE(contains(*m, "mailto:unsub@acme.example")) << *m;
  EXPECT_TRUE(contains(*m, "List-Unsubscribe-Post: List-Unsubscribe=One-Click")) << *m;
  EXPECT_TRUE(contains(*m, "Acme Inc, 1 Main St, Springfield")) << *m;

  j.account = "acct_9";
  auto other = b.build(j, mailbox(), kNow);
  ASSERT_TRUE(other) << other.error().detail;
  EXPECT_TRUE(contains(*other, "Other Ltd, 2 High St")) << *other;
}

TEST(MessageBuilder, AMessageThatCannotBeComposedIsRejected) {
  MessageBuilder b(config(), std::nullopt, {});
  queue::Job j = job();
  j.headers = {{"X-Bad", "a\r\nBcc: x@y.z"}};
  auto m = b.build(j, mailbox(), kNow);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().status, core::Status::Rejected);
  EXPECT_EQ(m.error().reason, core::Reason::InvalidMessage);
  EXPECT_FALSE(m.error().detail.empty());
}

}  // namespace
}  // namespace deliverd::daemon
