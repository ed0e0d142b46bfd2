#include "smtp/composer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/utf8.h"

namespace deliverd::smtp {
namespace {

constexpr std::time_t kNow = 1700000000;  // Tue, 14 Nov 2023 22:13:20 +0000

MessageSpec basic() {
  MessageSpec m;
  m.from_email = "alice@acme.example";
  m.from_name = "Alice from Acme";
  m.to_email = "bob@example.org";
  m.to_name = "Bob";
  m.subject = "Quick question";
  m.text = "Hello Bob,\nhow are you?\n";
  return m;
}

std::string compose_ok(const MessageSpec& m) {
  auto r = compose(m, kNow);
  EXPECT_TRUE(r.ok()) << r.error();
  return r.ok() ? r.value() : std::string();
}

// Splits on CRLF, failing the test on any bare CR or LF.
std::vector<std::string> crlf_lines(const std::string& msg) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < msg.size()) {
    size_t e = msg.find("\r\n", i);
    EXPECT_NE(e, std::string::npos) << "message does not end with CRLF";
    if (e == std::string::npos) break;
    std::string line = msg.substr(i, e - i);
    EXPECT_EQ(line.find_first_of("\r\n"), std::string::npos) << "bare CR or LF in: " << line;
    out.push_back(line);
    i = e + 2;
  }
  return out;
}

// The Message-ID value of a message, checked to be <32 hex digits@domain>; "" if absent or malformed.
std::string message_id(const std::string& msg, const std::string& domain) {
  const std::string key = "\r\nMessage-ID: <";
  size_t at = msg.find(key);
  if (at == std::string::npos) return "";
  size_t start = at + key.size(), end = msg.find(">\r\n", start);
  if (end == std::string::npos) return "";
  std::string id = msg.substr(start, end - start);
  if (id.size() != 33 + domain.size() || id.substr(32) != "@" + domain) return "";
  for (size_t i = 0; i < 32; ++i)
    if (std::string_view("0123456789abcdef").find(id[i]) == std::string_view::npos) return "";
  return id;
}

