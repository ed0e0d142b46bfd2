// The one-pass composer against the composer it replaced (legacy_composer.cpp, the code before
// the rewrite): for every input composer_test uses, and for generated bodies, headers and raw
// messages, both give the same bytes or the same error. Message-IDs and MIME boundaries are
// random in both, so their random hex is masked before the comparison.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "smtp/composer.h"
#include "tests/unit/smtp/legacy_composer.h"

namespace deliverd::smtp {
namespace {

constexpr std::time_t kNow = 1700000000;

bool all_hex(std::string_view s) {
  return s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// The random hex after "Message-ID: <" (32, then '@') and after "=_deliverd_" (24) becomes '#'.
std::string masked(std::string s) {
  auto mask = [&s](std::string_view marker, size_t n) {
    for (size_t p = s.find(marker); p != std::string::npos; p = s.find(marker, p + 1)) {
      const size_t at = p + marker.size();
      if (at + n <= s.size() && all_hex(std::string_view(s).substr(at, n))) s.replace(at, n, n, '#');
    }
  };
  mask("Message-ID: <", 32);
  mask("=_deliverd_", 24);
  return s;
}

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

MessageSpec campaign() {
  auto m = basic();
  m.campaign = "cmp_1";
  m.unsubscribe_url = "https://u.acme.example/u/tok123";
  m.unsubscribe_mailto = "unsub@acme.example";
  m.postal_address = "Acme Inc., 1 Main St, Springfield";
  return m;
}

// Both composers on one spec: same success, same masked bytes, same error; and the DATA payload
// of the message is the same through both dot_stuffs.
void expect_same(const MessageSpec& m, const std::string& what) {
  SCOPED_TRACE(what);
  auto now = compose(m, kNow);
  auto before = legacy::compose(m, kNow);
  ASSERT_EQ(now.ok(), before.ok()) << (now.ok() ? before.error() : now.error());
  if (!now.ok()) {
    EXPECT_EQ(now.error(), before.error());
    return;
  }
  const std::string a = masked(*now), b = masked(*before);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_TRUE(a == b) << "first difference at offset " << std::mismatch(a.begin(), a.end(), b.begin()).first - a.begin();
  EXPECT_TRUE(dot_stuff(a) == legacy::dot_stuff(b));
}

// Bodies built from pieces that stress the encoders: breaks of every kind, dots at line starts,
// white space at line ends, '=', NUL, controls, 2-, 3- and 4-byte UTF-8, and long runs.
std::string generated_body(std::mt19937& rng, bool valid_utf8) {
  static const std::vector<std::string> kPieces = {
      "a", "word ", " ", "\t", "\n", "\r\n", "\r", ".", "\n.", "\r\n..", "=", std::string(1, '\0'), "\x01", "\x7f",
      "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "--=_deliverd_", " \n", "\t\r\n", std::string(70, 'x'),
      std::string(997, 'y'), std::string(998, 'z'), std::string(999, 'w'), std::string(75, '='), "\r\r\n", "\n\r"};
  std::string out;
  const size_t pieces = rng() % 40;
  for (size_t i = 0; i < pieces; ++i) out += kPieces[rng() % kPieces.size()];
  if (!valid_utf8 && !out.empty()) out[rng() % out.size()] = static_cast<char>(0x80 | (rng() & 0x7f));
  return out;
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(ComposerEquivalence, EveryComposerTestInputGivesTheSameBytesOrError) {
  expect_same(basic(), "basic");
  auto m = basic();
  m.message_id_domain = "mail.acme.example";
  expect_same(m, "message_id_domain");
  m = basic();
  m.reply_to = "replies@acme.example";
  m.headers = {{"X-Campaign-Id", "cmp_1"}, {"List-Unsubscribe", "<https://acme.example/u/1>"}};
  expect_same(m, "reply_to and extras");
  m = basic();
  m.from_name = "Zo\xc3\xab";
  expect_same(m, "non-ASCII display name");
  m = basic();
  m.to_name = "Smith, \"Bob\"";
  expect_same(m, "quoted display name");
  m = basic();
  m.subject.clear();
  for (int i = 0; i < 40; ++i) m.subject += "\xc3\xa9t\xc3\xa9 ";
  expect_same(m, "long non-ASCII subject");
  m = basic();
  m.subject.clear();
  for (int i = 0; i < 30; ++i) m.subject += "word" + std::to_string(i) + " ";
  expect_same(m, "long ASCII subject");
  for (std::string text : {std::string("Caf\xc3\xa9 = good \nend"), std::string(3000, 'a') + "\n" + std::string(500, 'b'),
                           std::string(998, 'x'), std::string("a\nb\r\nc\rd"), std::string(".\n..\nlast"),
                           std::string(998, 'x') + "\n", std::string(999, 'x') + "\n", std::string(999, 'x'),
                           std::string("overlong \xc0\xaf")}) {
    m = basic();
    m.text = text;
    expect_same(m, "text " + text.substr(0, 20));
  }
  m = basic();
  m.subject = "hi\r\nBcc: everyone@example.org";
  expect_same(m, "subject injection");
  m = basic();
  m.subject = "bad \xc3";
  expect_same(m, "subject invalid UTF-8");
  m = basic();
  m.from_name = "Alice\nBcc: x@example.org";
  expect_same(m, "from_name injection");
  m = basic();
  m.to_name = "Bob\r";
  expect_same(m, "to_name CR");
  m = basic();
  m.headers = {{"X-Ok", "fine"}, {"X-Campaign-Id", "cmp\r\nBcc: x@example.org"}};
  expect_same(m, "extra header injection");
  for (std::string bad : std::vector<std::string>{"X Bad", "X:Bad", "", "X-\xc3\xa9", "X\x01"}) {
    m = basic();
    m.headers = {{bad, "v"}};
    expect_same(m, "bad header name " + bad);
  }
  for (std::string name : {"From", "to", "SUBJECT", "Date", "Message-ID", "MIME-Version", "Content-Type",
                           "content-transfer-encoding", "Reply-To", "Cc", "BCC", "Sender", "DKIM-Signature",
                           "Return-Path"}) {
    m = basic();
    m.headers = {{name, "x@example.org"}};
    expect_same(m, "reserved extra " + name);
  }
  m = basic();
  m.headers = {{"References", "<a@b>"}, {"references", "<c@d>"}};
  expect_same(m, "duplicate References");
  for (auto [field, value] : std::vector<std::pair<int, std::string>>{
           {0, "bob"}, {1, "alice@acme.example>\r\nRCPT TO:<x@y"}, {2, "a b@example.org"}, {0, "bob@exa_mple.org"},
           {0, "bob@B\xc3\xbc" "cher.example"}, {0, "j\xc3\xb6s\xc3\xa9@example.org"}, {2, "r\xc3\xa9ply@example.org"}}) {
    m = basic();
    (field == 0 ? m.to_email : field == 1 ? m.from_email : m.reply_to) = value;
    expect_same(m, "address " + value);
  }
  m = basic();
  m.to_email = "j\xc3\xb6s\xc3\xa9@example.org";
  m.to_name = "J\xc3\xb6s\xc3\xa9";
  expect_same(m, "UTF-8 local part with name");
  m = basic();
  m.campaign = "cmp_1";
  m.unsubscribe_mailto = "d\xc3\xa9sabonner@example.org";
  expect_same(m, "non-ASCII mailto");
  m = basic();
  m.html = "<p>Hello Bob</p>";
  expect_same(m, "multipart");
  m = basic();
  m.text.clear();
  m.html = "<p>Hi</p>";
  expect_same(m, "html only");
  m = basic();
  m.text.clear();
  for (int i = 0; i < 100; ++i) m.text += "\xe6\x97\xa5\xe6\x9c\xac";
  expect_same(m, "mostly non-Latin");
  m = campaign();
  m.html = "<html><body><p>Hi</p></body></html>";
  expect_same(m, "campaign multipart");
  m = campaign();
  m.text = "Bye: https://u.acme.example/u/tok123\n";
  m.html = "<a href=\"https://u.acme.example/u/tok123\">leave</a>";
  expect_same(m, "producer's own link");
  m = campaign();
  m.unsubscribe_url.clear();
  expect_same(m, "mailto only");
  m.unsubscribe_mailto.clear();
  expect_same(m, "no way out");
  for (std::string url : {"javascript:alert(1)", "https://x.example/a>b"}) {
    m = campaign();
    m.unsubscribe_url = url;
    expect_same(m, "bad url " + url);
  }
  m = campaign();
  m.headers = {{"List-Unsubscribe", "<https://evil.example/>"}};
  expect_same(m, "campaign List-Unsubscribe extra");
  m = basic();
  m.postal_address = "Acme Inc.";
  expect_same(m, "postal address without campaign");
  for (std::string raw : {std::string("From: Alice <alice@acme.example>\nTo: bob@example.org\nSubject: raw\n\nBody line\n"),
                          std::string("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nFrom: alice@acme.example\r\nMessage-ID: "
                                      "<x@acme.example>\r\nContent-Type: text/plain\r\n\r\nhi\r\n"),
                          std::string("From: Mallory <ceo@other.example>\nSubject: raw\n\nbody\n"),
                          std::string("From: alice@acme.example, ceo@other.example\nSubject: raw\n\nbody\n"),
                          std::string("From: team: alice@acme.example;\nSubject: raw\n\nbody\n"),
                          std::string("From: Alice\n <ceo@other.example>\nSubject: raw\n\nbody\n"),
                          std::string("From: \"Smith, Alice\" <alice@acme.example>\nSubject: raw\n\nbody\n"),
                          std::string("From: =?UTF-8?B?w4lsaWNl?=\n <alice@acme.example>\nSubject: raw\n\nbody\n"),
                          std::string("not a header\n\nbody"), std::string("Subject: a\nSubject: b\n\nbody"),
                          std::string("Subject: a\n\n") + std::string(1200, 'x'), std::string("Subject: \xc3\xa9\n\nbody"),
                          std::string(" folded first\nSubject: x\n\nbody")}) {
    for (bool with_campaign : {false, true}) {
      m = with_campaign ? campaign() : basic();
      m.raw = raw;
      expect_same(m, "raw " + raw.substr(0, 30));
    }
  }
  m = basic();
  m.text = std::string(10u << 20, 'a');
  expect_same(m, "10 MiB single line");
  m.text = std::string(10u << 20, '\n');
  expect_same(m, "10 MiB of LFs");
}

TEST(ComposerEquivalence, GeneratedBodiesGiveTheSameBytes) {
  std::mt19937 rng(19);
  for (int i = 0; i < 3000; ++i) {
    MessageSpec m = i % 3 == 0 ? campaign() : basic();
    const bool valid = i % 10 != 0;
    switch (i % 4) {
      case 0: m.text = generated_body(rng, valid); break;
      case 1: m.text.clear(); m.html = generated_body(rng, valid); break;
      case 2: m.text = generated_body(rng, valid); m.html = generated_body(rng, true); break;
      case 3: m.text = random_bytes(rng, rng() % 300); break;
    }
    expect_same(m, "generated body " + std::to_string(i));
  }
  // Empty bodies in every shape.
  for (bool c : {false, true}) {
    MessageSpec m = c ? campaign() : basic();
    m.text.clear();
    expect_same(m, "empty text");
    m.html = "";
    expect_same(m, "empty both");
  }
}

// Lines around the 998-octet limit and the 76-column quoted-printable limit, with every break.
TEST(ComposerEquivalence, LinesAtTheLimitsGiveTheSameBytes) {
  for (size_t n : {0u, 1u, 72u, 73u, 74u, 75u, 76u, 77u, 997u, 998u, 999u, 1000u, 2000u}) {
    for (std::string end : {"", "\n", "\r\n", "\r", " ", "\t", " \n", "=", "\xc3\xa9", "\xc3\xa9\n"}) {
      for (char fill : {'x', ' ', '=', '.'}) {
        MessageSpec m = basic();
        m.text = std::string(n, fill) + end + std::string(n / 2, fill) + end;
        expect_same(m, "line " + std::to_string(n) + " of '" + std::string(1, fill) + "'");
      }
    }
  }
}

TEST(ComposerEquivalence, GeneratedHeadersGiveTheSameBytesOrError) {
  std::mt19937 rng(2047);
  static const std::vector<std::string> kValues = {
      "plain", "", " ", "a b", "word\tword", "\xc3\xa9t\xc3\xa9", std::string(100, 'x'), std::string(1000, 'y'),
      "Smith, \"Bob\"", "back\\slash", "ctl\x01", "del\x7f", "cr\r", "lf\n", "bad \xc3", " lead", "trail ",
      "\xe6\x97\xa5\xe6\x9c\xac", "(comment) <x@y>", "a:b;c", std::string(60, ' ') + "end"};
  auto value = [&] {
    std::string v;
    for (size_t k = 0, n = rng() % 6; k < n; ++k) v += kValues[rng() % kValues.size()] + (rng() % 2 ? " " : "");
    return v;
  };
  for (int i = 0; i < 2000; ++i) {
    MessageSpec m = i % 4 == 0 ? campaign() : basic();
    m.subject = value();
    m.from_name = value();
    m.to_name = value();
    if (i % 5 == 0) m.reply_to = i % 10 == 0 ? "r@acme.example" : value();
    if (i % 7 == 0) m.message_id_domain = i % 14 == 0 ? "m\xc3\xbcnchen.example" : value();
    if (i % 3 == 0) m.headers = {{"X-A", value()}, {i % 6 == 0 ? "X-B" : value(), value()}};
    if (i % 11 == 0) m.postal_address = value();
    if (i % 13 == 0) m.unsubscribe_mailto = value();
    expect_same(m, "generated headers " + std::to_string(i));
  }
}

TEST(ComposerEquivalence, GeneratedRawMessagesGiveTheSameBytesOrError) {
  std::mt19937 rng(5322);
  static const std::vector<std::string> kLines = {
      "From: alice@acme.example", "From: Alice <alice@acme.example>", "From: x@other.example", "Date: x",
      "Message-ID: <a@b>", "Subject: s", "Subject: \xc3\xa9", "Content-Type: text/plain", "MIME-Version: 1.0",
      "List-Unsubscribe: <mailto:u@acme.example>", " folded", "\t", "no colon", "X-Long: " + std::string(1000, 'l'),
      "", "", "body", "." , std::string(999, 'b'), std::string(1, '\0'), "\r"};
  static const std::vector<std::string> kBreaks = {"\n", "\r\n", "\r", "\r\n"};
  for (int i = 0; i < 3000; ++i) {
    MessageSpec m = i % 2 ? campaign() : basic();
    for (size_t k = 0, n = 1 + rng() % 12; k < n; ++k) m.raw += kLines[rng() % kLines.size()] + kBreaks[rng() % kBreaks.size()];
    if (rng() % 4 == 0) m.raw.pop_back();
    expect_same(m, "generated raw " + std::to_string(i));
  }
}

TEST(ComposerEquivalence, BuildingBlocksAgreeOnRandomInput) {
  std::mt19937 rng(6376);
  for (int i = 0; i < 3000; ++i) {
    const std::string s = i % 2 ? random_bytes(rng, rng() % 400) : generated_body(rng, i % 3 != 0);
    SCOPED_TRACE(i);
    EXPECT_EQ(dot_stuff(s), legacy::dot_stuff(s));
    EXPECT_EQ(quoted_printable(s), legacy::quoted_printable(s));
    EXPECT_EQ(base64_lines(s), legacy::base64_lines(s));
    for (const std::string& msg : {s, "From: a@b.c\r\nDate: x\r\n\r\n" + s, "From: a@b.c\r\nDate: x\r\n" + s}) {
      for (bool utf8 : {false, true}) {
        auto a = validate_message(msg, utf8), b = legacy::validate_message(msg, utf8);
        ASSERT_EQ(a.ok(), b.ok()) << (a.ok() ? b.error() : a.error());
        if (!a.ok()) {
          EXPECT_EQ(a.error(), b.error());
        }
      }
    }
  }
  for (size_t n : {0u, 1u, 56u, 57u, 58u, 57u * 128, 57u * 128 + 1, 57u * 256 + 2}) {
    const std::string s = random_bytes(rng, n);
    EXPECT_EQ(base64_lines(s), legacy::base64_lines(s)) << n;
  }
}

}  // namespace
}  // namespace deliverd::smtp

namespace deliverd::smtp {
namespace {

// The work, not the time: a 10 MiB body on one line is looked at a small constant number of
// times over, in compose and in dot_stuff alike (the old composer examined it about 16 times).
TEST(ComposerWork, ATenMebibyteSingleLineBodyIsExaminedAFewTimesOver) {
  MessageSpec m = basic();
  m.text = std::string(10u << 20, 'a');
  ComposeStats stats;
  auto msg = compose(m, kNow, &stats);
  ASSERT_TRUE(msg.ok()) << msg.error();
  EXPECT_EQ(stats.body_bytes, m.text.size());
  EXPECT_LE(stats.bytes_examined, 7 * m.text.size()) << "UTF-8 check, scan (3), quoted-printable (3)";
  ComposeStats stuffing;
  const std::string payload = dot_stuff(*msg, &stuffing);
  EXPECT_LE(stuffing.bytes_examined, 3 * msg->size());
  EXPECT_EQ(payload, *msg + ".\r\n");  // nothing to stuff: the message whole, then the terminator
}

}  // namespace
}  // namespace deliverd::smtp
