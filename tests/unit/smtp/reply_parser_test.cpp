#include "smtp/reply_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace deliverd::smtp {
namespace {

struct Parsed {
  std::vector<core::Reply> replies;
  std::optional<ParseError> error;
};

// Feeds the chunks in order, draining after each as the session does.
Parsed parse_chunks(const std::vector<std::string>& chunks, ReplyLimits limits = {}) {
  ReplyParser p(limits);
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
      out.replies.push_back(*r.value());
    }
  }
  return out;
}

Parsed parse(const std::string& s, ReplyLimits limits = {}) { return parse_chunks({s}, limits); }

TEST(ReplyParser, SingleLineReply) {
  auto p = parse("250 OK\r\n");
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].code, 250);
  EXPECT_EQ(p.replies[0].enhanced, "");
  EXPECT_EQ(p.replies[0].text, "OK");
}

TEST(ReplyParser, CodeWithoutTextIsAReply) {
  auto p = parse("354\r\n");
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].code, 354);
  EXPECT_EQ(p.replies[0].text, "");
}

TEST(ReplyParser, EnhancedStatusCodeIsSeparatedFromText) {
  auto p = parse("550 5.1.1 <bob@example.org>: no such user\r\n");
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].code, 550);
  EXPECT_EQ(p.replies[0].enhanced, "5.1.1");
  EXPECT_EQ(p.replies[0].text, "<bob@example.org>: no such user");
}

TEST(ReplyParser, EnhancedCodeOfAnotherClassStaysInText) {
  auto p = parse("550 2.1.1 odd\r\n");
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].enhanced, "");
  EXPECT_EQ(p.replies[0].text, "2.1.1 odd");
}

TEST(ReplyParser, EnhancedCodeWithThreeDigitParts) {
  auto p = parse("451 4.123.456\r\n");
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].enhanced, "4.123.456");
  EXPECT_EQ(p.replies[0].text, "");
}

TEST(ReplyParser, VersionLikeTextIsNotAnEnhancedCode) {
  auto p = parse("220 2.0.0.1 server\r\n250 2.0 x\r\n");
  ASSERT_EQ(p.replies.size(), 2u);
  EXPECT_EQ(p.replies[0].enhanced, "");
  EXPECT_EQ(p.replies[1].enhanced, "");
}

TEST(ReplyParser, MultilineReplyEndsAtSpaceAfterCode) {
  auto p = parse("250-mx.example.org hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n");
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].code, 250);
  EXPECT_EQ(p.replies[0].text, "mx.example.org hello\nPIPELINING\nSIZE 1000\n8BITMIME");
}

TEST(ReplyParser, MultilineEnhancedCodesAreStrippedFromEveryLine) {
  auto p = parse("550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n");
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].enhanced, "5.7.1");
  EXPECT_EQ(p.replies[0].text, "first\nsecond\nthird");
}

TEST(ReplyParser, ManyRepliesInOneRead) {
  auto p = parse("220 hi\r\n250-a\r\n250 b\r\n354 go\r\n250 2.0.0 ok\r\n221 bye\r\n");
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.replies.size(), 5u);
  EXPECT_EQ(p.replies[1].text, "a\nb");
  EXPECT_EQ(p.replies[3].enhanced, "2.0.0");
  EXPECT_EQ(p.replies[4].code, 221);
}

TEST(ReplyParser, BareLineFeedsAreAccepted) {
  auto p = parse("250-a\n250 b\n421 4.3.2 closing\n");
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.replies.size(), 2u);
  EXPECT_EQ(p.replies[0].text, "a\nb");
  EXPECT_EQ(p.replies[1].code, 421);
  EXPECT_EQ(p.replies[1].enhanced, "4.3.2");
}

TEST(ReplyParser, IncompleteLineWaitsForMoreBytes) {
  ReplyParser p;
  p.feed("250 almost");
  auto r = p.next();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r.value().has_value());
  p.feed("\r");
  ASSERT_FALSE(p.next().value().has_value());
  p.feed("\n");
  auto r2 = p.next();
  ASSERT_TRUE(r2.ok());
  ASSERT_TRUE(r2.value().has_value());
  EXPECT_EQ(r2.value()->text, "almost");
}

TEST(ReplyParser, SplitAtEveryOffsetGivesTheSameReplies) {
  const std::string stream =
      "220 mx ESMTP\r\n250-mx\r\n250-SIZE 100\r\n250 2.0.0 PIPELINING\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\n"
      "354 go\n250 ok\r\n";
  auto whole = parse(stream);
  ASSERT_FALSE(whole.error);
  ASSERT_EQ(whole.replies.size(), 5u);
  for (size_t i = 0; i <= stream.size(); ++i) {
    for (size_t j = i; j <= stream.size(); j += 7) {
      auto split = parse_chunks({stream.substr(0, i), stream.substr(i, j - i), stream.substr(j)});
      ASSERT_FALSE(split.error) << "split at " << i << "," << j;
      ASSERT_EQ(split.replies.size(), whole.replies.size()) << "split at " << i << "," << j;
      for (size_t k = 0; k < whole.replies.size(); ++k) {
        EXPECT_EQ(split.replies[k].code, whole.replies[k].code);
        EXPECT_EQ(split.replies[k].enhanced, whole.replies[k].enhanced);
        EXPECT_EQ(split.replies[k].text, whole.replies[k].text);
      }
    }
  }
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  auto one_by_one = parse_chunks(bytes);
  ASSERT_EQ(one_by_one.replies.size(), whole.replies.size());
  EXPECT_EQ(one_by_one.replies[2].text, "no\nsuch user");
}