// Every "=?UTF-8?B?…?=" in a line, checked for base64 text.
std::vector<std::string> encoded_words(const std::string& line) {
  std::vector<std::string> out;
  size_t i = 0;
  while ((i = line.find("=?UTF-8?B?", i)) != std::string::npos) {
    size_t end = line.find("?=", i + 10);
    if (end == std::string::npos) break;
    std::string text = line.substr(i + 10, end - i - 10);
    for (char c : text)
      EXPECT_TRUE(isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=') << line;
    out.push_back(line.substr(i, end + 2 - i));
    i = end + 2;
  }
  return out;
}

std::string header_block(const std::string& msg) { return msg.substr(0, msg.find("\r\n\r\n") + 2); }
std::string body_of(const std::string& msg) { return msg.substr(msg.find("\r\n\r\n") + 4); }

TEST(Composer, PlainAsciiMessageHasTheStructuralHeadersAndA7bitBody) {
  auto msg = compose_ok(basic());
  auto h = header_block(msg);
  EXPECT_NE(h.find("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"), std::string::npos);
  EXPECT_NE(h.find("From: Alice from Acme <alice@acme.example>\r\n"), std::string::npos);
  EXPECT_NE(h.find("To: Bob <bob@example.org>\r\n"), std::string::npos);
  EXPECT_NE(h.find("Subject: Quick question\r\n"), std::string::npos);
  EXPECT_NE(h.find("MIME-Version: 1.0\r\n"), std::string::npos);
  EXPECT_NE(h.find("Content-Type: text/plain; charset=utf-8\r\n"), std::string::npos);
  EXPECT_NE(h.find("Content-Transfer-Encoding: 7bit\r\n"), std::string::npos);
  EXPECT_EQ(h.find("Reply-To:"), std::string::npos);
  EXPECT_NE(message_id(h, "acme.example"), "") << h;
  EXPECT_EQ(body_of(msg), "Hello Bob,\r\nhow are you?\r\n");
  crlf_lines(msg);
}

TEST(Composer, MessageIdsDifferAndUseTheGivenDomain) {
  auto m = basic();
  m.message_id_domain = "mail.acme.example";
  auto a = message_id(compose_ok(m), "mail.acme.example"), b = message_id(compose_ok(m), "mail.acme.example");
  ASSERT_NE(a, "");
  ASSERT_NE(b, "");
  EXPECT_NE(a, b);
}

TEST(Composer, DateIsRfc5322InUtc) {
  EXPECT_EQ(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(951782400), "Tue, 29 Feb 2000 00:00:00 +0000");
}

TEST(Composer, ReplyToAndExtraHeadersAreEmitted) {
  auto m = basic();
  m.reply_to = "replies@acme.example";
  m.headers = {{"X-Campaign-Id", "cmp_1"}, {"List-Unsubscribe", "<https://acme.example/u/1>"}};
  auto h = header_block(compose_ok(m));
  EXPECT_NE(h.find("Reply-To: replies@acme.example\r\n"), std::string::npos);
  EXPECT_NE(h.find("X-Campaign-Id: cmp_1\r\n"), std::string::npos);
  EXPECT_NE(h.find("List-Unsubscribe: <https://acme.example/u/1>\r\n"), std::string::npos);
}

TEST(Composer, NonAsciiDisplayNameIsAnEncodedWord) {
  auto m = basic();
  m.from_name = "Zo\xc3\xab";  // "Zoë"
  auto h = header_block(compose_ok(m));
  EXPECT_NE(h.find("From: =?UTF-8?B?Wm/Dqw==?= <alice@acme.example>\r\n"), std::string::npos) << h;
}

TEST(Composer, DisplayNameWithSpecialsIsQuoted) {
  auto m = basic();
  m.to_name = "Smith, \"Bob\"";
  auto h = header_block(compose_ok(m));
  EXPECT_NE(h.find("To: \"Smith, \\\"Bob\\\"\" <bob@example.org>\r\n"), std::string::npos) << h;
}

TEST(Composer, LongNonAsciiSubjectIsSplitIntoFoldedEncodedWords) {
  auto m = basic();
  m.subject.clear();
  for (int i = 0; i < 40; ++i) m.subject += "\xc3\xa9t\xc3\xa9 ";  // "été "
  auto msg = compose_ok(m);
  auto lines = crlf_lines(header_block(msg));
  int words = 0;
  for (const auto& l : lines) {
    EXPECT_LE(l.size(), 78u) << l;
    for (const auto& w : encoded_words(l)) {
      ++words;
      EXPECT_LE(w.size(), 75u);
    }
  }
  EXPECT_GT(words, 3);
}

TEST(Composer, EncodedWordsNeverSplitACharacter) {
  std::string s;
  for (int i = 0; i < 30; ++i) s += "\xe2\x82\xac";  // "€", three bytes
  auto enc = encode_words(s);
  // 42-byte words hold 14 euros each: 30 = 14 + 14 + 2.
  EXPECT_EQ(std::count(enc.begin(), enc.end(), '?'), 3 * 4);
}

TEST(Composer, LongAsciiSubjectIsFoldedAtSpaces) {
  auto m = basic();
  m.subject.clear();
  for (int i = 0; i < 30; ++i) m.subject += "word" + std::to_string(i) + " ";
  auto lines = crlf_lines(header_block(compose_ok(m)));
  int continuation = 0;
  for (const auto& l : lines) {
    EXPECT_LE(l.size(), 78u);
    if (!l.empty() && l[0] == ' ') ++continuation;
  }
  EXPECT_GT(continuation, 0);
}

TEST(Composer, NonAsciiBodyIsQuotedPrintable) {
  auto m = basic();
  m.text = "Caf\xc3\xa9 = good \nend";
  auto msg = compose_ok(m);
  EXPECT_NE(msg.find("Content-Transfer-Encoding: quoted-printable\r\n"), std::string::npos);
  EXPECT_EQ(body_of(msg), "Caf=C3=A9 =3D good=20\r\nend\r\n");
}

TEST(Composer, LongAsciiLineIsQuotedPrintableWithShortLines) {
  auto m = basic();
  m.text = std::string(3000, 'a') + "\n" + std::string(500, 'b');
  auto msg = compose_ok(m);
  EXPECT_NE(msg.find("Content-Transfer-Encoding: quoted-printable\r\n"), std::string::npos);
  std::string decoded;
  for (const auto& l : crlf_lines(body_of(msg))) {
    EXPECT_LE(l.size(), 76u);
    if (!l.empty() && l.back() == '=') decoded += l.substr(0, l.size() - 1);
    else decoded += l + "\n";
  }
  EXPECT_EQ(decoded, m.text + "\n");
}

TEST(Composer, BodyLinesOfNineHundredNinetyEightStay7bit) {
  auto m = basic();
  m.text = std::string(998, 'x');
  auto msg = compose_ok(m);
  EXPECT_NE(msg.find("Content-Transfer-Encoding: 7bit\r\n"), std::string::npos);
}

TEST(Composer, QuotedPrintableEncodesSoftBreaksAndControls) {
  EXPECT_EQ(quoted_printable("a\tb\t\r\n"), "a\tb=09\r\n");
  EXPECT_EQ(quoted_printable(std::string("\x00x", 2)), "=00x\r\n");
  auto long_line = quoted_printable(std::string(100, '='));
  for (const auto& l : crlf_lines(long_line)) EXPECT_LE(l.size(), 76u);
}

TEST(Composer, LineEndingsAreNormalisedToCrlf) {
  auto m = basic();
  m.text = "a\nb\r\nc\rd";
  EXPECT_EQ(body_of(compose_ok(m)), "a\r\nb\r\nc\r\nd\r\n");
}

TEST(Composer, HeaderInjectionInSubjectIsRefused) {
  auto m = basic();
  m.subject = "hi\r\nBcc: everyone@example.org";
  auto r = compose(m, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rfind("subject:", 0), 0u) << r.error();
}

TEST(Composer, HeaderInjectionInNamesIsRefused) {
  auto m = basic();
  m.from_name = "Alice\nBcc: x@example.org";
  auto r = compose(m, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().rfind("from_name:", 0), 0u) << r.error();
  m = basic();
  m.to_name = "Bob\r";
  EXPECT_EQ(compose(m, kNow).error().rfind("to_name:", 0), 0u);
}

TEST(Composer, ExtraHeaderWithCrlfInValueIsRefusedByName) {
  auto m = basic();
  m.headers = {{"X-Ok", "fine"}, {"X-Campaign-Id", "cmp\r\nBcc: x@example.org"}};
  auto r = compose(m, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("X-Campaign-Id"), std::string::npos) << r.error();
}

TEST(Composer, ExtraHeaderWithInvalidNameIsRefused) {
  for (std::string bad : std::vector<std::string>{"X Bad", "X:Bad", "", "X-\xc3\xa9", "X\x01"}) {
    auto m = basic();
    m.headers = {{bad, "v"}};
    auto r = compose(m, kNow);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().find("invalid name"), std::string::npos) << r.error();
  }
}

