#include "core/percent.h"

#include <gtest/gtest.h>

namespace deliverd::core {
namespace {

TEST(PercentDecode, DecodesEscapesInEitherCase) {
  EXPECT_EQ(percent_decode("bob%40example.org"), "bob@example.org");
  EXPECT_EQ(percent_decode("%e2%82%AC"), "\xe2\x82\xac");
  EXPECT_EQ(percent_decode(""), "");
  EXPECT_EQ(percent_decode("a+b"), "a+b");  // '+' is a plus outside forms
  EXPECT_EQ(percent_decode("%25"), "%");
}

TEST(PercentEncode, KeepsOnlyUnreservedBytesAndRoundTrips) {
  EXPECT_EQ(percent_encode("aZ09-._~"), "aZ09-._~");
  EXPECT_EQ(percent_encode("1//0a+b c&d=e"), "1%2F%2F0a%2Bb%20c%26d%3De");
  EXPECT_EQ(percent_encode(std::string("\0\xff", 2)), "%00%FF");
  const std::string all = [] {
    std::string s;
    for (int i = 1; i < 256; ++i) s += static_cast<char>(i);
    return s;
  }();
  EXPECT_EQ(percent_decode(percent_encode(all)), all);
  EXPECT_EQ(percent_decode(percent_encode("a b"), {.plus_is_space = true}), "a b");
}

TEST(PercentDecode, FormsSpellSpacesAsPlus) {
  constexpr PercentDecoding kForm{.plus_is_space = true};
  EXPECT_EQ(percent_decode("List-Unsubscribe=One-Click+now%2B", kForm), "List-Unsubscribe=One-Click now+");
}

TEST(PercentDecode, RefusesBrokenEscapes) {
  for (const char* bad : {"%", "%4", "a%4", "%zz", "%4g", "%%41", "% 41"}) EXPECT_FALSE(percent_decode(bad)) << bad;
}

TEST(PercentDecode, RefusesNulUnlessAsked) {
  EXPECT_FALSE(percent_decode("a%00b"));
  EXPECT_EQ(percent_decode("a%00b", PercentDecoding{.allow_nul = true}), std::string("a\0b", 3));
}

}  // namespace
}  // namespace deliverd::core
