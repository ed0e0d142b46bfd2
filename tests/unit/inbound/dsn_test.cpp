#include "inbound/dsn.h"

#include <gtest/gtest.h>

#include "inbound/arf.h"

namespace deliverd::inbound {
namespace {

TEST(Dsn, PerMessageAndPerRecipientGroups) {
  auto ds = parse_delivery_status(
      "Reporting-MTA: dns; mx.example\r\nOriginal-Envelope-Id: env-1\r\n\r\n"
      "Final-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
      "Remote-MTA: dns; mx.x.example\r\nDiagnostic-Code: smtp; 550 5.1.1 no such\r\n user\r\n\r\n"
      "Final-Recipient: rfc822;b@x.example\r\nAction: Delayed\r\nStatus: 4.4.7 (timeout)\r\n");
  ASSERT_TRUE(ds) << ds.error();
  EXPECT_EQ(ds->reporting_mta, "mx.example");
  EXPECT_EQ(ds->original_envelope_id, "env-1");
  ASSERT_EQ(ds->recipients.size(), 2u);
  EXPECT_EQ(ds->recipients[0].final_recipient, "a@x.example");
  EXPECT_EQ(ds->recipients[0].action, DsnAction::Failed);
  EXPECT_EQ(ds->recipients[0].status, "5.1.1");
  EXPECT_EQ(ds->recipients[0].diagnostic, "550 5.1.1 no such user");
  EXPECT_EQ(ds->recipients[0].remote_mta, "mx.x.example");
  EXPECT_EQ(ds->recipients[1].action, DsnAction::Delayed);
  EXPECT_EQ(ds->recipients[1].status, "4.4.7");
}

TEST(Dsn, ARecipientGroupWithoutPerMessageGroupIsStillRead) {
  auto ds = parse_delivery_status("\r\n\r\nFinal-Recipient: rfc822; a@x.example\r\nAction: failed\r\nStatus: 5.0.0\r\n");
  ASSERT_TRUE(ds) << ds.error();
  ASSERT_EQ(ds->recipients.size(), 1u);
  EXPECT_EQ(ds->reporting_mta, "");
}

TEST(Dsn, NoRecipientIsAnErrorThatSaysSo) {
  auto ds = parse_delivery_status("Reporting-MTA: dns; mx.example\r\n\r\nAction: failed\r\n");
  ASSERT_FALSE(ds);
  EXPECT_EQ(ds.error(), "no recipient group with a Final-Recipient");
  EXPECT_FALSE(parse_delivery_status(""));
}

TEST(Dsn, RecipientsAreBounded) {
  std::string body = "Reporting-MTA: dns; mx.example\r\n";
  for (int i = 0; i < 500; ++i) body += "\r\nFinal-Recipient: rfc822; r" + std::to_string(i) + "@x.example\r\nAction: failed\r\n";
  auto ds = parse_delivery_status(body);
  ASSERT_TRUE(ds);
  EXPECT_EQ(ds->recipients.size(), kMaxDsnRecipients);
  EXPECT_TRUE(ds->truncated);
}

TEST(Dsn, StatusCodesAreFoundInTextButNotInsideAddressesOrVersions) {
  EXPECT_EQ(status_in("Sorry, no mailbox here by that name. (#5.1.1)"), "5.1.1");
  EXPECT_EQ(status_in("550-5.7.1 [192.0.2.1] blocked"), "5.7.1");
  EXPECT_EQ(status_in("host 192.0.2.4 said no"), "");
  EXPECT_EQ(status_in("Exim 4.96 here"), "");
  EXPECT_EQ(status_in("libfoo 5.2.10.3"), "");
  EXPECT_EQ(status_in("5.1.10 RESOLVER"), "5.1.10");
  EXPECT_EQ(status_in("nothing"), "");
}

TEST(Dsn, ActionsAndTypes) {
  EXPECT_EQ(parse_dsn_action(" FAILED (bad mailbox)"), DsnAction::Failed);
  EXPECT_EQ(parse_dsn_action("expanded"), DsnAction::Expanded);
  EXPECT_EQ(parse_dsn_action("weird"), DsnAction::Unknown);
  EXPECT_EQ(to_string(DsnAction::Delayed), "delayed");
  EXPECT_EQ(without_type("rfc822; bob@x"), "bob@x");
  EXPECT_EQ(without_type("bob@x"), "bob@x");
  EXPECT_EQ(without_type("smtp; 550 a; b"), "550 a; b");
}

TEST(Arf, FieldsOfAnAbuseReport) {
  auto r = parse_feedback_report(
      "Feedback-Type: Abuse\r\nUser-Agent: X/1\r\nVersion: 1\r\nOriginal-Mail-From: <a@s.example>\r\n"
      "Original-Rcpt-To: <g@p.example>\r\nArrival-Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nSource-IP: 192.0.2.10\r\n"
      "Reported-Domain: s.example\r\n");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->feedback_type, "abuse");
  EXPECT_EQ(r->original_mail_from, "a@s.example");
  EXPECT_EQ(r->original_rcpt_to, "g@p.example");
  EXPECT_EQ(r->source_ip, "192.0.2.10");
  EXPECT_EQ(r->reported_domain, "s.example");
}

TEST(Arf, AReportWithoutFeedbackTypeIsAnError) {
  auto r = parse_feedback_report("User-Agent: X/1\r\nVersion: 1\r\n");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "the report has no Feedback-Type");
}

}  // namespace
}  // namespace deliverd::inbound
