#include "core/utf8.h"

#include <gtest/gtest.h>

namespace deliverd::core {
namespace {

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("j\xc3\xb6s\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"));  // up to U+10FFFF
}

TEST(Utf8, RefusesOverlongSurrogatesTruncationAndStrayBytes) {
  for (const char* bad : {"\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc3", "\x80", "\xff",
                          "\xe2\x82", "a\xc3(b"})
    EXPECT_FALSE(is_valid_utf8(bad)) << bad;
}

TEST(Utf8, TellsAsciiAndSequenceLengths) {
  EXPECT_TRUE(is_ascii("bob@example.org"));
  EXPECT_FALSE(is_ascii("j\xc3\xb6"));
  EXPECT_EQ(utf8_sequence_length('a'), 1u);
  EXPECT_EQ(utf8_sequence_length(0xc3), 2u);
  EXPECT_EQ(utf8_sequence_length(0xe2), 3u);
  EXPECT_EQ(utf8_sequence_length(0xf0), 4u);
}

}  // namespace
}  // namespace deliverd::core
