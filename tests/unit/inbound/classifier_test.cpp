// Each fixture in messages/ is written after a public sample of its format (the RFC examples,
// and the notices Postfix, sendmail, qmail, Exim, Exchange / Microsoft 365, Gmail and Yahoo send).
#include "inbound/classifier.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/utf8.h"

namespace deliverd::inbound {
namespace {

std::string fixture(const std::string& name) {
  const char* root = std::getenv("DELIVERD_SOURCE_DIR");
  std::ifstream in(std::string(root ? root : ".") + "/tests/unit/inbound/messages/" + name, std::ios::binary);
  EXPECT_TRUE(in) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  // The fixtures are stored with LF; mail arrives with CRLF. Both must classify alike.
  return ss.str();
}

std::string crlf(const std::string& lf) {
  std::string out;
  for (char c : lf) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

Signal classify_fixture(const std::string& name) {
  std::string raw = fixture(name);
  Signal lf = classify(parse_message(raw));
  Signal with_crlf = classify(parse_message(crlf(raw)));
  EXPECT_EQ(lf.kind, with_crlf.kind) << name;
  EXPECT_EQ(lf.recipients.size(), with_crlf.recipients.size()) << name;
  EXPECT_EQ(lf.referenced_ids, with_crlf.referenced_ids) << name;
  return with_crlf;
}

TEST(Classifier, PostfixDsnIsAHardBounceWithTheReturnedMessageId) {
  Signal s = classify_fixture("postfix_dsn.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  EXPECT_EQ(s.rule, "rfc3464");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "nobody@rcpt.example");
  EXPECT_EQ(s.recipients[0].status, "5.1.1");
  EXPECT_EQ(s.recipients[0].diagnostic,
            "550 5.1.1 <nobody@rcpt.example>: Recipient address    rejected: User unknown in virtual mailbox table");
  EXPECT_EQ(s.recipients[0].remote_mta, "mx.rcpt.example");
  ASSERT_FALSE(s.referenced_ids.empty());
  EXPECT_EQ(s.referenced_ids[0], "6b1f0c2a9e3d4f5a8b7c6d5e4f3a2b1c@deliverd.sender.example");
  EXPECT_EQ(s.message_id, "20261201100102.4Zk1x2Y3@mx.sender.example");
  EXPECT_EQ(s.date, "Tue,  1 Dec 2026 10:01:02 +0000 (UTC)");
}

TEST(Classifier, PostfixDelayIsADelay) {
  Signal s = classify_fixture("postfix_delay.eml");
  EXPECT_EQ(s.kind, SignalKind::Delay);
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "slow@rcpt.example");
  EXPECT_EQ(s.recipients[0].status, "4.4.1");
  EXPECT_EQ(s.referenced_ids.at(0), "aa11bb22cc33dd44ee55ff6600778899@deliverd.sender.example");
}

TEST(Classifier, ADsnForSeveralRecipientsNamesOnlyTheFailedOnes) {
  Signal s = classify_fixture("multi_recipient_dsn.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  ASSERT_EQ(s.recipients.size(), 2u);
  EXPECT_EQ(s.recipients[0].address, "gone@rcpt.example");
  EXPECT_EQ(s.recipients[0].status, "5.2.1");
  EXPECT_EQ(s.recipients[1].address, "full@rcpt.example");
  EXPECT_EQ(s.recipients[1].status, "5.2.2");
  EXPECT_EQ(s.referenced_ids.at(0), "multi-1@deliverd.sender.example");
}

TEST(Classifier, GlobalDsnCarriesUtf8Addresses) {
  Signal s = classify_fixture("global_dsn.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  EXPECT_EQ(s.rule, "rfc6533");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "j\xc3\xb6s\xc3\xa9@b\xc3\xbc" "cher.example");
  EXPECT_EQ(s.recipients[0].status, "5.1.1");
  EXPECT_EQ(s.referenced_ids.at(0), "utf8-1@deliverd.sender.example");
}

TEST(Classifier, ASuccessDsnIsIgnored) {
  Signal s = classify_fixture("success_dsn.eml");
  EXPECT_EQ(s.kind, SignalKind::Ignored);
  EXPECT_TRUE(s.recipients.empty());
}

TEST(Classifier, QmailNoticeNamesEachRecipientWithItsStatus) {
  Signal s = classify_fixture("qmail.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  EXPECT_EQ(s.rule, "qmail");
  ASSERT_EQ(s.recipients.size(), 2u);
  EXPECT_EQ(s.recipients[0].address, "nosuch@oldhost.example");
  EXPECT_EQ(s.recipients[0].status, "5.1.1");
  EXPECT_EQ(s.recipients[0].diagnostic, "Sorry, no mailbox here by that name. (#5.1.1)");
  EXPECT_EQ(s.recipients[1].address, "nohost@bad.example");
  EXPECT_EQ(s.recipients[1].status, "5.1.2");
  EXPECT_EQ(s.referenced_ids.at(0), "qmail-orig-1@deliverd.sender.example");
}

TEST(Classifier, EximNoticeWithoutDsn) {
  Signal s = classify_fixture("exim.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  EXPECT_EQ(s.rule, "exim");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "gone@eximhost.example");
  EXPECT_EQ(s.recipients[0].status, "5.1.1");
  EXPECT_NE(s.recipients[0].diagnostic.find("550 5.1.1 <gone@eximhost.example>: Recipient address rejected"),
            std::string::npos);
  EXPECT_EQ(s.referenced_ids.at(0), "exim-orig-1@deliverd.sender.example");
}

TEST(Classifier, EximDelayWarningIsADelay) {
  Signal s = classify_fixture("exim_delay.eml");
  EXPECT_EQ(s.kind, SignalKind::Delay);
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "slow@eximhost.example");
  EXPECT_EQ(s.recipients[0].status, "4.3.0");
}

TEST(Classifier, ExchangeNdr) {
  Signal s = classify_fixture("exchange_classic.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  EXPECT_EQ(s.rule, "exchange");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "bob.jones@corp.example");
  EXPECT_EQ(s.recipients[0].status, "5.1.1");
  EXPECT_EQ(s.referenced_ids.at(0), "exchange-orig-1@deliverd.sender.example");
}

TEST(Classifier, Office365Ndr) {
  Signal s = classify_fixture("office365.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  EXPECT_EQ(s.rule, "exchange");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "carol@tenant.example");
  EXPECT_EQ(s.recipients[0].status, "5.1.10");
  EXPECT_EQ(s.recipients[0].diagnostic,
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup");
  EXPECT_EQ(s.referenced_ids.at(0), "o365-orig-1@deliverd.sender.example");
}

TEST(Classifier, GmailNoticeWithItsDsnPart) {
  Signal s = classify_fixture("gmail.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  EXPECT_EQ(s.rule, "rfc3464");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "dave.nobody@gmail.com");
  EXPECT_EQ(s.recipients[0].status, "5.1.1");
  EXPECT_EQ(s.referenced_ids.at(0), "gmail-orig-1@deliverd.sender.example");
}

TEST(Classifier, GmailPlainTextNotice) {
  Signal s = classify_fixture("gmail_plain.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  EXPECT_EQ(s.rule, "gmail");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "erin.gone@gmail.com");
  EXPECT_EQ(s.recipients[0].status, "5.2.1");
  EXPECT_EQ(s.referenced_ids.at(0), "gmail-plain-orig@deliverd.sender.example");
}

// Found by signal_classifier_fuzz: a Gmail delay notice whose line names no " to " recipient
// threw out of substr; it is a notice without a recipient, not a crash.
TEST(Classifier, AGmailDelayLineWithoutARecipientIsNoCrash) {
  const std::string raw =
      "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
      "To: alice@sender.example\n"
      "Subject: Delivery Status Notification (Delay)\n"
      "\n"
      "Delivery incomplete\n"
      "There was a temporary problem delivering your message.\n";
  Signal s = classify(parse_message(raw));
  for (const auto& r : s.recipients) EXPECT_FALSE(r.address.empty());
}

TEST(Classifier, YahooNoticeInfersUserUnknown) {
  Signal s = classify_fixture("yahoo.eml");
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  EXPECT_EQ(s.rule, "yahoo");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "frank.nobody@yahoo.com");
  EXPECT_EQ(s.recipients[0].status, "5.1.1");  // "doesn't have a yahoo.com account"
  EXPECT_EQ(s.referenced_ids.at(0), "yahoo-orig-1@deliverd.sender.example");
}

TEST(Classifier, ArfComplaintNamesTheComplainingRecipientAndTheMessage) {
  Signal s = classify_fixture("arf_abuse.eml");
  EXPECT_EQ(s.kind, SignalKind::Complaint);
  EXPECT_EQ(s.rule, "arf");
  EXPECT_EQ(s.feedback_type, "abuse");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "grace@mailbox-provider.example");
  EXPECT_EQ(s.referenced_ids.at(0), "arf-orig-1@deliverd.sender.example");
}

TEST(Classifier, RedactedArfFallsBackToTheReturnedToAndMessageId) {
  Signal s = classify_fixture("arf_redacted.eml");
  EXPECT_EQ(s.kind, SignalKind::Complaint);
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "redacted@aol.com");
  EXPECT_EQ(s.referenced_ids.at(0), "arf-orig-2@deliverd.sender.example");
}

TEST(Classifier, AutoSubmittedReplyIsAnAutoReply) {
  Signal s = classify_fixture("auto_submitted.eml");
  EXPECT_EQ(s.kind, SignalKind::AutoReply);
  EXPECT_EQ(s.rule, "auto_submitted");
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "henry@rcpt.example");
  EXPECT_EQ(s.referenced_ids, (std::vector<std::string>{"auto-orig-1@deliverd.sender.example"}));
}

TEST(Classifier, OutOfOfficeSubjectsInOtherLanguagesAndEncodings) {
  Signal de = classify_fixture("ooo_german.eml");
  EXPECT_EQ(de.kind, SignalKind::AutoReply);
  EXPECT_EQ(de.rule, "subject");
  EXPECT_EQ(de.subject, "Abwesenheitsnotiz: Kurze Frage");
  EXPECT_EQ(de.referenced_ids.at(0), "ooo-orig-1@deliverd.sender.example");

  Signal fr = classify_fixture("ooo_french_xautoreply.eml");
  EXPECT_EQ(fr.kind, SignalKind::AutoReply);
  EXPECT_EQ(fr.rule, "x_autoreply");
  EXPECT_EQ(fr.subject, "R\xc3\xa9ponse automatique : Quick question");
  // References newest first
  EXPECT_EQ(fr.referenced_ids, (std::vector<std::string>{"ooo-orig-2@deliverd.sender.example", "first@elsewhere.example"}));

  Signal en = classify_fixture("ooo_subject_only.eml");
  EXPECT_EQ(en.kind, SignalKind::AutoReply);
  EXPECT_TRUE(en.referenced_ids.empty());  // correlation falls back to the sender and the mailbox
}

TEST(Classifier, HumanReplyNamesInReplyToFirst) {
  Signal s = classify_fixture("human_reply.eml");
  EXPECT_EQ(s.kind, SignalKind::Reply);
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].address, "bob@rcpt.example");
  EXPECT_EQ(s.referenced_ids,
            (std::vector<std::string>{"reply-orig-1@deliverd.sender.example", "older@deliverd.sender.example"}));
  EXPECT_EQ(s.message_id, "CAHuman123@mail.rcpt.example");
  EXPECT_EQ(s.date, "Tue, 1 Dec 2026 10:30:00 +0000");
}

TEST(Classifier, NewslettersAreIgnored) {
  Signal s = classify_fixture("newsletter.eml");
  EXPECT_EQ(s.kind, SignalKind::Ignored);
}

TEST(Classifier, AMalformedDsnIsIgnoredWithAnError) {
  Signal s = classify_fixture("malformed_dsn.eml");
  EXPECT_EQ(s.kind, SignalKind::Ignored);
  EXPECT_EQ(s.error, "delivery status: no recipient group with a Final-Recipient");
}

TEST(Classifier, ALongSubjectIsCutBetweenCharacters) {
  // "x" and 500 two-byte characters: a byte-wise cut at 998 leaves half of the 499th (found by
  // the fuzzer through an RFC 2047 Latin-1 word).
  std::string raw = "From: a@example.com\r\nSubject: x";
  for (int i = 0; i < 500; ++i) raw += "\xc3\xbc";
  raw += "\r\n\r\nbody\r\n";
  Signal s = classify(parse_message(raw));
  EXPECT_LE(s.subject.size(), 998u);
  EXPECT_EQ(s.subject.size(), 997u);
  EXPECT_TRUE(core::is_valid_utf8(s.subject));
}

TEST(Classifier, KindNamesAreTheEventNames) {
  EXPECT_EQ(to_string(SignalKind::Bounce), "bounce");
  EXPECT_EQ(to_string(SignalKind::Delay), "delay");
  EXPECT_EQ(to_string(SignalKind::Complaint), "complaint");
  EXPECT_EQ(to_string(SignalKind::AutoReply), "auto_reply");
  EXPECT_EQ(to_string(SignalKind::Reply), "reply");
  EXPECT_EQ(to_string(SignalKind::Ignored), "ignored");
}

}  // namespace
}  // namespace deliverd::inbound