TEST(Composer, StructuralHeadersMayNotBeGivenAsExtras) {
  for (std::string name : {"From", "to", "SUBJECT", "Date", "Message-ID", "MIME-Version", "Content-Type",
                           "content-transfer-encoding", "Reply-To"}) {
    auto m = basic();
    m.headers = {{name, "x"}};
    auto r = compose(m, kNow);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_NE(r.error().find(name), std::string::npos) << r.error();
  }
}

TEST(Composer, InvalidAddressesAreRefusedByField) {
  auto m = basic();
  m.to_email = "bob";
  EXPECT_EQ(compose(m, kNow).error().rfind("to_email:", 0), 0u);
  m = basic();
  m.from_email = "alice@acme.example>\r\nRCPT TO:<x@y";
  EXPECT_EQ(compose(m, kNow).error().rfind("from_email:", 0), 0u);
  m = basic();
  m.reply_to = "a b@example.org";
  EXPECT_EQ(compose(m, kNow).error().rfind("reply_to:", 0), 0u);
  m = basic();
  m.to_email = "bob@exa_mple.org";
  EXPECT_EQ(compose(m, kNow).error().rfind("to_email:", 0), 0u);
}

TEST(Composer, IdnDomainsGoIntoTheHeaderAsALabels) {
  auto m = basic();
  m.to_email = "bob@B\xc3\xbc" "cher.example";
  m.to_name.clear();
  std::string msg = compose_ok(m);
  EXPECT_NE(msg.find("To: bob@xn--bcher-kva.example\r\n"), std::string::npos) << msg;
  EXPECT_TRUE(validate_message(msg).ok());  // all ASCII: no SMTPUTF8 needed
}

