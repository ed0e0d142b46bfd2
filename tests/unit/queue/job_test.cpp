#include "queue/job.h"

#include <gtest/gtest.h>

#include <string>

namespace deliverd::queue {
namespace {

// A valid job; tests replace one "key":value pair (or add one) to probe one rule.
const std::string kBase =
    R"({"v":1,"id":"c0ffee-42","account":"acct_42","mailbox":"mbx_7",)"
    R"("to":{"email":"bob@example.org","name":"Bob"},"subject":"Quick question","text":"Hi Bob"})";

std::string with(const std::string& extra) {
  std::string s = kBase;
  s.insert(s.size() - 1, "," + extra);
  return s;
}

std::string replace(const std::string& from, const std::string& to) {
  std::string s = kBase;
  size_t pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return s.replace(pos, from.size(), to);
}

// Asserts that parsing fails and names `field`.
void expect_rejected(const std::string& json, const std::string& field) {
  auto r = parse_job(json);
  ASSERT_FALSE(r.ok()) << json;
  EXPECT_EQ(r.error().field, field) << r.error().to_string() << "\n  for " << json;
  EXPECT_FALSE(r.error().message.empty());
}

TEST(ParseJob, AcceptsMinimalJob) {
  auto r = parse_job(kBase);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->v, 1);
  EXPECT_EQ(r->id, "c0ffee-42");
  EXPECT_EQ(r->account, "acct_42");
  EXPECT_EQ(r->mailbox, "mbx_7");
  EXPECT_EQ(r->to_email, "bob@example.org");
  EXPECT_EQ(r->to_name, "Bob");
  EXPECT_EQ(r->subject, "Quick question");
  EXPECT_EQ(r->text, "Hi Bob");
  EXPECT_TRUE(r->html.empty());
  EXPECT_EQ(r->not_before_ms, 0);
}

TEST(ParseJob, AcceptsEveryOptionalField) {
  auto r = parse_job(with(
      R"("html":"<p>Hi</p>","from_name":"Alice from Acme","reply_to":"alice@acme.example",)"
      R"("headers":{"X-Campaign-Id":"cmp_1","X-Tag":"a\tb"},"campaign":"cmp_1",)"
      R"("unsubscribe":{"url":"https://acme.example/u?t=1","mailto":"mailto:unsub@acme.example"},)"
      R"("not_before":"2026-11-29T10:00:00Z","expires_at":"2026-11-30T10:00:00.250Z","extra":{"nested":[1,2]})"));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->html, "<p>Hi</p>");
  EXPECT_EQ(r->from_name, "Alice from Acme");
  EXPECT_EQ(r->reply_to, "alice@acme.example");
  ASSERT_EQ(r->headers.size(), 2u);
  EXPECT_EQ(r->headers[0].first, "X-Campaign-Id");
  EXPECT_EQ(r->headers[1].second, "a\tb");
  EXPECT_EQ(r->campaign, "cmp_1");
  EXPECT_EQ(r->unsubscribe_url, "https://acme.example/u?t=1");
  EXPECT_EQ(r->unsubscribe_mailto, "unsub@acme.example");
  EXPECT_EQ(r->not_before_ms, 1795946400000);
  EXPECT_EQ(r->expires_at_ms, 1795946400000 + 86400000 + 250);
}

TEST(ParseJob, AcceptsRawInsteadOfTextAndSubject) {
  auto r = parse_job(
      R"({"v":1,"id":"r1","account":"a","mailbox":"m","to":{"email":"b@example.org"},"raw":"Subject: x\r\n\r\nbody"})");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->raw, "Subject: x\r\n\r\nbody");
  EXPECT_TRUE(r->to_name.empty());
}

TEST(ParseJob, UnescapesJsonStrings) {
  auto r = parse_job(replace(R"("Quick question")", R"("Caf\u00e9 \"special\" \ud83d\ude00")"));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->subject, "Caf\xc3\xa9 \"special\" \xf0\x9f\x98\x80");
}

TEST(ParseJob, NullOptionalFieldsMeanAbsent) {
  auto r = parse_job(with(R"("from_name":null,"headers":null,"not_before":null,"html":null)"));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r->from_name.empty());
  EXPECT_EQ(r->not_before_ms, 0);
}

TEST(ParseJob, IgnoresUnknownFieldsOfAnyShape) {
  EXPECT_TRUE(parse_job(with(R"("future":[{"a":null}],"n":1.5e3,"b":true)")).ok());
}