TEST(ReplyParser, LineAtTheLimitIsAccepted) {
  std::string text(2048 - 4, 'x');
  auto p = parse("250 " + text + "\r\n");
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].text, text);
}

TEST(ReplyParser, LineOverTheLimitIsAnError) {
  auto p = parse("250 " + std::string(2048 - 3, 'x') + "\r\n");
  ASSERT_TRUE(p.error);
  EXPECT_EQ(*p.error, ParseError::LineTooLong);
}

TEST(ReplyParser, OverlongLineIsRefusedBeforeItEnds) {
  ReplyParser p(ReplyLimits{100, 1000});
  p.feed("250 ");
  ASSERT_TRUE(p.next().ok());
  bool failed = false;
  for (int i = 0; i < 1000 && !failed; ++i) {
    p.feed(std::string(64, 'x'));
    auto r = p.next();
    failed = !r.ok();
    EXPECT_LE(p.buffered(), 200u);
  }
  ASSERT_TRUE(failed);
  EXPECT_EQ(p.next().error(), ParseError::LineTooLong);
}

TEST(ReplyParser, EndlessMultilineReplyHitsTheSizeLimit) {
  ReplyParser p(ReplyLimits{2048, 4096});
  std::optional<ParseError> err;
  for (int i = 0; i < 10000 && !err; ++i) {
    p.feed("250-this reply never ends\r\n");
    auto r = p.next();
    if (!r) err = r.error();
    else
      ASSERT_FALSE(r.value().has_value());
  }
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, ParseError::ReplyTooLarge);
}

TEST(ReplyParser, ReplyJustUnderTheSizeLimitIsAccepted) {
  std::string s;
  for (int i = 0; i < 9; ++i) s += "250-123456789\r\n";  // 15 bytes a line
  s += "250 123456789\r\n";
  EXPECT_FALSE(parse(s, ReplyLimits{2048, 150}).error);
  EXPECT_TRUE(parse(s, ReplyLimits{2048, 149}).error);
}

TEST(ReplyParser, NonDigitCodeIsAnError) {
  EXPECT_EQ(parse("abc hello\r\n").error, ParseError::BadCode);
  EXPECT_EQ(parse(std::string("\x00\xff\xfe garbage\r\n", 13)).error, ParseError::BadCode);
  EXPECT_EQ(parse("25\r\n").error, ParseError::BadCode);
  EXPECT_EQ(parse("\r\n").error, ParseError::BadCode);
  EXPECT_EQ(parse("2x0 x\r\n").error, ParseError::BadCode);
}

TEST(ReplyParser, CodeOutsideTwoHundredToFiveNinetyNineIsAnError) {
  EXPECT_EQ(parse("199 x\r\n").error, ParseError::CodeOutOfRange);
  EXPECT_EQ(parse("600 x\r\n").error, ParseError::CodeOutOfRange);
  EXPECT_EQ(parse("000 x\r\n").error, ParseError::CodeOutOfRange);
  EXPECT_FALSE(parse("599 x\r\n").error);
  EXPECT_FALSE(parse("200 x\r\n").error);
}

TEST(ReplyParser, BadSeparatorIsAnError) {
  EXPECT_EQ(parse("250x\r\n").error, ParseError::BadSeparator);
  EXPECT_EQ(parse("2500 ok\r\n").error, ParseError::BadSeparator);
}

TEST(ReplyParser, MismatchedCodesInAMultilineReplyAreAnError) {
  auto p = parse("250-a\r\n251 b\r\n");
  EXPECT_EQ(p.error, ParseError::CodeMismatch);
  EXPECT_TRUE(p.replies.empty());
}

TEST(ReplyParser, ErrorIsStickyUntilReset) {
  ReplyParser p;
  p.feed("xyz\r\n");
  EXPECT_EQ(p.next().error(), ParseError::BadCode);
  p.feed("250 ok\r\n");
  EXPECT_EQ(p.next().error(), ParseError::BadCode);
  EXPECT_TRUE(p.failed());
  p.reset();
  p.feed("250 ok\r\n");
  auto r = p.next();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.value().has_value());
  EXPECT_EQ(r.value()->code, 250);
}

TEST(ReplyParser, ErrorsHaveNames) {
  EXPECT_EQ(to_string(ParseError::LineTooLong), "line_too_long");
  EXPECT_EQ(to_string(ParseError::CodeMismatch), "code_mismatch");
}

}  // namespace
}  // namespace deliverd::smtp