TEST(Composer, Utf8LocalPartsGoIntoTheHeaderRaw) {
  auto m = basic();
  m.to_email = "j\xc3\xb6s\xc3\xa9@example.org";
  m.to_name = "J\xc3\xb6s\xc3\xa9";
  std::string msg = compose_ok(m);
  // RFC 6532: the addr-spec as UTF-8 (an encoded word is not allowed there); the name still encoded.
  EXPECT_NE(msg.find("To: =?UTF-8?B?SsO2c8Op?= <j\xc3\xb6s\xc3\xa9@example.org>\r\n"), std::string::npos) << msg;
  EXPECT_FALSE(validate_message(msg).ok());  // only valid as an SMTPUTF8 message
  EXPECT_TRUE(validate_message(msg, true).ok());
  EXPECT_FALSE(validate_message("From: a@b.example\r\nDate: x\r\nX: \xc3\r\n\r\n", true).ok());  // still UTF-8
  m.reply_to = "r\xc3\xa9ply@example.org";
  EXPECT_NE(compose_ok(m).find("Reply-To: r\xc3\xa9ply@example.org\r\n"), std::string::npos);
  m = basic();
  m.campaign = "cmp_1";
  m.unsubscribe_mailto = "d\xc3\xa9sabonner@example.org";
  EXPECT_EQ(compose(m, kNow).error().rfind("unsubscribe.mailto: must be ASCII", 0), 0u) << compose(m, kNow).error();
}

TEST(Composer, InvalidUtf8IsRefused) {
  auto m = basic();
  m.subject = "bad \xc3";
  EXPECT_EQ(compose(m, kNow).error().rfind("subject:", 0), 0u);
  m = basic();
  m.text = "overlong \xc0\xaf";
  EXPECT_EQ(compose(m, kNow).error().rfind("text:", 0), 0u);
  EXPECT_TRUE(core::is_valid_utf8("\xf0\x9f\x98\x80 ok"));
  EXPECT_FALSE(core::is_valid_utf8("\xed\xa0\x80"));  // a surrogate
}

MessageSpec campaign() {
  auto m = basic();
  m.campaign = "cmp_1";
  m.unsubscribe_url = "https://u.acme.example/u/tok123";
  m.unsubscribe_mailto = "unsub@acme.example";
  m.postal_address = "Acme Inc., 1 Main St, Springfield";
  return m;
}