// --- the document ---
TEST(ParseJob, RejectsInvalidJson) { expect_rejected(R"({"v":1,)", "job"); }
TEST(ParseJob, RejectsNonObject) { expect_rejected(R"([1,2,3])", "job"); }
TEST(ParseJob, RejectsEmptyInput) { expect_rejected("", "job"); }
TEST(ParseJob, RejectsTrailingContent) { expect_rejected(kBase + R"( {"v":1})", "job"); }
TEST(ParseJob, RejectsInvalidUtf8) { expect_rejected(replace("Quick question", "Quick \xc3\x28"), "job"); }
TEST(ParseJob, RejectsOversizedDocument) {
  // Even an ignored field counts: the document is bounded before it is parsed.
  const std::string doc = with("\"pad\":\"" + std::string(3 * 1024 + 65536, 'x') + "\"");
  auto r = parse_job(doc, 1024);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "job");
  EXPECT_TRUE(parse_job(doc).ok());
}

// --- v ---
TEST(ParseJob, RejectsMissingVersion) { expect_rejected(replace(R"("v":1,)", ""), "v"); }
TEST(ParseJob, RejectsOtherVersion) { expect_rejected(replace(R"("v":1)", R"("v":2)"), "v"); }
TEST(ParseJob, RejectsVersionAsString) { expect_rejected(replace(R"("v":1)", R"("v":"1")"), "v"); }
TEST(ParseJob, RejectsDuplicateField) { expect_rejected(with(R"("id":"again")"), "id"); }

// --- id, account, mailbox, campaign ---
TEST(ParseJob, RejectsMissingId) { expect_rejected(replace(R"("id":"c0ffee-42",)", ""), "id"); }
TEST(ParseJob, RejectsEmptyId) { expect_rejected(replace(R"("c0ffee-42")", R"("")"), "id"); }
TEST(ParseJob, RejectsIdWithSpace) { expect_rejected(replace(R"("c0ffee-42")", R"("c0ffee 42")"), "id"); }
TEST(ParseJob, RejectsIdWithNonAscii) { expect_rejected(replace(R"("c0ffee-42")", R"("caf\u00e9")"), "id"); }
TEST(ParseJob, AcceptsIdOf200AndRejects201) {
  EXPECT_TRUE(parse_job(replace(R"("c0ffee-42")", "\"" + std::string(200, 'i') + "\"")).ok());
  expect_rejected(replace(R"("c0ffee-42")", "\"" + std::string(201, 'i') + "\""), "id");
}
TEST(ParseJob, RejectsIdAsNumber) { expect_rejected(replace(R"("c0ffee-42")", "42"), "id"); }
TEST(ParseJob, RejectsMissingAccount) { expect_rejected(replace(R"("account":"acct_42",)", ""), "account"); }
TEST(ParseJob, RejectsAccountAsObject) { expect_rejected(replace(R"("acct_42")", "{}"), "account"); }
TEST(ParseJob, RejectsMissingMailbox) { expect_rejected(replace(R"("mailbox":"mbx_7",)", ""), "mailbox"); }
TEST(ParseJob, RejectsMailboxWithNewline) { expect_rejected(replace(R"("mbx_7")", R"("mbx\n7")"), "mailbox"); }
TEST(ParseJob, RejectsCampaignWithSpace) { expect_rejected(with(R"("campaign":"cmp 1")"), "campaign"); }

