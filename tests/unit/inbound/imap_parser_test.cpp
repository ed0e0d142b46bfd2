#include "inbound/imap_parser.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace deliverd::inbound {
namespace {

using namespace std::string_literals;

struct Parsed {
  std::vector<Response> responses;
  std::optional<ParseError> error;
};

// Feeds the chunks in order, draining after each as the client does.
Parsed parse_chunks(const std::vector<std::string>& chunks, ParserLimits limits = {}) {
  ResponseParser p(limits);
  Parsed out;
  for (const auto& c : chunks) {
    p.feed(c);
    for (;;) {
      auto r = p.next();
      if (!r) {
        out.error = r.error();
        return out;
      }
      if (!r.value()) break;
      out.responses.push_back(std::move(*r.value()));
    }
  }
  return out;
}

Parsed parse(const std::string& s, ParserLimits limits = {}) { return parse_chunks({s}, limits); }

Response one(const std::string& s) {
  auto p = parse(s);
  EXPECT_FALSE(p.error) << p.error->detail;
  EXPECT_EQ(p.responses.size(), 1u) << s;
  return p.responses.empty() ? Response{} : p.responses[0];
}

std::vector<std::string> bytewise(const std::string& s) {
  std::vector<std::string> out;
  for (char c : s) out.emplace_back(1, c);
  return out;
}

TEST(ImapParser, DovecotGreetingCarriesCapabilitiesInItsCode) {
  auto r =
      one("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] "
          "Dovecot (Debian) ready.\r\n");
  EXPECT_EQ(r.kind, ResponseKind::Untagged);
  EXPECT_EQ(r.data, DataKind::Status);
  EXPECT_EQ(r.condition, Condition::Ok);
  EXPECT_EQ(r.code.code, Code::Capability);
  EXPECT_EQ(r.code.args, (std::vector<std::string>{"IMAP4REV1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE",
                                                   "LITERAL+", "STARTTLS", "AUTH=PLAIN"}));
  EXPECT_EQ(r.text, "Dovecot (Debian) ready.");
}

TEST(ImapParser, GmailAndOutlookGreetingsHaveNoCode) {
  auto g = one("* OK Gimap ready for requests from 192.0.2.1 h12mb123456\r\n");
  EXPECT_EQ(g.condition, Condition::Ok);
  EXPECT_EQ(g.code.code, Code::None);
  EXPECT_EQ(g.text, "Gimap ready for requests from 192.0.2.1 h12mb123456");
  // Brackets that do not follow the status are text.
  auto o = one("* OK The Microsoft Exchange IMAP4 service is ready. [TQBOADIAUABSADAAMgBDAEEA]\r\n");
  EXPECT_EQ(o.code.code, Code::None);
  EXPECT_EQ(o.text, "The Microsoft Exchange IMAP4 service is ready. [TQBOADIAUABSADAAMgBDAEEA]");
}

TEST(ImapParser, SelectResponsesFromRfc3501) {
  auto p = parse(
      "* 172 EXISTS\r\n"
      "* 1 RECENT\r\n"
      "* OK [UNSEEN 12] Message 12 is first unseen\r\n"
      "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
      "* OK [UIDNEXT 4392] Predicted next UID\r\n"
      "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
      "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
      "A142 OK [READ-WRITE] SELECT completed\r\n");
  ASSERT_FALSE(p.error) << p.error->detail;
  ASSERT_EQ(p.responses.size(), 8u);
  EXPECT_EQ(p.responses[0].data, DataKind::Exists);
  EXPECT_EQ(p.responses[0].number, 172u);
  EXPECT_EQ(p.responses[1].data, DataKind::Recent);
  EXPECT_EQ(p.responses[2].code.code, Code::Unseen);
  EXPECT_EQ(p.responses[2].code.number, 12u);
  EXPECT_EQ(p.responses[3].code.code, Code::UidValidity);
  EXPECT_EQ(p.responses[3].code.number, 3857529045u);
  EXPECT_EQ(p.responses[4].code.code, Code::UidNext);
  EXPECT_EQ(p.responses[4].code.number, 4392u);
  EXPECT_EQ(p.responses[5].data, DataKind::Flags);
  EXPECT_EQ(p.responses[5].atoms,
            (std::vector<std::string>{"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"}));
  EXPECT_EQ(p.responses[6].code.code, Code::PermanentFlags);
  EXPECT_EQ(p.responses[6].code.args, (std::vector<std::string>{"\\Deleted", "\\Seen", "\\*"}));
  EXPECT_EQ(p.responses[7].kind, ResponseKind::Tagged);
  EXPECT_EQ(p.responses[7].tag, "A142");
  EXPECT_EQ(p.responses[7].condition, Condition::Ok);
  EXPECT_EQ(p.responses[7].code.code, Code::ReadWrite);
  EXPECT_EQ(p.responses[7].text, "SELECT completed");
}

TEST(ImapParser, ContinuationsCarryTheirText) {
  auto p = parse("+ idling\r\n+ \r\n+\r\n+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
  ASSERT_FALSE(p.error) << p.error->detail;
  ASSERT_EQ(p.responses.size(), 4u);
  for (const auto& r : p.responses) EXPECT_EQ(r.kind, ResponseKind::Continuation);
  EXPECT_EQ(p.responses[0].text, "idling");
  EXPECT_EQ(p.responses[1].text, "");
  EXPECT_EQ(p.responses[2].text, "");
  EXPECT_EQ(p.responses[3].text, "eyJzdGF0dXMiOiI0MDEifQ==");
}

TEST(ImapParser, ProviderFailuresAreTypedCodes) {
  auto bye = one("* BYE [UNAVAILABLE] Server shutting down\r\n");
  EXPECT_EQ(bye.condition, Condition::Bye);
  EXPECT_EQ(bye.code.code, Code::Unavailable);
  auto limit = one("a3 NO [LIMIT] Too many simultaneous connections\r\n");
  EXPECT_EQ(limit.condition, Condition::No);
  EXPECT_EQ(limit.code.code, Code::Limit);
  auto auth = one("a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  EXPECT_EQ(auth.code.code, Code::AuthenticationFailed);
  auto unknown = one("a4 OK [X-GM-SOMETHING 12 (a b)] fine\r\n");
  EXPECT_EQ(unknown.code.code, Code::Other);
  EXPECT_EQ(unknown.code.name, "X-GM-SOMETHING");
  EXPECT_EQ(unknown.code.raw, "12 (a b)");
  EXPECT_EQ(unknown.text, "fine");
  auto bare = one("* BYE\r\n");
  EXPECT_EQ(bare.condition, Condition::Bye);
}

TEST(ImapParser, AppendUidNamesTheNewMessage) {
  auto r = one("A003 OK [APPENDUID 38505 3955] APPEND completed\r\n");
  EXPECT_EQ(r.code.code, Code::AppendUid);
  EXPECT_EQ(r.code.number, 38505u);
  EXPECT_EQ(r.code.args, (std::vector<std::string>{"3955"}));
}

TEST(ImapParser, SearchAndESearchResults) {
  auto s = one("* SEARCH 2 84 882\r\n");
  EXPECT_EQ(s.data, DataKind::Search);
  EXPECT_EQ(s.numbers, (std::vector<uint32_t>{2, 84, 882}));
  auto empty = one("* SEARCH\r\n");
  EXPECT_EQ(empty.data, DataKind::Search);
  EXPECT_TRUE(empty.numbers.empty());
  auto modseq = one("* SEARCH 2 5 6 (MODSEQ 917162500)\r\n");
  EXPECT_EQ(modseq.numbers, (std::vector<uint32_t>{2, 5, 6}));
  auto e = one("* ESEARCH (TAG \"A282\") UID MIN 2 COUNT 3 ALL 2,10:11\r\n");
  EXPECT_EQ(e.data, DataKind::ESearch);
  EXPECT_EQ(e.esearch.tag, "A282");
  EXPECT_TRUE(e.esearch.uid);
  EXPECT_EQ(e.esearch.min, 2u);
  EXPECT_EQ(e.esearch.count, 3u);
  EXPECT_EQ(e.esearch.all, (std::vector<std::pair<uint32_t, uint32_t>>{{2, 2}, {10, 11}}));
  // The range is kept, not expanded: a hostile server cannot make us allocate four billion UIDs.
  auto big = one("* ESEARCH (TAG \"a1\") UID ALL 1:4294967295\r\n");
  EXPECT_EQ(big.esearch.all.size(), 1u);
}

TEST(ImapParser, ExpungeAndCapabilityData) {
  auto x = one("* 44 EXPUNGE\r\n");
  EXPECT_EQ(x.data, DataKind::Expunge);
  EXPECT_EQ(x.number, 44u);
  auto c = one("* CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS AUTH=PLAIN AUTH=XOAUTH2 LOGINDISABLED\r\n");
  EXPECT_EQ(c.data, DataKind::Capability);
  EXPECT_EQ(c.atoms, (std::vector<std::string>{"IMAP4REV1", "IMAP4REV2", "STARTTLS", "AUTH=PLAIN", "AUTH=XOAUTH2",
                                               "LOGINDISABLED"}));
}

TEST(ImapParser, FetchItemsAndAHeaderLiteralSplitAnywhere) {
  std::string header = "From: a@example.org\r\nSubject: hi\r\n\r\n";
  std::string wire =
      "* 12 FETCH (UID 4827313 FLAGS (\\Recent $Junk) RFC822.SIZE 44827 INTERNALDATE "
      "\"17-Jul-1996 02:44:25 -0700\" BODY[HEADER] {" +
      std::to_string(header.size()) + "}\r\n" + header + ")\r\n";
  for (const auto& chunks : {std::vector<std::string>{wire}, bytewise(wire)}) {
    auto p = parse_chunks(chunks);
    ASSERT_FALSE(p.error) << p.error->detail;
    ASSERT_EQ(p.responses.size(), 1u);
    const FetchData& f = p.responses[0].fetch;
    EXPECT_EQ(p.responses[0].data, DataKind::Fetch);
    EXPECT_EQ(f.seq, 12u);
    EXPECT_EQ(f.uid, 4827313u);
    ASSERT_TRUE(f.flags);
    EXPECT_TRUE(f.has_flag("\\recent"));
    EXPECT_FALSE(f.has_flag("\\Seen"));
    EXPECT_EQ(f.rfc822_size, 44827u);
    EXPECT_EQ(f.internal_date, "17-Jul-1996 02:44:25 -0700");
    ASSERT_NE(f.section("header"), nullptr);
    EXPECT_EQ(f.section("HEADER")->data, header);
    EXPECT_EQ(p.responses[0].wire_bytes, wire.size());
  }
}

TEST(ImapParser, SectionsWithFieldListsOriginsNilAndLiteralVariants) {
  auto r =
      one("* 3 FETCH (UID 9 BODY[HEADER.FIELDS (FROM \"TO\")] {4}\r\nab\r\n BODY[1.2]<0> {3+}\r\nxyz "
          "BINARY[2] ~{2}\r\n\x00\x01 BODY[3] NIL RFC822.HEADER \"H\")\r\n"s);
  const FetchData& f = r.fetch;
  ASSERT_EQ(f.sections.size(), 5u);
  ASSERT_NE(f.section("HEADER.FIELDS (FROM \"TO\")"), nullptr);
  EXPECT_EQ(f.section("HEADER.FIELDS (FROM \"TO\")")->data, "ab\r\n");
  EXPECT_EQ(f.section("1.2")->origin, 0u);
  EXPECT_EQ(f.section("1.2")->data, "xyz");
  EXPECT_TRUE(f.section("2")->binary);
  EXPECT_EQ(f.section("2")->data, std::string("\x00\x01", 2));
  EXPECT_FALSE(f.section("3")->data.has_value());
  EXPECT_EQ(f.section("HEADER")->data, "H");
}

TEST(ImapParser, GmailExtensionItemsAreSkipped) {
  auto r =
      one("* 1 FETCH (X-GM-THRID 1278455344230334865 X-GM-MSGID 1278455344230334865 X-GM-LABELS (\\Inbox \"a b\") "
          "UID 4 MODSEQ (12121231000) FLAGS (\\Seen))\r\n");
  EXPECT_EQ(r.fetch.uid, 4u);
  EXPECT_EQ(r.fetch.modseq, 12121231000u);
  EXPECT_TRUE(r.fetch.has_flag("\\Seen"));
}

TEST(ImapParser, BodyStructureFromRfc3501) {
  auto r =
      one("* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)(\"TEXT\" "
          "\"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") \"<960723163407.20117h@cac.washington.edu>\" "
          "\"Compiler diff\" \"BASE64\" 4554 73) \"MIXED\"))\r\n");
  ASSERT_TRUE(r.fetch.body_structure);
  const BodyPart& b = *r.fetch.body_structure;
  EXPECT_TRUE(b.multipart());
  EXPECT_EQ(b.subtype, "mixed");
  ASSERT_EQ(b.parts.size(), 2u);
  EXPECT_EQ(b.parts[0].type, "text");
  EXPECT_EQ(b.parts[0].subtype, "plain");
  EXPECT_EQ(b.parts[0].param("charset"), "US-ASCII");
  EXPECT_EQ(b.parts[0].size, 1152u);
  EXPECT_EQ(b.parts[0].lines, 23u);
  EXPECT_EQ(b.parts[0].section, "1");
  EXPECT_EQ(b.parts[1].param("NAME"), "cc.diff");
  EXPECT_EQ(b.parts[1].encoding, "base64");
  EXPECT_EQ(b.parts[1].description, "Compiler diff");
  EXPECT_EQ(b.parts[1].section, "2");
}

// A bounce as Dovecot describes it: multipart/report with the human part, the delivery status and
// the returned message (itself multipart), with every kind of extension data.
TEST(ImapParser, BodyStructureOfADsnWithExtensionDataAndSectionNumbers) {
  const std::string env = "(\"Mon, 7 Feb 1994 21:52:25 -0800\" \"hi\" NIL NIL NIL NIL NIL NIL NIL \"<a@b>\")";
  const std::string returned = "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 900 " + env +
                               " ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL)"
                               "(\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 20 1 NIL NIL "
                               "NIL NIL) \"alternative\" (\"boundary\" \"b2\") NIL NIL NIL) 30 NIL "
                               "(\"inline\" NIL) NIL NIL)";
  const std::string wire =
      "* 7 FETCH (UID 70 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL \"Notification\" \"7bit\" "
      "400 8 NIL NIL NIL NIL)(\"message\" \"delivery-status\" NIL NIL \"Delivery report\" \"7bit\" 300 NIL NIL NIL "
      "NIL)" +
      returned +
      " \"report\" (\"report-type\" \"delivery-status\" \"boundary\" \"b1\") NIL (\"en\") \"http://x\" (1 "
      "\"ext\")))\r\n";
  auto r = one(wire);
  ASSERT_TRUE(r.fetch.body_structure);
  const BodyPart& b = *r.fetch.body_structure;
  EXPECT_EQ(b.type, "multipart");
  EXPECT_EQ(b.subtype, "report");
  EXPECT_EQ(b.param("report-type"), "delivery-status");
  EXPECT_EQ(b.section, "");
  ASSERT_EQ(b.parts.size(), 3u);
  EXPECT_EQ(b.parts[1].type, "message");
  EXPECT_EQ(b.parts[1].subtype, "delivery-status");
  EXPECT_EQ(b.parts[1].section, "2");
  const BodyPart& msg = b.parts[2];
  EXPECT_EQ(msg.subtype, "rfc822");
  EXPECT_EQ(msg.section, "3");
  EXPECT_EQ(msg.lines, 30u);
  EXPECT_EQ(msg.disposition, "inline");
  ASSERT_EQ(msg.parts.size(), 1u);
  EXPECT_EQ(msg.parts[0].subtype, "alternative");
  ASSERT_EQ(msg.parts[0].parts.size(), 2u);
  EXPECT_EQ(msg.parts[0].parts[0].section, "3.1");
  EXPECT_EQ(msg.parts[0].parts[1].section, "3.2");
  EXPECT_EQ(msg.parts[0].parts[1].encoding, "quoted-printable");
}

TEST(ImapParser, SectionNumbersFollowRfc3501Example) {
  // RFC 3501 §6.4.5: parts 1 and 2, 3 (a message whose body is multipart), 4 (multipart with a
  // message inside, whose body is multipart with an alternative inside).
  auto leaf = [](const std::string& t, const std::string& s) {
    return "(\"" + t + "\" \"" + s + "\" NIL NIL NIL \"7bit\" 1" + (t == "text" ? " 1" : "") + ")";
  };
  const std::string env = "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)";
  auto message = [&](const std::string& body) {
    return "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 1 " + env + " " + body + " 1)";
  };
  std::string part3 = message("(" + leaf("text", "plain") + leaf("application", "octet-stream") + " \"mixed\")");
  std::string alt = "(" + leaf("text", "plain") + leaf("text", "richtext") + " \"alternative\")";
  std::string part4 =
      "(" + leaf("image", "gif") + message("(" + leaf("text", "plain") + alt + " \"mixed\")") + " \"mixed\")";
  std::string bs = "(" + leaf("text", "plain") + leaf("application", "octet-stream") + part3 + part4 + " \"mixed\")";
  auto r = one("* 1 FETCH (BODYSTRUCTURE " + bs + ")\r\n");
  ASSERT_TRUE(r.fetch.body_structure);
  std::vector<std::string> seen;
  std::function<void(const BodyPart&)> walk = [&](const BodyPart& p) {
    if (!p.multipart()) seen.push_back(p.section + " " + p.type + "/" + p.subtype);
    for (const auto& c : p.parts) walk(c);
  };
  walk(*r.fetch.body_structure);
  EXPECT_EQ(seen, (std::vector<std::string>{"1 text/plain", "2 application/octet-stream", "3 message/rfc822",
                                            "3.1 text/plain", "3.2 application/octet-stream", "4.1 image/gif",
                                            "4.2 message/rfc822", "4.2.1 text/plain", "4.2.2.1 text/plain",
                                            "4.2.2.2 text/richtext"}));
}

TEST(ImapParser, SingleMessageBodyIsPartOne) {
  auto r = one("* 2 FETCH (BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"UTF-8\") NIL NIL \"8BIT\" 5 1))\r\n");
  ASSERT_TRUE(r.fetch.body_structure);
  EXPECT_EQ(r.fetch.body_structure->section, "1");
}

TEST(ImapParser, QuotedStringsUnescapeAndUnknownDataIsKept) {
  auto r = one("* LIST (\\HasNoChildren) \"/\" \"a \\\"b\\\" \\\\c\"\r\n");
  EXPECT_EQ(r.data, DataKind::Other);
  EXPECT_EQ(r.name, "LIST");
  ASSERT_EQ(r.values.size(), 3u);
  EXPECT_EQ(r.values[0].items[0].text, "\\HasNoChildren");
  EXPECT_EQ(r.values[2].text, "a \"b\" \\c");
}

TEST(ImapParser, SeveralResponsesInOneReadAndOneAcrossReads) {
  auto p = parse_chunks({"* 3 EXISTS\r\na1 OK do", "ne\r\n* 4 EXI", "STS\r\n"});
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.responses.size(), 3u);
  EXPECT_EQ(p.responses[1].text, "done");
  EXPECT_EQ(p.responses[2].number, 4u);
}

TEST(ImapParser, BytesAfterAResponseStayBuffered) {
  ResponseParser p;
  p.feed("a1 OK Begin TLS negotiation now\r\n* OK injected\r\n");
  auto r = p.next();
  ASSERT_TRUE(r && r.value());
  EXPECT_GT(p.buffered(), 0u);  // the client refuses these: they came before TLS
}

TEST(ImapParser, ALiteralLargerThanTheBoundIsRefusedBeforeItsBytesArrive) {
  ParserLimits limits;
  limits.max_literal = 1000;
  ResponseParser p(limits);
  p.feed("* 1 FETCH (BODY[] {5000000000}\r\n");
  auto r = p.next();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ParseErrorKind::LiteralTooLarge);
  EXPECT_NE(r.error().detail.find("max_literal"), std::string::npos) << r.error().detail;
  EXPECT_EQ(p.buffered(), 0u);
  // Sticky: the stream is out of sync.
  p.feed("a1 OK fine\r\n");
  EXPECT_FALSE(p.next());
  // Even a length too long to be a number is named, not parsed.
  auto q = parse("* 1 FETCH (BODY[] {99999999999999999999999999}\r\n");
  ASSERT_TRUE(q.error);
  EXPECT_EQ(q.error->kind, ParseErrorKind::LiteralTooLarge);
}