// Decodes a quoted-printable body (soft breaks and =XX).
std::string qp_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '=' && i + 2 < s.size() && s[i + 1] == '\r' && s[i + 2] == '\n') {
      i += 2;
    } else if (s[i] == '=' && i + 2 < s.size() && isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

TEST(Composer, TextAndHtmlMakeMultipartAlternative) {
  auto m = basic();
  m.html = "<p>Hello Bob</p>";
  auto msg = compose_ok(m);
  auto h = header_block(msg);
  size_t ct = h.find("Content-Type: multipart/alternative; boundary=\"");
  ASSERT_NE(ct, std::string::npos) << h;
  size_t q = h.find('"', ct) + 1;
  std::string boundary = h.substr(q, h.find('"', q) - q);
  auto body = body_of(msg);
  EXPECT_NE(body.find("--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\n"), std::string::npos);
  EXPECT_NE(body.find("--" + boundary + "\r\nContent-Type: text/html; charset=utf-8\r\n"), std::string::npos);
  EXPECT_LT(body.find("text/plain"), body.find("text/html"));  // RFC 2046 5.1.4: preferred last
  EXPECT_EQ(body.substr(body.size() - boundary.size() - 6), "--" + boundary + "--\r\n");
  EXPECT_TRUE(validate_message(msg).ok());
}

TEST(Composer, HtmlOnlyIsASingleHtmlPart) {
  auto m = basic();
  m.text.clear();
  m.html = "<p>Hi</p>";
  auto msg = compose_ok(m);
  EXPECT_NE(header_block(msg).find("Content-Type: text/html; charset=utf-8\r\n"), std::string::npos);
  EXPECT_EQ(body_of(msg), "<p>Hi</p>\r\n");
}

TEST(Composer, MostlyNonLatinBodyIsBase64) {
  auto m = basic();
  m.text.clear();
  for (int i = 0; i < 100; ++i) m.text += "\xe6\x97\xa5\xe6\x9c\xac";  // "日本"
  auto msg = compose_ok(m);
  EXPECT_NE(msg.find("Content-Transfer-Encoding: base64\r\n"), std::string::npos);
  for (const auto& l : crlf_lines(body_of(msg))) EXPECT_LE(l.size(), 76u);
}

TEST(Composer, CampaignGetsListUnsubscribeHeadersAndVisibleLinks) {
  auto m = campaign();
  m.html = "<html><body><p>Hi</p></body></html>";
  auto msg = compose_ok(m);
  auto h = header_block(msg);
  EXPECT_NE(h.find("List-Unsubscribe: <mailto:unsub@acme.example?subject=unsubscribe>,\r\n "
                   "<https://u.acme.example/u/tok123>\r\n"),
            std::string::npos)
      << h;
  EXPECT_NE(h.find("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"), std::string::npos);
  auto body = qp_decode(body_of(msg));
  EXPECT_NE(body.find("Unsubscribe: https://u.acme.example/u/tok123\r\n"), std::string::npos) << body;
  EXPECT_NE(body.find("<a href=\"https://u.acme.example/u/tok123\">Unsubscribe</a>"), std::string::npos) << body;
  EXPECT_LT(body.find("<a href="), body.find("</body>"));  // inside the document
  size_t first = body.find("Acme Inc., 1 Main St, Springfield");
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(body.find("Acme Inc., 1 Main St, Springfield", first + 1), std::string::npos);  // both parts
}

TEST(Composer, ProducersOwnLinkIsNotRepeated) {
  auto m = campaign();
  m.text = "Bye: https://u.acme.example/u/tok123\n";
  m.html = "<a href=\"https://u.acme.example/u/tok123\">leave</a>";
  auto body = qp_decode(body_of(compose_ok(m)));
  size_t first = body.find("https://u.acme.example/u/tok123");
  size_t second = body.find("https://u.acme.example/u/tok123", first + 1);
  ASSERT_NE(second, std::string::npos);
  EXPECT_EQ(body.find("https://u.acme.example/u/tok123", second + 1), std::string::npos) << body;
}

TEST(Composer, MailtoOnlyCampaignHasNoOneClickHeader) {
  auto m = campaign();
  m.unsubscribe_url.clear();
  auto msg = compose_ok(m);
  EXPECT_NE(msg.find("List-Unsubscribe: <mailto:unsub@acme.example?subject=unsubscribe>\r\n"), std::string::npos);
  EXPECT_EQ(msg.find("List-Unsubscribe-Post"), std::string::npos);
  EXPECT_NE(msg.find("To unsubscribe, write to unsub@acme.example"), std::string::npos);
}

TEST(Composer, CampaignWithoutAWayOutIsRefused) {
  auto m = campaign();
  m.unsubscribe_url.clear();
  m.unsubscribe_mailto.clear();
  EXPECT_EQ(compose(m, kNow).error().rfind("unsubscribe:", 0), 0u);
  m = campaign();
  m.unsubscribe_url = "javascript:alert(1)";
  EXPECT_EQ(compose(m, kNow).error().rfind("unsubscribe.url:", 0), 0u);
  m = campaign();
  m.unsubscribe_url = "https://x.example/a>b";
  EXPECT_EQ(compose(m, kNow).error().rfind("unsubscribe.url:", 0), 0u);
  m = campaign();
  m.headers = {{"List-Unsubscribe", "<https://evil.example/>"}};
  EXPECT_NE(compose(m, kNow).error().find("List-Unsubscribe"), std::string::npos);
}

TEST(Composer, NonCampaignMailHasNoUnsubscribeFooter) {
  auto m = basic();
  m.postal_address = "Acme Inc.";
  auto msg = compose_ok(m);
  EXPECT_EQ(msg.find("Unsubscribe"), std::string::npos);
  EXPECT_EQ(msg.find("Acme Inc."), std::string::npos);
}

TEST(Composer, ExtraHeadersMayNotAddRecipientsOrSignatures) {
  for (std::string name : {"Cc", "BCC", "Sender", "DKIM-Signature", "Return-Path"}) {
    auto m = basic();
    m.headers = {{name, "x@example.org"}};
    EXPECT_FALSE(compose(m, kNow).ok()) << name;
  }
  auto m = basic();
  m.headers = {{"References", "<a@b>"}, {"references", "<c@d>"}};
  auto r = compose(m, kNow);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("references appears 2 times"), std::string::npos) << r.error();
}

