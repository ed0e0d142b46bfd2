#include "inbound/fetch_plan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/base64.h"
#include "inbound/classifier.h"

namespace deliverd::inbound {
namespace {

using Names = std::vector<std::string>;

// The structure as a server sends it, through the real parser.
BodyPart structure(const std::string& bodystructure) {
  auto r = parse_response("* 1 FETCH (UID 7 BODYSTRUCTURE " + bodystructure + ")\r\n");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
  if (!r.ok() || !r->fetch.body_structure) return {};
  return *r->fetch.body_structure;
}

std::string literal(const std::string& s) { return "{" + std::to_string(s.size()) + "}\r\n" + s; }

// One FETCH response carrying the given sections, as "BODY[name]<0> {n}" items.
FetchData fetched(const std::vector<std::pair<std::string, std::string>>& sections) {
  std::string wire = "* 1 FETCH (UID 7";
  for (const auto& [name, data] : sections) wire += " BODY[" + name + "]<0> " + literal(data);
  wire += ")\r\n";
  auto r = parse_response(wire);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
  return r.ok() ? r->fetch : FetchData{};
}

const std::string kEnvelope =
    "(\"Mon, 1 Dec 2026 10:00:00 +0000\" \"hi\" NIL NIL NIL NIL NIL NIL NIL \"<x@deliverd.test>\")";

std::string text_part(const std::string& subtype, const std::string& encoding = "7bit",
                      const std::string& disposition = "NIL") {
  return "(\"text\" \"" + subtype + "\" (\"charset\" \"utf-8\") NIL NIL \"" + encoding + "\" 120 3 NIL " + disposition +
         " NIL NIL)";
}

std::string single(const std::string& type, const std::string& subtype, const std::string& encoding = "7bit",
                   uint64_t size = 300, const std::string& disposition = "NIL") {
  return "(\"" + type + "\" \"" + subtype + "\" NIL NIL NIL \"" + encoding + "\" " + std::to_string(size) + " NIL " +
         disposition + " NIL NIL)";
}

std::string returned_message(const std::string& body, const std::string& subtype = "rfc822") {
  return "(\"message\" \"" + subtype + "\" NIL NIL NIL \"7bit\" 900 " + kEnvelope + " " + body +
         " 30 NIL (\"inline\" NIL) NIL NIL)";
}

// Postfix's bounce: the notice, the delivery status, the returned message (itself multipart).
const std::string kDsnStructure = "(" + text_part("plain") + single("message", "delivery-status") +
                                  returned_message("(" + text_part("plain") + text_part("html", "quoted-printable") +
                                                   " \"alternative\" (\"boundary\" \"b2\") NIL NIL NIL)") +
                                  " \"report\" (\"report-type\" \"delivery-status\" \"boundary\" \"b1\") NIL NIL NIL)";

TEST(FetchPlan, ADsnFetchesTheHeaderTheStatusTheReturnedHeaderAndTheNotice) {
  FetchPlan plan = plan_fetch(structure(kDsnStructure));
  EXPECT_EQ(plan.names(), (Names{"HEADER", "2", "3.HEADER", "1"}));
  EXPECT_TRUE(plan.sections[1].type.is("message", "delivery-status"));
  EXPECT_TRUE(plan.sections[2].type.is("message", "rfc822"));
  EXPECT_TRUE(plan.sections[3].type.is("text", "plain"));
  EXPECT_EQ(plan.sections[3].type.param("charset"), "utf-8");
}

TEST(FetchPlan, TheTextOfAReturnedMessageIsNeverFetched) {
  FetchPlan plan = plan_fetch(structure(kDsnStructure));
  for (const auto& s : plan.sections)
    EXPECT_FALSE(s.section.rfind("3.", 0) == 0 && s.section != "3.HEADER") << s.section;
}

TEST(FetchPlan, AnArfReportFetchesTheFeedbackReport) {
  std::string arf = "(" + text_part("plain") + single("message", "feedback-report") +
                    returned_message(text_part("plain")) +
                    " \"report\" (\"report-type\" \"feedback-report\" \"boundary\" \"p1\") NIL NIL NIL)";
  FetchPlan plan = plan_fetch(structure(arf));
  EXPECT_EQ(plan.names(), (Names{"HEADER", "2", "3.HEADER", "1"}));
  EXPECT_TRUE(plan.sections[1].type.is("message", "feedback-report"));
}

TEST(FetchPlan, EveryReportTypeIsFetchedWhole) {
  std::string report = "(" + single("message", "global-delivery-status") + single("text", "rfc822-headers") +
                       single("message", "disposition-notification") + single("message", "global-headers") +
                       returned_message(text_part("plain"), "global") + " \"report\")";
  FetchPlan plan = plan_fetch(structure(report));
  EXPECT_EQ(plan.names(), (Names{"HEADER", "1", "2", "3", "4", "5.HEADER"}));
}

TEST(FetchPlan, ASinglePartMessageFetchesItsOneBody) {
  FetchPlan plan = plan_fetch(structure(text_part("plain")));
  EXPECT_EQ(plan.names(), (Names{"HEADER", "1"}));
}

TEST(FetchPlan, AttachmentsAreNeverFetched) {
  std::string mixed = "(" + text_part("plain") +
                      single("application", "pdf", "base64", 2u << 20, "(\"attachment\" (\"filename\" \"a.pdf\"))") +
                      text_part("plain", "7bit", "(\"attachment\" (\"filename\" \"notes.txt\"))") +
                      " \"mixed\" (\"boundary\" \"m\") NIL NIL NIL)";
  FetchPlan plan = plan_fetch(structure(mixed));
  EXPECT_EQ(plan.names(), (Names{"HEADER", "1"}));
}

TEST(FetchPlan, AtMostTwoTextPartsAreRead) {
  std::string alt = "((" + text_part("plain") + text_part("html") + " \"alternative\")" + text_part("plain") +
                    text_part("plain") + " \"mixed\")";
  FetchPlan plan = plan_fetch(structure(alt));
  EXPECT_EQ(plan.names(), (Names{"HEADER", "1.1", "2"}));
}

TEST(FetchPlan, MorePartsThanTheBoundAreCappedReportsFirst) {
  std::string many = "(" + text_part("plain");
  for (int i = 0; i < 12; ++i) many += single("message", "delivery-status");
  many += " \"report\")";
  BodyPart b = structure(many);
  FetchPlan plan = plan_fetch(b);
  ASSERT_EQ(plan.sections.size(), 8u);
  EXPECT_EQ(plan.sections[1].section, "2");
  EXPECT_EQ(plan.sections[7].section, "8");  // the notice text lost to the report parts
  FetchPlanLimits tight;
  tight.max_sections = 3;
  EXPECT_EQ(plan_fetch(b, tight).names(), (Names{"HEADER", "2", "3"}));
  tight.max_sections = 0;  // the header is always asked for
  EXPECT_EQ(plan_fetch(b, tight).names(), (Names{"HEADER"}));
}

const std::string kHeader =
    "From: MAILER-DAEMON@mx.example.org\r\nTo: alice@deliverd.test\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-7@mx.example.org>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n";
const std::string kStatus =
    "Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\n"
    "Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n";
const std::string kReturnedHeader =
    "From: alice@deliverd.test\r\nTo: nobody@example.org\r\nMessage-ID: <x@deliverd.test>\r\n\r\n";

std::string dsn_structure_base64_notice() {
  return "(" + text_part("plain", "base64") + single("message", "delivery-status") +
         returned_message(text_part("plain")) + " \"report\" (\"report-type\" \"delivery-status\") NIL NIL NIL)";
}

TEST(AssembleMessage, AFetchedDsnIsClassifiedAsABounceOfTheReturnedMessage) {
  FetchPlan plan = plan_fetch(structure(dsn_structure_base64_notice()));
  ASSERT_EQ(plan.names(), (Names{"HEADER", "2", "3.HEADER", "1"}));
  std::string notice = "Your message could not be delivered.\r\n";
  FetchData data =
      fetched({{"HEADER", kHeader}, {"2", kStatus}, {"3.HEADER", kReturnedHeader}, {"1", core::base64_encode(notice)}});
  Message m = assemble_message(plan, data);
  EXPECT_FALSE(m.truncated);
  EXPECT_EQ(m.headers.value("Message-ID"), "<dsn-7@mx.example.org>");
  ASSERT_EQ(m.parts.size(), 3u);
  EXPECT_TRUE(m.parts[0].type.is("message", "delivery-status"));
  EXPECT_TRUE(m.parts[1].type.is("message", "rfc822"));
  EXPECT_EQ(m.parts[2].body, notice);  // base64 undone

  Signal s = classify(m);
  EXPECT_EQ(s.kind, SignalKind::Bounce);
  ASSERT_EQ(s.recipients.size(), 1u);
  EXPECT_EQ(s.recipients[0].status, "5.1.1");
  ASSERT_FALSE(s.referenced_ids.empty());
  EXPECT_EQ(s.referenced_ids[0], "x@deliverd.test");
}

TEST(AssembleMessage, SectionNamesMatchWhateverCaseTheServerUses) {
  FetchPlan plan = plan_fetch(structure(kDsnStructure));
  FetchData data = fetched({{"header", kHeader}, {"2", kStatus}, {"3.header", kReturnedHeader}, {"1", "notice"}});
  Message m = assemble_message(plan, data);
  EXPECT_FALSE(m.truncated);
  EXPECT_EQ(m.parts.size(), 3u);
  EXPECT_EQ(m.headers.value("Subject"), "Undelivered Mail Returned to Sender");
}

TEST(AssembleMessage, ASectionTheServerDidNotReturnIsLeftOutAndMarked) {
  FetchPlan plan = plan_fetch(structure(kDsnStructure));
  FetchData data = fetched({{"HEADER", kHeader}, {"2", kStatus}});
  Message m = assemble_message(plan, data);
  EXPECT_TRUE(m.truncated);
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_TRUE(m.parts[0].type.is("message", "delivery-status"));
  // Without the header the message is still assembled, only empty at the top.
  Message no_header = assemble_message(plan, fetched({{"2", kStatus}}));
  EXPECT_TRUE(no_header.truncated);
  EXPECT_TRUE(no_header.headers.fields.empty());
}

TEST(AssembleMessage, APartIsCutAtMaxPartBytes) {
  FetchPlan plan = plan_fetch(structure(text_part("plain")));
  MimeLimits limits;
  limits.max_part_bytes = 10;
  Message m = assemble_message(plan, fetched({{"HEADER", "Subject: x\r\n\r\n"}, {"1", std::string(50, 'a')}}), limits);
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].body, std::string(10, 'a'));
  EXPECT_TRUE(m.parts[0].truncated);
  EXPECT_TRUE(m.truncated);
}

TEST(AssembleMessage, Base64CutByAPartialFetchDecodesItsWholeQuanta) {
  FetchPlan plan = plan_fetch(structure(text_part("plain", "base64")));
  std::string text(300, 'z');
  std::string encoded = core::base64_encode(text);
  // A partial fetch ends where the byte bound is, mid-quantum.
  Message m = assemble_message(plan, fetched({{"HEADER", "Subject: x\r\n\r\n"}, {"1", encoded.substr(0, 102)}}));
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].body, std::string(75, 'z'));
  EXPECT_TRUE(m.parts[0].truncated);
}

}  // namespace
}  // namespace deliverd::inbound