TEST(ImapParser, ResponseAndLineBoundsAreNamed) {
  ParserLimits limits;
  limits.max_response = 100;
  limits.max_literal = 1000;
  auto r = parse("* 1 FETCH (BODY[1] {60}\r\n" + std::string(60, 'x') + " BODY[2] {60}\r\n", limits);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->kind, ParseErrorKind::ResponseTooLarge);
  EXPECT_NE(r.error->detail.find("max_response"), std::string::npos);
  ParserLimits line;
  line.max_line = 50;
  auto l = parse("* OK " + std::string(100, 'y'), line);  // no CRLF yet: refused before it ends
  ASSERT_TRUE(l.error);
  EXPECT_EQ(l.error->kind, ParseErrorKind::LineTooLong);
}

TEST(ImapParser, NestingAndValueCountAreBounded) {
  ParserLimits limits;
  limits.max_depth = 8;
  auto deep = parse("* 1 FETCH (BODYSTRUCTURE " + std::string(20, '(') + ")\r\n", limits);
  ASSERT_TRUE(deep.error);
  EXPECT_EQ(deep.error->kind, ParseErrorKind::TooDeep);
  ParserLimits few;
  few.max_values = 100;
  std::string many = "* LIST";
  for (int i = 0; i < 200; ++i) many += " a";
  auto m = parse(many + "\r\n", few);
  ASSERT_TRUE(m.error);
  EXPECT_EQ(m.error->kind, ParseErrorKind::TooManyValues);
}