TEST(Composer, RawMessageGetsOnlyTheMissingHeaders) {
  auto m = basic();
  m.raw = "From: Alice <alice@acme.example>\nTo: bob@example.org\nSubject: raw\n\nBody line\n";
  auto msg = compose_ok(m);
  EXPECT_EQ(msg.find("Date: "), 0u) << msg;
  EXPECT_NE(msg.find("\r\nMessage-ID: <"), std::string::npos);
  EXPECT_EQ(msg.find("From: Alice from Acme"), std::string::npos);  // the producer's From is kept
  EXPECT_NE(msg.find("From: Alice <alice@acme.example>\r\nTo: bob@example.org\r\nSubject: raw\r\n\r\nBody line\r\n"),
            std::string::npos);
  EXPECT_EQ(msg.find("MIME-Version"), std::string::npos);
  EXPECT_TRUE(validate_message(msg).ok());
}

TEST(Composer, RawCampaignMessageGetsListUnsubscribe) {
  auto m = campaign();
  m.raw = "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nFrom: alice@acme.example\r\nMessage-ID: <x@acme.example>\r\n"
          "Content-Type: text/plain\r\n\r\nhi\r\n";
  auto msg = compose_ok(m);
  EXPECT_EQ(msg.find("MIME-Version: 1.0\r\nList-Unsubscribe: <mailto:"), 0u) << msg;
  EXPECT_NE(msg.find("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nDate: Tue"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("Date:", 1), msg.find("Date: Tue"));  // no second Date
}

// The account sends as its mailbox: a raw message that names another sender is refused, however
// the From field spells it; the mailbox's own address passes in any of its spellings.
TEST(Composer, RawMessageFromMustBeTheMailboxAddress) {
  auto m = basic();
  for (const char* from : {"From: Mallory <ceo@other.example>\n", "From: alice@acme.example, ceo@other.example\n",
                           "From: \"alice@acme.example\" <ceo@other.example>\n", "From: team: alice@acme.example;\n",
                           "From: <alice@acme.example> <ceo@other.example>\n", "From: Alice\n <ceo@other.example>\n",
                           "From: bob@acme.example\n", "From: \n"}) {
    m.raw = std::string(from) + "Subject: raw\n\nbody\n";
    auto r = compose(m, kNow);
    ASSERT_FALSE(r.ok()) << from;
    EXPECT_EQ(r.error().rfind("raw: From: must be the sending mailbox's address <alice@acme.example>", 0), 0u)
        << from << " -> " << r.error();
  }
  for (const char* from : {"From: alice@acme.example\n", "From: Alice <alice@ACME.example>\n",
                           "From: \"Smith, Alice\" <alice@acme.example>\n", "From: =?UTF-8?B?w4lsaWNl?=\n <alice@acme.example>\n"}) {
    m.raw = std::string(from) + "Subject: raw\n\nbody\n";
    auto r = compose(m, kNow);
    EXPECT_TRUE(r.ok()) << from << " -> " << (r.ok() ? "" : r.error());
  }
}

TEST(Composer, InvalidRawMessagesAreRefused) {
  auto m = basic();
  m.raw = "not a header\n\nbody";
  EXPECT_EQ(compose(m, kNow).error().rfind("raw:", 0), 0u);
  m.raw = "Subject: a\nSubject: b\n\nbody";
  EXPECT_NE(compose(m, kNow).error().find("subject appears 2 times"), std::string::npos);
  m.raw = "Subject: a\n\n" + std::string(1200, 'x');
  EXPECT_NE(compose(m, kNow).error().find("longer than 998"), std::string::npos);
  m.raw = "Subject: \xc3\xa9\n\nbody";
  EXPECT_EQ(compose(m, kNow).error().rfind("raw:", 0), 0u);
  m.raw = " folded first\nSubject: x\n\nbody";
  EXPECT_EQ(compose(m, kNow).error().rfind("raw:", 0), 0u);
}

TEST(Composer, ValidateMessageFindsStructuralFaults) {
  EXPECT_TRUE(validate_message("From: a@b.c\r\nDate: x\r\n\r\nbody\r\n").ok());
  EXPECT_FALSE(validate_message("From: a@b.c\r\n\r\nbody\r\n").ok());                // no Date
  EXPECT_FALSE(validate_message("From: a@b.c\nDate: x\r\n\r\nbody\r\n").ok());       // bare LF
  EXPECT_FALSE(validate_message("From: a@b.c\r\nDate: x\r\n  \r\n\r\nb\r\n").ok());  // blank fold
  EXPECT_FALSE(validate_message("From: a@b.c\r\nDate: x\r\nBad Name: y\r\n\r\n").ok());
}

TEST(Composer, HeaderFieldFoldsLongValuesAndEncodesNonAscii) {
  std::string v;
  for (int i = 0; i < 50; ++i) v += "token" + std::to_string(i) + " ";
  auto h = header_field("X-Long", v, "x");
  ASSERT_TRUE(h.ok());
  for (const auto& l : crlf_lines(*h)) EXPECT_LE(l.size(), 78u);
  auto e = header_field("X-Name", "J\xc3\xbcrgen", "x");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, "X-Name: =?UTF-8?B?SsO8cmdlbg==?=\r\n");
  EXPECT_FALSE(header_field("X-Bad", "a\r\nb", "x").ok());
}