// --- to ---
TEST(ParseJob, RejectsMissingTo) {
  expect_rejected(replace(R"("to":{"email":"bob@example.org","name":"Bob"},)", ""), "to");
}
TEST(ParseJob, RejectsToAsString) {
  expect_rejected(replace(R"({"email":"bob@example.org","name":"Bob"})", R"("bob@example.org")"), "to");
}
TEST(ParseJob, RejectsToWithoutEmail) {
  expect_rejected(replace(R"("email":"bob@example.org",)", ""), "to.email");
}
TEST(ParseJob, RejectsEmailWithoutAt) { expect_rejected(replace("bob@example.org", "bob.example.org"), "to.email"); }
TEST(ParseJob, RejectsEmailWithoutDotInDomain) { expect_rejected(replace("bob@example.org", "bob@localhost"), "to.email"); }
// Address literals are refused by the one address check (core/address.h): they would bypass MX
// routing and the name rules, and the composer never accepted them anyway.
TEST(ParseJob, RejectsEmailWithAddressLiteral) { expect_rejected(replace("bob@example.org", "bob@[192.0.2.1]"), "to.email"); }
TEST(ParseJob, InternationalAddressesAreNormalised) {
  auto idn = parse_job(replace("bob@example.org", "Bob@B\xc3\xbc" "cher.Example"));
  ASSERT_TRUE(idn.ok()) << idn.error().to_string();
  EXPECT_EQ(idn->to_email, "Bob@xn--bcher-kva.example");  // the local part as given
  auto utf8 = parse_job(replace("bob@example.org", "j\xc3\xb6s\xc3\xa9@example.org"));
  ASSERT_TRUE(utf8.ok()) << utf8.error().to_string();
  EXPECT_EQ(utf8->to_email, "j\xc3\xb6s\xc3\xa9@example.org");
  auto mailto = parse_job(with(R"("unsubscribe":{"mailto":"mailto:unsub@B\u00fccher.example"})"));
  ASSERT_TRUE(mailto.ok()) << mailto.error().to_string();
  EXPECT_EQ(mailto->unsubscribe_mailto, "unsub@xn--bcher-kva.example");
}
TEST(ParseJob, AddressErrorsSayWhatIsWrong) {
  auto r = parse_job(replace("bob@example.org", "bob@xn--ls8h.example"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().to_string().rfind("to.email: the domain label 'xn--ls8h' is not valid IDNA2008", 0), 0u)
      << r.error().to_string();
  auto literal = parse_job(with(R"("reply_to":"a@[192.0.2.1]")"));
  ASSERT_FALSE(literal.ok());
  EXPECT_EQ(literal.error().to_string().rfind("reply_to: address literals", 0), 0u) << literal.error().to_string();
}
TEST(ParseJob, RejectsEmailWithSpace) { expect_rejected(replace("bob@example.org", "bob smith@example.org"), "to.email"); }
TEST(ParseJob, RejectsEmailWithAngleBrackets) {
  expect_rejected(replace("bob@example.org", "<bob@example.org>"), "to.email");
}
TEST(ParseJob, RejectsEmailWithCrLf) {
  expect_rejected(replace("bob@example.org", R"(bob@example.org\r\nRCPT TO:<x@y.z>)"), "to.email");
}
TEST(ParseJob, RejectsOverlongEmail) {
  expect_rejected(replace("bob@example.org", "b@" + std::string(250, 'e') + ".org"), "to.email");
}
TEST(ParseJob, RejectsEmailAsNumber) { expect_rejected(replace(R"("bob@example.org")", "7"), "to.email"); }
TEST(ParseJob, RejectsToNameWithCrLf) { expect_rejected(replace(R"("Bob")", R"("Bob\r\nBcc: x@y.z")"), "to.name"); }
TEST(ParseJob, RejectsToNameWithControlCharacter) { expect_rejected(replace(R"("Bob")", R"("Bo\u0000b")"), "to.name"); }

// --- header-ish fields ---
TEST(ParseJob, RejectsSubjectWithLf) { expect_rejected(replace("Quick question", R"(Quick\nBcc: x@y.z)"), "subject"); }
TEST(ParseJob, RejectsSubjectAsArray) { expect_rejected(replace(R"("Quick question")", R"(["a"])"), "subject"); }
TEST(ParseJob, RejectsMissingSubjectForText) {
  expect_rejected(replace(R"("subject":"Quick question",)", ""), "subject");
}
TEST(ParseJob, AcceptsSubjectOf998AndRejects999) {
  EXPECT_TRUE(parse_job(replace("Quick question", std::string(998, 's'))).ok());
  expect_rejected(replace("Quick question", std::string(999, 's')), "subject");
}
TEST(ParseJob, RejectsFromNameWithCr) { expect_rejected(with(R"("from_name":"Alice\rX")"), "from_name"); }
TEST(ParseJob, RejectsReplyToThatIsNotAnAddress) { expect_rejected(with(R"("reply_to":"alice")"), "reply_to"); }
TEST(ParseJob, RejectsReplyToWithCrLf) {
  expect_rejected(with(R"("reply_to":"a@b.example\r\nBcc: x@y.z")"), "reply_to");
}

// --- headers ---
TEST(ParseJob, RejectsHeadersAsArray) { expect_rejected(with(R"("headers":["X-A: 1"])"), "headers"); }
TEST(ParseJob, RejectsHeaderValueWithCrLf) {
  expect_rejected(with(R"("headers":{"X-A":"1\r\nBcc: x@y.z"})"), "headers.X-A");
}
TEST(ParseJob, RejectsHeaderValueAsNumber) { expect_rejected(with(R"("headers":{"X-A":1})"), "headers.X-A"); }
TEST(ParseJob, RejectsHeaderNameWithColon) { expect_rejected(with(R"("headers":{"X-A:":"1"})"), "headers.X-A:"); }
TEST(ParseJob, RejectsHeaderNameWithSpace) { expect_rejected(with(R"("headers":{"X A":"1"})"), "headers.X A"); }
TEST(ParseJob, RejectsReservedHeaderInAnyCase) { expect_rejected(with(R"("headers":{"bcc":"x@y.z"})"), "headers.bcc"); }
TEST(ParseJob, RejectsDuplicateHeaderIgnoringCase) {
  expect_rejected(with(R"("headers":{"X-A":"1","x-a":"2"})"), "headers.x-a");
}
TEST(ParseJob, RejectsHeaderLineOver998) {
  EXPECT_TRUE(parse_job(with(R"("headers":{"X-A":")" + std::string(998 - 5, 'v') + "\"}")).ok());
  expect_rejected(with(R"("headers":{"X-A":")" + std::string(998 - 4, 'v') + "\"}"), "headers.X-A");
}
TEST(ParseJob, RejectsTooManyHeaders) {
  std::string h = R"("headers":{)";
  for (int i = 0; i <= 100; ++i) h += (i ? ",\"X-H" : "\"X-H") + std::to_string(i) + "\":\"v\"";
  expect_rejected(with(h + "}"), "headers");
}