TEST(ImapParser, MalformedResponsesAreSyntaxErrors) {
  const std::vector<std::string> bad_inputs = {std::string("\x00\xff garbage\r\n", 13),
                                               "* 1 FETCH (UID)\r\n",
                                               "* 1 FETCH (UID 1\r\n",
                                               "a1 PREAUTH nope\r\n",
                                               "* OK [UIDNEXT x] y\r\n",
                                               "* 0 FETCH (UID 1)\r\n",
                                               "* 1 FETCH (UID 99999999999)\r\n",
                                               "* LIST \"unterminated\r\n",
                                               "a+b OK x\r\n"};
  for (const std::string& bad : bad_inputs) {
    auto p = parse(bad);
    ASSERT_TRUE(p.error) << bad;
    EXPECT_EQ(p.error->kind, ParseErrorKind::Syntax) << bad;
    EXPECT_FALSE(p.error->detail.empty());
  }
  // On its own (as the fuzz target calls it), a literal longer than what follows is refused.
  auto short_literal = parse_response("* 1 FETCH (BODY[1] {10}\r\nshort)\r\n");
  ASSERT_FALSE(short_literal);
  EXPECT_EQ(short_literal.error().kind, ParseErrorKind::Syntax);
}

}  // namespace
}  // namespace deliverd::inbound
