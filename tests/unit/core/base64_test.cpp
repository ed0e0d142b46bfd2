#include "core/base64.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace deliverd::core {
namespace {

// RFC 4648 section 10.
const std::vector<std::pair<std::string, std::string>> kVectors = {
    {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
};

TEST(Base64, EncodesTheRfc4648TestVectors) {
  for (const auto& [plain, encoded] : kVectors) {
    EXPECT_EQ(base64_encode(plain), encoded) << plain;
    auto d = base64_decode(encoded);
    ASSERT_TRUE(d.ok()) << encoded << ": " << d.error();
    EXPECT_EQ(*d, plain);
  }
}

TEST(Base64, RoundTripsEveryByteAndEveryLength) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 1 + n / 8) {
    auto d = base64_decode(base64_encode(all.substr(0, n)));
    ASSERT_TRUE(d.ok()) << n;
    EXPECT_EQ(*d, all.substr(0, n));
  }
  EXPECT_EQ(base64_encode("\xfb\xff"), "+/8=");
}

TEST(Base64, RefusesMalformedInputAndSaysWhy) {
  struct Bad { std::string text, why; };
  for (const auto& b : std::vector<Bad>{{"Zg", "multiple of 4"},
                                        {"Zg=", "multiple of 4"},
                                        {"Zh==", "non-canonical"},   // "Zg==" is the one encoding of "f"
                                        {"Zm9=", "non-canonical"},   // "Zm8="
                                        {"Z===", "padding"},
                                        {"Zg==Zg==", "padding"},
                                        {"=Zg=", "padding"},
                                        {"Zm 9v", "multiple of 4"},
                                        {"Zm9v\n", "multiple of 4"},
                                        {"Zm\n9", "invalid character at offset 2"},
                                        {"-_8=", "invalid character at offset 0"},  // base64url alphabet
                                        {std::string("Zm\0v", 4), "invalid character at offset 2"}}) {
    auto d = base64_decode(b.text);
    ASSERT_FALSE(d.ok()) << b.text;
    EXPECT_NE(d.error().find(b.why), std::string::npos) << b.text << ": " << d.error();
    EXPECT_EQ(d.error().rfind("base64: ", 0), 0u) << d.error();
  }
}

TEST(Base64Url, UsesTheUrlAlphabetWithoutPadding) {
  for (const auto& [plain, encoded] : kVectors) {
    std::string unpadded = encoded.substr(0, encoded.find('='));
    EXPECT_EQ(base64url_encode(plain), unpadded);
    auto d = base64url_decode(unpadded);
    ASSERT_TRUE(d.ok()) << unpadded;
    EXPECT_EQ(*d, plain);
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
}

TEST(Base64Url, RoundTripsAndIsCanonical) {
  for (std::string s : std::vector<std::string>{"", "f", "fo", "foo", "foob", std::string("\xff\xfe\x00", 3)}) {
    auto d = base64url_decode(base64url_encode(s));
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
  EXPECT_FALSE(base64url_decode("Zh").ok());  // "Zg" is the one encoding of "f"
  EXPECT_FALSE(base64url_decode("Z").ok());
  EXPECT_FALSE(base64url_decode("Zg==").ok());
}

TEST(Base64Url, RefusesTheStandardAlphabetAndStrayCharacters) {
  for (std::string bad : {"+/8", "ab/c", "Zg=", "Zm9v.", "Zm 9"}) {
    auto d = base64url_decode(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.error().rfind("base64url: ", 0), 0u) << d.error();
  }
}

}  // namespace
}  // namespace deliverd::core