// --- bodies ---
TEST(ParseJob, RejectsJobWithoutBody) { expect_rejected(replace(R"(,"text":"Hi Bob")", ""), "text"); }
TEST(ParseJob, RejectsRawTogetherWithText) { expect_rejected(with(R"("raw":"Subject: x\r\n\r\nb")"), "raw"); }
TEST(ParseJob, RejectsTextAsNumber) { expect_rejected(replace(R"("Hi Bob")", "5"), "text"); }
TEST(ParseJob, RejectsHtmlAsBool) { expect_rejected(with(R"("html":true)"), "html"); }
TEST(ParseJob, RejectsTextWithNul) { expect_rejected(replace(R"("Hi Bob")", R"("Hi\u0000Bob")"), "text"); }
TEST(ParseJob, BoundsBodiesTogether) {
  const std::string big(600, 'x');
  auto r = parse_job(replace(R"("Hi Bob")", "\"" + big + "\",\"html\":\"" + big + "\""), 1000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "html");
  EXPECT_TRUE(parse_job(replace(R"("Hi Bob")", "\"" + big + "\""), 1000).ok());
}

// --- unsubscribe ---
TEST(ParseJob, RejectsUnsubscribeAsString) { expect_rejected(with(R"("unsubscribe":"https://x.example")"), "unsubscribe"); }
TEST(ParseJob, RejectsUnsubscribeUrlNotHttp) {
  expect_rejected(with(R"x("unsubscribe":{"url":"javascript:alert(1)"})x"), "unsubscribe.url");
}
TEST(ParseJob, RejectsUnsubscribeUrlWithSpace) {
  expect_rejected(with(R"("unsubscribe":{"url":"https://x.example/a b"})"), "unsubscribe.url");
}
TEST(ParseJob, RejectsUnsubscribeMailtoNotAnAddress) {
  expect_rejected(with(R"("unsubscribe":{"mailto":"mailto:nobody"})"), "unsubscribe.mailto");
}

// --- times ---
TEST(ParseJob, RejectsNotBeforeWithoutZone) { expect_rejected(with(R"("not_before":"2026-11-29T10:00:00")"), "not_before"); }
TEST(ParseJob, RejectsExpiresAtAsNumber) { expect_rejected(with(R"("expires_at":1795946400)"), "expires_at"); }
TEST(ParseJob, RejectsImpossibleDate) { expect_rejected(with(R"("expires_at":"2026-02-29T10:00:00Z")"), "expires_at"); }

TEST(Rfc3339, ParsesUtcOffsetsAndFractions) {
  int64_t ms = 0;
  ASSERT_TRUE(parse_rfc3339_ms("1970-01-01T00:00:00Z", ms));
  EXPECT_EQ(ms, 0);
  ASSERT_TRUE(parse_rfc3339_ms("2024-02-29T23:59:59.999Z", ms));
  EXPECT_EQ(ms, 1709251199999);
  ASSERT_TRUE(parse_rfc3339_ms("2026-11-29T12:00:00+02:00", ms));
  EXPECT_EQ(ms, 1795946400000);
  ASSERT_TRUE(parse_rfc3339_ms("2026-11-29t10:00:00.5z", ms));
  EXPECT_EQ(ms, 1795946400500);
  EXPECT_FALSE(parse_rfc3339_ms("2026-13-01T00:00:00Z", ms));
  EXPECT_FALSE(parse_rfc3339_ms("2026-11-29 10:00:00Z", ms));
  EXPECT_FALSE(parse_rfc3339_ms("2026-11-29T10:00:00.Z", ms));
  EXPECT_FALSE(parse_rfc3339_ms("2026-11-29T24:00:00Z", ms));
  EXPECT_FALSE(parse_rfc3339_ms("2026-11-29T10:00:00Zjunk", ms));
}

TEST(JobError, ToStringNamesTheField) { EXPECT_EQ((JobError{"to.email", "required"}).to_string(), "to.email: required"); }

}  // namespace
}  // namespace deliverd::queue
