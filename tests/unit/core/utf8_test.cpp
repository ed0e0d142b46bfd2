#include "core/utf8.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

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

TEST(Utf8, SequenceLengthsOfWellFormedCharacters) {
  EXPECT_EQ(utf8_sequence_at("a", 0), 1u);
  EXPECT_EQ(utf8_sequence_at("\xc3\xa9", 0), 2u);          // é
  EXPECT_EQ(utf8_sequence_at("\xe2\x82\xac", 0), 3u);      // €
  EXPECT_EQ(utf8_sequence_at("\xf0\x9f\x98\x80", 0), 4u);  // 😀
}

TEST(Utf8, IllFormedSequencesAreRefused) {
  EXPECT_EQ(utf8_sequence_at("\xe9", 0), 0u);              // Latin-1 é alone
  EXPECT_EQ(utf8_sequence_at("\x80", 0), 0u);              // stray continuation byte
  EXPECT_EQ(utf8_sequence_at("\xc0\xaf", 0), 0u);          // overlong '/'
  EXPECT_EQ(utf8_sequence_at("\xe0\x80\xaf", 0), 0u);      // overlong, three bytes
  EXPECT_EQ(utf8_sequence_at("\xed\xa0\x80", 0), 0u);      // a surrogate
  EXPECT_EQ(utf8_sequence_at("\xf4\x90\x80\x80", 0), 0u);  // past U+10FFFF
  EXPECT_EQ(utf8_sequence_at("\xe2\x82", 0), 0u);          // truncated
  EXPECT_FALSE(is_valid_utf8("caf\xe9"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9"));
  EXPECT_TRUE(is_valid_utf8(""));
}

TEST(Utf8, ValidTextWithoutBackslashPassesUnchanged) {
  EXPECT_EQ(escape_utf8_lossless("250 2.0.0 Ok: queued as 4F2a"), "250 2.0.0 Ok: queued as 4F2a");
  EXPECT_EQ(escape_utf8_lossless("Empfang best\xc3\xa4tigt"), "Empfang best\xc3\xa4tigt");
}

TEST(Utf8, Latin1BytesBecomeHexEscapes) {
  EXPECT_EQ(escape_utf8_lossless("Message accept\xe9 pour livraison"), "Message accept\\xe9 pour livraison");
  EXPECT_EQ(escape_utf8_lossless("\xff\xfe"), "\\xff\\xfe");
}

TEST(Utf8, NulAndBackslashAreEscapedSoTheMappingReverses) {
  EXPECT_EQ(escape_utf8_lossless(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(escape_utf8_lossless("C:\\temp"), "C:\\\\temp");
  // A literal "\xe9" in the text and the byte 0xE9 must not map to the same text.
  EXPECT_NE(escape_utf8_lossless("\\xe9"), escape_utf8_lossless("\xe9"));
  EXPECT_EQ(unescape_utf8_lossless(escape_utf8_lossless("\\xe9")), "\\xe9");
  EXPECT_EQ(unescape_utf8_lossless(escape_utf8_lossless("\xe9")), "\xe9");
}

TEST(Utf8, EscapedTextIsAlwaysValidAndHasNoNul) {
  std::mt19937 rng(7);
  for (int round = 0; round < 2000; ++round) {
    std::string bytes(rng() % 64, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    const std::string escaped = escape_utf8_lossless(bytes);
    ASSERT_TRUE(is_valid_utf8(escaped));
    ASSERT_EQ(escaped.find('\0'), std::string::npos);
    ASSERT_EQ(unescape_utf8_lossless(escaped), bytes);
  }
}

TEST(Utf8, TruncationNeverSplitsACharacter) {
  std::string s = "ab\xc3\xbc\xe2\x82\xac\xf0\x9f\x98\x80";  // a b ü € 😀
  for (size_t max = 0; max <= s.size() + 1; ++max) {
    std::string t = s;
    truncate_utf8(t, max);
    EXPECT_LE(t.size(), max) << max;
    EXPECT_TRUE(is_valid_utf8(t)) << max;
    EXPECT_EQ(s.compare(0, t.size(), t), 0) << max;
  }
  std::string cut = s;
  truncate_utf8(cut, 5);  // inside the euro sign
  EXPECT_EQ(cut, "ab\xc3\xbc");
}

TEST(Utf8, UnescapeLeavesTextThatWasNeverEscapedAlone) {
  EXPECT_EQ(unescape_utf8_lossless("plain \\q and \\x4"), "plain \\q and \\x4");
  EXPECT_EQ(unescape_utf8_lossless("ends in \\"), "ends in \\");
}

}  // namespace
}  // namespace deliverd::core
