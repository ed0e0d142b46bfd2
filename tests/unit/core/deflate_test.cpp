#include "core/deflate.h"

#include <gtest/gtest.h>

#include <string>

namespace deliverd::core {
namespace {

std::string job_text() {
  std::string body;
  for (int i = 0; i < 20; ++i) body += "Hello Bob, line " + std::to_string(i) + " of a cold email.\\n";
  return R"({"v":1,"id":"j1","account":"acct_1","mailbox":"mbx_1","to":{"email":"bob@example.org"},"text":")" + body +
         R"("})";
}

TEST(Deflate, ATextComesBackByteForByte) {
  const std::string text = job_text() + std::string("\x00\xff\xe9 latin-1", 11);
  const std::string packed = deflate_raw(text);
  ASSERT_FALSE(packed.empty());
  EXPECT_LT(packed.size(), text.size());
  auto back = inflate_raw(packed, text.size());
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(*back, text);
}

TEST(Deflate, WhatWouldNotShrinkIsLeftToTheCaller) {
  EXPECT_EQ(deflate_raw(""), "");
  EXPECT_EQ(deflate_raw("a"), "");
  EXPECT_EQ(deflate_raw(R"({"v":1})"), "") << "a few bytes grow when deflated";
}

TEST(Deflate, InflatingPastTheLimitStopsThereAndSaysSo) {
  const std::string zeros(1 << 20, '0');
  const std::string packed = deflate_raw(zeros);
  ASSERT_LT(packed.size(), 2000u);
  auto r = inflate_raw(packed, 4096);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "compressed data inflates to more than 4096 bytes");
  EXPECT_TRUE(inflate_raw(packed, zeros.size()));
}

TEST(Deflate, BadOrShortInputIsNamed) {
  const std::string packed = deflate_raw(job_text());
  auto cut = inflate_raw(packed.substr(0, packed.size() / 2), 1 << 20);
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error(), "compressed data cut short");
  auto junk = inflate_raw("\xff\xff\xff\xff not deflate", 1 << 20);
  ASSERT_FALSE(junk);
  EXPECT_EQ(junk.error().rfind("not raw deflate data: ", 0), 0u) << junk.error();
  auto trailing = inflate_raw(packed + "extra", 1 << 20);
  ASSERT_FALSE(trailing);
  EXPECT_EQ(trailing.error(), "bytes after the end of the compressed data");
}

TEST(Gzip, GunzipsBackByteForByteWithTheGzipMagic) {
  const std::string text = job_text() + std::string("\x00\xff", 2);
  const std::string packed = gzip(text);
  ASSERT_GE(packed.size(), 18u) << "gzip header and trailer";
  EXPECT_EQ(static_cast<unsigned char>(packed[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(packed[1]), 0x8b);
  auto back = gunzip(packed, text.size());
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(*back, text);
  EXPECT_FALSE(inflate_raw(packed, text.size())) << "gzip is not raw deflate";
}

TEST(Gzip, EvenEmptyOrIncompressibleInputIsGzip) {
  auto empty = gunzip(gzip(""), 10);
  ASSERT_TRUE(empty) << empty.error();
  EXPECT_EQ(*empty, "");
  auto one = gunzip(gzip("a"), 10);
  ASSERT_TRUE(one) << one.error();
  EXPECT_EQ(*one, "a");
}

TEST(Gzip, GunzipIsBoundedAndNamesWhatWasWrong) {
  const std::string packed = gzip(std::string(100000, 'x'));
  auto big = gunzip(packed, 1000);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error(), "compressed data inflates to more than 1000 bytes");
  auto cut = gunzip(packed.substr(0, packed.size() - 4), 200000);
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error(), "compressed data cut short");
  std::string bad = packed;
  bad[bad.size() - 8] ^= 1;  // the CRC-32
  auto crc = gunzip(bad, 200000);
  ASSERT_FALSE(crc);
  EXPECT_NE(crc.error().find("not gzip data"), std::string::npos) << crc.error();
}

}  // namespace
}  // namespace deliverd::core