TEST(DotStuff, LinesStartingWithADotAreDoubled) {
  EXPECT_EQ(dot_stuff("a\r\n.b\r\n..c\r\n.\r\nd\r\n"), "a\r\n..b\r\n...c\r\n..\r\nd\r\n.\r\n");
}

TEST(DotStuff, TerminatorFollowsAMissingFinalLineEnding) {
  EXPECT_EQ(dot_stuff("a\r\nb"), "a\r\nb\r\n.\r\n");
  EXPECT_EQ(dot_stuff(""), ".\r\n");
}

TEST(DotStuff, BareLineFeedsBecomeCrlf) { EXPECT_EQ(dot_stuff("a\n.b\n"), "a\r\n..b\r\n.\r\n"); }

TEST(DotStuff, ComposedMessageWithDotLinesRoundTrips) {
  auto m = basic();
  m.text = ".\n..\nlast";
  auto msg = compose_ok(m);
  auto payload = dot_stuff(msg);
  EXPECT_NE(payload.find("\r\n..\r\n...\r\nlast\r\n.\r\n"), std::string::npos);
  EXPECT_EQ(payload.find("\r\n.\r\n"), payload.size() - 5);
}

}  // namespace
}  // namespace deliverd::smtp

// Found by header_encoding_fuzz: a run of tabs after a long line was folded onto a continuation
// line of white space only, which RFC 5322 3.2.2 forbids and validate_message refuses.
TEST(Composer, FoldingNeverLeavesAWhiteSpaceOnlyLine) {
  std::string value;
  for (int i = 0; i < 20; ++i) value += "word ";
  value += std::string(90, 'x') + " " + std::string(20, '\t');
  auto h = deliverd::smtp::header_field("X-Fuzz", value, "x");
  ASSERT_TRUE(h.ok()) << h.error();
  std::string msg = "From: a@b.example\r\nDate: x\r\n" + *h + "\r\n";
  EXPECT_TRUE(deliverd::smtp::validate_message(msg).ok()) << *h;
}

