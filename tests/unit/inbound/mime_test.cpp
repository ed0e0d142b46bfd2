#include "inbound/mime.h"

#include <gtest/gtest.h>

namespace deliverd::inbound {
namespace {

TEST(ContentType, TypeSubtypeAndQuotedParameters) {
  auto ct = parse_content_type("Multipart/Report; report-type=delivery-status;\t boundary=\"a b;c\" (comment)");
  EXPECT_TRUE(ct.is("multipart", "report"));
  EXPECT_EQ(ct.param("report-type"), "delivery-status");
  EXPECT_EQ(ct.param("boundary"), "a b;c");
  EXPECT_EQ(ct.param("charset"), "");
}

TEST(ContentType, GarbageIsTextPlain) {
  EXPECT_TRUE(parse_content_type("").is("text", "plain"));
  EXPECT_TRUE(parse_content_type("nonsense").is("text", "plain"));
  EXPECT_TRUE(parse_content_type("/x").is("text", "plain"));
}

TEST(Mime, NestedMultipartsGiveTheirLeavesInOrder) {
  std::string raw =
      "Content-Type: multipart/mixed; boundary=outer\r\n\r\npreamble\r\n--outer\r\n"
      "Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\none\r\n"
      "--inner\r\nContent-Type: text/html\r\n\r\n<p>two</p>\r\n--inner--\r\n--outer\r\n"
      "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBE\r\nRi0x\r\n--outer--\r\nepilogue";
  auto m = parse_message(raw);
  ASSERT_EQ(m.parts.size(), 3u);
  EXPECT_EQ(m.parts[0].body, "one");
  EXPECT_TRUE(m.parts[1].type.is("text", "html"));
  EXPECT_EQ(m.parts[2].body, "%PDF-1");
  EXPECT_FALSE(m.truncated);
}

TEST(Mime, ADelimiterPrefixThatIsLongerIsNotTheDelimiter) {
  std::string raw = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--bb\r\ny\r\n--b--\r\n";
  auto m = parse_message(raw);
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].body, "x\r\n--bb\r\ny");
}

TEST(Mime, AMissingClosingDelimiterEndsAtTheEnd) {
  auto m = parse_message("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nlast part");
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].body, "last part");
  EXPECT_TRUE(m.truncated);
}

TEST(Mime, DepthPartsAndBytesAreBounded) {
  std::string raw;
  for (int i = 0; i < 50; ++i) raw += "Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "\r\n\r\n--b" + std::to_string(i) + "\r\n";
  raw += "\r\ndeep";
  auto deep = parse_message(raw);
  EXPECT_TRUE(deep.parts.empty());
  EXPECT_TRUE(deep.truncated);

  std::string many = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
  for (int i = 0; i < 100; ++i) many += "--b\r\n\r\npart\r\n";
  many += "--b--\r\n";
  MimeLimits limits;
  auto m = parse_message(many, limits);
  EXPECT_EQ(m.parts.size(), limits.max_parts);
  EXPECT_TRUE(m.truncated);

  limits.max_part_bytes = 100;
  auto big = parse_message("Subject: x\r\n\r\n" + std::string(10000, 'a'), limits);
  ASSERT_EQ(big.parts.size(), 1u);
  EXPECT_EQ(big.parts[0].body.size(), 100u);
  EXPECT_TRUE(big.parts[0].truncated);
}

TEST(Mime, BrokenBase64ComesBackAsItWas) {
  EXPECT_EQ(decode_transfer("!!not base64!!", "base64"), "!!not base64!!");
  EXPECT_EQ(decode_transfer("aGVsbG8", "Base64"), "hello");  // padding cut off
  EXPECT_EQ(decode_transfer("caf=C3=A9", "quoted-printable"), "caf\xc3\xa9");
  EXPECT_EQ(decode_transfer("as is", "8bit"), "as is");
}

TEST(Mime, AMessageWithoutMimeIsOneTextLeafWithTheTopHeaders) {
  auto m = parse_message("From: a@b\r\nSubject: hi\r\n\r\nbody\r\n");
  EXPECT_EQ(m.headers.value("Subject"), "hi");
  ASSERT_EQ(m.parts.size(), 1u);
  EXPECT_TRUE(m.parts[0].type.is("text", "plain"));
  EXPECT_EQ(m.parts[0].body, "body\r\n");
}

}  // namespace
}  // namespace deliverd::inbound
