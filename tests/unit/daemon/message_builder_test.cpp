#include "daemon/message_builder.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

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
  c.unsubscribe_base_url = "https://u.example.net";
  c.unsubscribe_mailto = "unsub@acme.example";
  c.postal_address = "Acme Inc, 1 Main St, Springfield";
  c.account_postal_addresses = {{"acct_9", "Other Ltd, 2 High St"}};
  return c;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

DomainKeys acme_key(std::vector<std::string> accounts) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(key);
  DomainKeys keys;
  keys.emplace("acme.example", DomainKey{smtp::DkimSigner::from_pem("acme.example", "s1", smtp::DkimAlgorithm::Ed25519Sha256, pem).value(),
                                         std::move(accounts)});
  return keys;
}

TEST(MessageBuilder, ComposesFromTheMailboxToTheRecipient) {
  MessageBuilder b(config(), std::nullopt, {});
  auto m = b.build(job(), mailbox(), kNow);
  ASSERT_TRUE(m) << m.error().detail;
  EXPECT_TRUE(contains(*m, "From: alice@acme.example\r\n")) << "the domain normalised: " << *m;
  EXPECT_TRUE(contains(*m, "Subject: Quick question\r\n")) << *m;
  // The sender's domain, not the daemon's host name (which would name the platform in every
  // tenant's mail).
  EXPECT_TRUE(contains(*m, "@acme.example>\r\n")) << "Message-ID in the sender's domain: " << *m;
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

// A domain's key signs only for the accounts [[dkim]] names: another tenant with a mailbox in
// that domain (registered before the rule, or by an operator) gets no signature from it.
TEST(MessageBuilder, ADomainKeySignsOnlyForItsAccounts) {
  MessageBuilder own(config(), std::nullopt, acme_key({"acct_42"}));
  auto m = own.build(job(), mailbox(), kNow);
  ASSERT_TRUE(m) << m.error().detail;
  EXPECT_EQ(m->rfind("DKIM-Signature: v=1; a=ed25519-sha256; ", 0), 0u) << *m;
  EXPECT_TRUE(contains(*m, "d=acme.example;")) << *m;

  MessageBuilder everyone(config(), std::nullopt, acme_key({"*"}));
  auto all = everyone.build(job(), mailbox(), kNow);
  ASSERT_TRUE(all) << all.error().detail;
  EXPECT_TRUE(contains(*all, "DKIM-Signature:")) << *all;

  MessageBuilder others(config(), std::nullopt, acme_key({"acct_1", "acct_2"}));
  auto unsigned_message = others.build(job(), mailbox(), kNow);
  ASSERT_TRUE(unsigned_message) << unsigned_message.error().detail;
  EXPECT_FALSE(contains(*unsigned_message, "DKIM-Signature")) << *unsigned_message;
  EXPECT_TRUE(contains(*unsigned_message, "From: alice@acme.example\r\n")) << *unsigned_message;
}

// A raw job sends as its mailbox only: a foreign From ends it rejected, naming From.
TEST(MessageBuilder, ARawMessageFromAnotherSenderIsRejectedNamingFrom) {
  MessageBuilder b(config(), std::nullopt, acme_key({"acct_42"}));
  queue::Job j = job();
  j.subject.clear();
  j.text.clear();
  j.raw = "From: CEO <ceo@other.example>\r\nSubject: pay this\r\n\r\nbody\r\n";
  auto m = b.build(j, mailbox(), kNow);
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().status, core::Status::Rejected);
  EXPECT_EQ(m.error().reason, core::Reason::InvalidMessage);
  EXPECT_EQ(m.error().detail.rfind("raw: From: must be the sending mailbox's address <alice@acme.example>", 0), 0u)
      << m.error().detail;

  j.raw = "From: Alice <alice@acme.example>\r\nSubject: mine\r\n\r\nbody\r\n";
  auto own = b.build(j, mailbox(), kNow);
  ASSERT_TRUE(own) << own.error().detail;
  EXPECT_TRUE(contains(*own, "DKIM-Signature:")) << *own;
  EXPECT_TRUE(contains(*own, "@acme.example>\r\n")) << "Message-ID in the sender's domain: " << *own;
}

}  // namespace
}  // namespace deliverd::daemon