namespace deliverd::smtp {
namespace {

// The composer's scans are linear in the message: a 10 MiB body on one line and a 10 MiB body of
// bare LFs come out whole, within the line limits, in one go.
TEST(ComposerScale, ATenMebibyteSingleLineBodyIsEncodedWithinTheLineLimits) {
  MessageSpec m = basic();
  m.text = std::string(10u << 20, 'a');
  const std::string msg = compose_ok(m);
  EXPECT_NE(msg.find("Content-Transfer-Encoding: quoted-printable\r\n"), std::string::npos);
  size_t longest = 0;
  for (const auto& l : crlf_lines(msg)) longest = std::max(longest, l.size());
  EXPECT_LE(longest, 76u);
  EXPECT_LT(msg.size(), (10u << 20) + (10u << 20) / 70 * 3 + 4096) << "one soft break per 75 characters";
}

TEST(ComposerScale, ATenMebibyteBodyOfBareLineFeedsBecomesCrlfLines) {
  MessageSpec m = basic();
  m.text = std::string(10u << 20, '\n');
  const std::string msg = compose_ok(m);
  const size_t body = msg.find("\r\n\r\n") + 4;
  EXPECT_EQ(msg.size() - body, 2u * (10u << 20));
  EXPECT_TRUE(validate_message(msg).ok());
}

TEST(ComposerScale, ALineOf998OctetsStaysSevenBitAndOneMoreIsEncoded) {
  MessageSpec m = basic();
  m.text = std::string(998, 'x') + "\n";
  EXPECT_NE(compose_ok(m).find("Content-Transfer-Encoding: 7bit\r\n"), std::string::npos);
  m.text = std::string(999, 'x') + "\n";
  EXPECT_NE(compose_ok(m).find("Content-Transfer-Encoding: quoted-printable\r\n"), std::string::npos);
  m.text = std::string(999, 'x');  // the last line, without a line break of its own
  EXPECT_NE(compose_ok(m).find("Content-Transfer-Encoding: quoted-printable\r\n"), std::string::npos);
}

TEST(ComposerScale, TheFirstOfSeveralFaultsIsTheOneNamed) {
  const std::string head = "From: a@b.example\r\nDate: x\r\n\r\n";
  EXPECT_EQ(validate_message(head + "x\ny" + std::string(1, '\0') + "\r\n").error(),
            "bare LF at offset " + std::to_string(head.size() + 1));
  EXPECT_EQ(validate_message(head + "x" + std::string(1, '\0') + "\ny\r\n").error(),
            "NUL byte at offset " + std::to_string(head.size() + 1));
  EXPECT_EQ(validate_message(head + "x\r\r\n").error(), "bare CR at offset " + std::to_string(head.size() + 1));
  EXPECT_EQ(validate_message(head + "x\r").error(), "bare CR at offset " + std::to_string(head.size() + 1));
  EXPECT_TRUE(validate_message(head + "x\r\n").ok());
}

}  // namespace
}  // namespace deliverd::smtp

TEST(MessageIdOf, ReadsTheHeaderBlockOnly) {
  using deliverd::smtp::message_id_of;
  EXPECT_EQ(message_id_of("From: a@b.example\r\nMessage-ID: <abc.123@acme.example>\r\n\r\nbody"), "abc.123@acme.example");
  EXPECT_EQ(message_id_of("message-id:\r\n  <folded@acme.example>\r\nSubject: x\r\n\r\n"), "folded@acme.example");
  // One in the body is not the message's.
  EXPECT_EQ(message_id_of("Subject: x\r\n\r\nMessage-ID: <in-body@acme.example>\r\n"), "");
  EXPECT_EQ(message_id_of("Message-ID: no brackets\r\n\r\n"), "");
  EXPECT_EQ(message_id_of(""), "");
}

TEST(MessageIdOf, FindsTheIdComposeGenerated) {
  deliverd::smtp::MessageSpec m;
  m.from_email = "alice@acme.example";
  m.to_email = "bob@example.org";
  m.subject = "hi";
  m.text = "hello";
  auto out = deliverd::smtp::compose(m, 1764410400);
  ASSERT_TRUE(out) << out.error();
  const std::string id = deliverd::smtp::message_id_of(*out);
  EXPECT_TRUE(id.ends_with("@acme.example")) << id;
  EXPECT_NE(out->find("Message-ID: <" + id + ">"), std::string::npos);
}
