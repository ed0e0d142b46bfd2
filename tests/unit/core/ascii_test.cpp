#include "core/ascii.h"

#include <gtest/gtest.h>

#include <clocale>

namespace deliverd::core {
namespace {

TEST(Ascii, FoldsOnlyAsciiLetters) {
  EXPECT_EQ(ascii_lowercase("Content-Type: TEXT/Plain; A-Z"), "content-type: text/plain; a-z");
  EXPECT_EQ(ascii_uppercase("auth=login plain"), "AUTH=LOGIN PLAIN");
  // UTF-8 bytes and the characters next to the letter ranges stay as they are.
  EXPECT_EQ(ascii_lowercase("J\xc3\x96S\xc3\x89@[]^_`{"), "j\xc3\x96s\xc3\x89@[]^_`{");
  EXPECT_EQ(ascii_uppercase("\xc3\xb6@`{"), "\xc3\xb6@`{");
  EXPECT_EQ(ascii_lower('I'), 'i');
  EXPECT_EQ(ascii_upper('i'), 'I');
}

TEST(Ascii, IgnoresTheProcessLocale) {
  // In tr_TR std::tolower('I') is the dotless i; protocol keywords must not change with it.
  std::setlocale(LC_ALL, "tr_TR.UTF-8");
  EXPECT_TRUE(iequals("MAIL", "mail"));
  EXPECT_EQ(ascii_lowercase("I"), "i");
  std::setlocale(LC_ALL, "C");
}

TEST(Ascii, ComparesCaseInsensitively) {
  EXPECT_TRUE(iequals("Message-ID", "message-id"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("from", "fro"));
  EXPECT_FALSE(iequals("\xc3\x96", "\xc3\xb6"));  // Ö and ö differ: only ASCII folds
  EXPECT_FALSE(iequals("[", "{"));                 // 0x5b and 0x7b are 0x20 apart but no letters
  EXPECT_TRUE(istarts_with("Bearer abc", "bearer "));
  EXPECT_TRUE(istarts_with("x", ""));
  EXPECT_FALSE(istarts_with("Bear", "bearer"));
  EXPECT_TRUE(icontains("550 Daily SENDING LIMIT exceeded", "sending limit"));
  EXPECT_TRUE(icontains("anything", ""));
  EXPECT_FALSE(icontains("limit", "limits"));
}

TEST(Ascii, FindsTheLastOccurrence) {
  EXPECT_EQ(irfind("<body>a</BODY>b</Body>", "</body>"), 15u);
  EXPECT_EQ(irfind("abc", "x"), std::string_view::npos);
  EXPECT_EQ(irfind("", "x"), std::string_view::npos);
  EXPECT_EQ(irfind("ab", "abc"), std::string_view::npos);
}

TEST(Ascii, ClassifiesCharacters) {
  EXPECT_TRUE(ascii_is_alnum('z') && ascii_is_alnum('Z') && ascii_is_alnum('0') && ascii_is_alnum('9'));
  EXPECT_FALSE(ascii_is_alnum('-') || ascii_is_alnum('\xc3') || ascii_is_alnum('@') || ascii_is_alnum('['));
  EXPECT_TRUE(ascii_is_digit('5'));
  EXPECT_FALSE(ascii_is_digit('a'));
  EXPECT_TRUE(ascii_is_alpha('q'));
  EXPECT_FALSE(ascii_is_alpha('1'));
}

}  // namespace
}  // namespace deliverd::core
