#include "smtp/ehlo.h"

#include <gtest/gtest.h>

namespace deliverd::smtp {
namespace {

core::Reply reply(std::string text) { return core::Reply{250, "", std::move(text)}; }

TEST(EhloParser, ReadsTheCommonExtensions) {
  auto caps = parse_ehlo(reply(
      "mx.example.org Hello [127.0.0.1]\nPIPELINING\nSIZE 35882577\n8BITMIME\nSTARTTLS\nAUTH LOGIN PLAIN XOAUTH2\n"
      "ENHANCEDSTATUSCODES\nCHUNKING\nSMTPUTF8\nDSN"));
  EXPECT_EQ(caps.greeting, "mx.example.org Hello [127.0.0.1]");
  EXPECT_TRUE(caps.pipelining);
  EXPECT_TRUE(caps.size_advertised);
  EXPECT_EQ(caps.size_limit, 35882577u);
  EXPECT_TRUE(caps.eightbitmime);
  EXPECT_TRUE(caps.starttls);
  EXPECT_TRUE(caps.enhanced_status_codes);
  EXPECT_TRUE(caps.chunking);
  EXPECT_TRUE(caps.smtputf8);
  EXPECT_TRUE(caps.dsn);
  EXPECT_EQ(caps.auth_mechanisms, (std::vector<std::string>{"LOGIN", "PLAIN", "XOAUTH2"}));
  EXPECT_TRUE(caps.supports_auth("plain"));
  EXPECT_FALSE(caps.supports_auth("CRAM-MD5"));
  EXPECT_TRUE(caps.has("pipelining"));
  EXPECT_EQ(caps.keywords.size(), 9u);
}

TEST(EhloParser, GreetingOnlyMeansNoExtensions) {
  auto caps = parse_ehlo(reply("mx.example.org"));
  EXPECT_EQ(caps.greeting, "mx.example.org");
  EXPECT_TRUE(caps.keywords.empty());
  EXPECT_FALSE(caps.pipelining);
  EXPECT_FALSE(caps.size_advertised);
}

TEST(EhloParser, KeywordsAreCaseInsensitive) {
  auto caps = parse_ehlo(reply("mx\npipelining\nStartTLS\nauth plain login\nsize 100"));
  EXPECT_TRUE(caps.pipelining);
  EXPECT_TRUE(caps.starttls);
  EXPECT_EQ(caps.auth_mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN"}));
  EXPECT_EQ(caps.size_limit, 100u);
}

TEST(EhloParser, LegacyAuthEqualsFormIsMerged) {
  auto caps = parse_ehlo(reply("mx\nAUTH PLAIN LOGIN\nAUTH=LOGIN CRAM-MD5"));
  EXPECT_EQ(caps.auth_mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN", "CRAM-MD5"}));
}

TEST(EhloParser, SizeWithoutOrWithBadLimitIsAdvertisedWithoutLimit) {
  auto none = parse_ehlo(reply("mx\nSIZE"));
  EXPECT_TRUE(none.size_advertised);
  EXPECT_EQ(none.size_limit, 0u);
  auto bad = parse_ehlo(reply("mx\nSIZE 12x"));
  EXPECT_TRUE(bad.size_advertised);
  EXPECT_EQ(bad.size_limit, 0u);
  auto huge = parse_ehlo(reply("mx\nSIZE 999999999999999999999999"));
  EXPECT_TRUE(huge.size_advertised);
  EXPECT_EQ(huge.size_limit, 0u);
}

TEST(EhloParser, MalformedLinesAreSkipped) {
  auto caps = parse_ehlo(reply("mx\n-BAD\n\n   \nX_UNDERSCORE\n\xff\xfe\nPIPELINING"));
  EXPECT_TRUE(caps.pipelining);
  EXPECT_EQ(caps.keywords, (std::vector<std::string>{"PIPELINING"}));
}

TEST(EhloParser, KeywordListIsBounded) {
  std::string text = "mx";
  for (int i = 0; i < 500; ++i) text += "\nX-EXT" + std::to_string(i);
  auto caps = parse_ehlo(reply(text));
  EXPECT_EQ(caps.keywords.size(), kMaxEhloKeywords);
}

TEST(EhloParser, DuplicateKeywordsAreKeptOnce) {
  auto caps = parse_ehlo(reply("mx\nPIPELINING\npipelining\nAUTH PLAIN\nAUTH PLAIN"));
  EXPECT_EQ(caps.keywords.size(), 2u);
  EXPECT_EQ(caps.auth_mechanisms.size(), 1u);
}

}  // namespace
}  // namespace deliverd::smtp
