#include "core/hex.h"

#include <gtest/gtest.h>

namespace deliverd::core {
namespace {

TEST(Hex, RoundTripsEveryByteInLowercase) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  const std::string hex = to_hex(all);
  EXPECT_EQ(hex.size(), 512u);
  EXPECT_EQ(hex.substr(0, 6), "000102");
  EXPECT_EQ(hex.substr(506), "fdfeff");
  EXPECT_EQ(from_hex(hex), all);
  EXPECT_EQ(to_hex(""), "");
}

TEST(Hex, ReadsEitherCaseAndRefusesWhatIsNotHex) {
  EXPECT_EQ(from_hex("DEADbeef"), std::string("\xde\xad\xbe\xef"));
  EXPECT_EQ(from_hex(""), std::string());
  EXPECT_FALSE(from_hex("abc"));  // odd length
  EXPECT_FALSE(from_hex("0g"));
  EXPECT_FALSE(from_hex("0 "));
  EXPECT_FALSE(from_hex(std::string_view("\0\0", 2)));
}

}  // namespace
}  // namespace deliverd::core
