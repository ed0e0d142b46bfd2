#include "inbound/headers.h"

#include <gtest/gtest.h>

namespace deliverd::inbound {
namespace {

TEST(Headers, FoldedFieldsAreUnfoldedAndNamesCompareWithoutCase) {
  size_t body = 0;
  auto h = parse_headers("Subject: a long\r\n\tsubject\r\nfrom: x@y\r\n\r\nbody", &body);
  ASSERT_EQ(h.fields.size(), 2u);
  EXPECT_EQ(h.value("SUBJECT"), "a long\tsubject");
  EXPECT_EQ(h.value("From"), "x@y");
  EXPECT_EQ(body, std::string_view("Subject: a long\r\n\tsubject\r\nfrom: x@y\r\n\r\n").size());
  EXPECT_FALSE(h.truncated);
}

TEST(Headers, BareLineFeedsAndLinesWithoutColonAreTolerated) {
  auto h = parse_headers("From nobody Tue Dec  1\nno colon here\nTo: a@b\n continued\n\nbody");
  ASSERT_EQ(h.fields.size(), 1u);
  EXPECT_EQ(h.value("To"), "a@b continued");
}

TEST(Headers, EightBitBytesAreKeptAndNeverCrash) {
  std::string raw = "Subject: \xff\xfe\x80 caf\xc3\xa9\r\nX: \x01\x02\r\n\r\n";
  auto h = parse_headers(raw);
  EXPECT_EQ(h.value("Subject"), "\xff\xfe\x80 caf\xc3\xa9");
  EXPECT_EQ(decode_words(h.value("Subject")), "\\xff\\xfe\\x80 caf\xc3\xa9");
}

TEST(Headers, TheFieldCountIsBounded) {
  std::string raw;
  for (int i = 0; i < 1000; ++i) raw += "X-" + std::to_string(i) + ": v\r\n";
  HeaderLimits limits;
  limits.max_fields = 10;
  auto h = parse_headers(raw, nullptr, limits);
  EXPECT_EQ(h.fields.size(), 10u);
  EXPECT_TRUE(h.truncated);
}

TEST(Headers, TheByteCountIsBoundedEvenForOneHugeFoldedField) {
  std::string raw = "Subject: x\r\n";
  for (int i = 0; i < 20000; ++i) raw += " more words\r\n";
  HeaderLimits limits;
  limits.max_bytes = 4096;
  auto h = parse_headers(raw, nullptr, limits);
  EXPECT_TRUE(h.truncated);
  EXPECT_LE(h.value("Subject").size(), 4096u);
}

TEST(EncodedWords, BAndQWordsInUtf8AndLatin1Decode) {
  EXPECT_EQ(decode_words("=?utf-8?B?R3LDvMOfZQ==?="), "Gr\xc3\xbc\xc3\x9f" "e");
  EXPECT_EQ(decode_words("=?ISO-8859-1?Q?J=FCrgen_M=FCller?="), "J\xc3\xbcrgen M\xc3\xbcller");
  EXPECT_EQ(decode_words("Re: =?utf-8?q?caf=C3=A9?= ok"), "Re: caf\xc3\xa9 ok");
}

TEST(EncodedWords, WhiteSpaceBetweenAdjacentWordsIsDropped) {
  EXPECT_EQ(decode_words("=?utf-8?Q?a?= =?utf-8?Q?b?="), "ab");
  EXPECT_EQ(decode_words("=?utf-8?Q?a?=\r\n =?utf-8?Q?b?= c"), "ab c");
}

TEST(EncodedWords, BrokenOrUnknownWordsStayAsTheyWere) {
  EXPECT_EQ(decode_words("=?utf-8?Q?bad=ZZ?="), "=?utf-8?Q?bad=ZZ?=");
  EXPECT_EQ(decode_words("=?koi8-r?B?0NLJ18XU?="), "=?koi8-r?B?0NLJ18XU?=");
  EXPECT_EQ(decode_words("=?utf-8?X?abc?="), "=?utf-8?X?abc?=");
  EXPECT_EQ(decode_words("=?utf-8?B?"), "=?utf-8?B?");
  EXPECT_EQ(decode_words("=?utf-8?B?AA==?="), "\\x00");  // a NUL cannot hide in the text
}

TEST(EncodedWords, MissingBase64PaddingIsForgiven) { EXPECT_EQ(decode_words("=?utf-8?B?YWI?="), "ab"); }

TEST(QuotedPrintable, SoftBreaksJoinAndStrayEqualsSignsStayInBodies) {
  EXPECT_EQ(*decode_quoted_printable("B=C3=BCro=\r\nzeit =3D x = y", false), "B\xc3\xbcrozeit = x = y");
  EXPECT_FALSE(decode_quoted_printable("a=G1", true));
}

TEST(MessageIds, BracketsCommentsAndBareIds) {
  EXPECT_EQ(message_ids("<a@b> (comment <x@y>) <c@d>"), (std::vector<std::string>{"a@b", "c@d"}));
  EXPECT_EQ(message_ids("  bare@id.example "), (std::vector<std::string>{"bare@id.example"}));
  EXPECT_TRUE(message_ids("<unclosed@x").empty());
  EXPECT_TRUE(message_ids("").empty());
  std::string many;
  for (int i = 0; i < 200; ++i) many += "<" + std::to_string(i) + "@x> ";
  EXPECT_EQ(message_ids(many).size(), 64u);
}

TEST(AddressIn, NameAddrAddrSpecAndComment) {
  EXPECT_EQ(address_in("Bob Jones <bob@x.example>"), "bob@x.example");
  EXPECT_EQ(address_in("MAILER-DAEMON@mx.example (Mail Delivery System)"), "MAILER-DAEMON@mx.example");
  EXPECT_EQ(address_in("<>"), "");
  EXPECT_EQ(address_in("no address"), "");
}

}  // namespace
}  // namespace deliverd::inbound
