#include "store/secret_box.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace deliverd::store {
namespace {

std::array<unsigned char, 32> key_of(unsigned char fill) {
  std::array<unsigned char, 32> k{};
  k.fill(fill);
  return k;
}

class KeyFile {
 public:
  explicit KeyFile(const std::string& content) {
    char tmpl[] = "/tmp/deliverd-key-XXXXXX";
    int fd = ::mkstemp(tmpl);
    path_ = tmpl;
    ::close(fd);
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << content;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
  ~KeyFile() { std::filesystem::remove(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(SecretBox, SealThenOpenRoundTrips) {
  SecretBox box = SecretBox::from_key(key_of(7));
  for (std::string plain : {std::string(), std::string("hunter2"), std::string(5000, 'x'), std::string("a\0b", 3)}) {
    std::string sealed = box.seal(plain);
    EXPECT_EQ(sealed.size(), plain.size() + SecretBox::kOverhead);
    EXPECT_EQ(static_cast<unsigned char>(sealed[0]), SecretBox::kVersion);
    auto opened = box.open(sealed);
    ASSERT_TRUE(opened.ok()) << opened.error();
    EXPECT_EQ(*opened, plain);
  }
}

TEST(SecretBox, SealingTwiceUsesFreshNonces) {
  SecretBox box = SecretBox::from_key(key_of(7));
  EXPECT_NE(box.seal("same"), box.seal("same"));
}

TEST(SecretBox, CiphertextDoesNotContainPlaintext) {
  SecretBox box = SecretBox::from_key(key_of(7));
  EXPECT_EQ(box.seal("correct horse battery staple").find("horse"), std::string::npos);
}

TEST(SecretBox, AnyFlippedBitFailsToOpen) {
  SecretBox box = SecretBox::from_key(key_of(7));
  std::string sealed = box.seal("secret password");
  for (size_t i = 1; i < sealed.size(); ++i) {
    std::string t = sealed;
    t[i] = static_cast<char>(t[i] ^ 0x01);
    auto r = box.open(t);
    ASSERT_FALSE(r.ok()) << "byte " << i;
    EXPECT_NE(r.error().find("authentication failed"), std::string::npos);
  }
}

TEST(SecretBox, TruncatedAndUnknownVersionAreErrors) {
  SecretBox box = SecretBox::from_key(key_of(7));
  std::string sealed = box.seal("pw");
  EXPECT_NE(box.open(sealed.substr(0, 10)).error().find("too short"), std::string::npos);
  EXPECT_FALSE(box.open("").ok());
  std::string v2 = sealed;
  v2[0] = 2;
  EXPECT_NE(box.open(v2).error().find("version 2"), std::string::npos);
}

TEST(SecretBox, WrongKeyFailsToOpen) {
  std::string sealed = SecretBox::from_key(key_of(1)).seal("pw");
  EXPECT_FALSE(SecretBox::from_key(key_of(2)).open(sealed).ok());
}

TEST(SecretBox, AssociatedDataBindsTheOwner) {
  SecretBox box = SecretBox::from_key(key_of(3));
  std::string sealed = box.seal("pw", "mbx_1");
  EXPECT_TRUE(box.open(sealed, "mbx_1").ok());
  EXPECT_FALSE(box.open(sealed, "mbx_2").ok());
  EXPECT_FALSE(box.open(sealed).ok());
}

TEST(SecretBox, HexKeyFileWithWhitespaceLoads) {
  std::string hex = SecretBox::generate_hex_key();
  ASSERT_EQ(hex.size(), 64u);
  KeyFile f("  " + hex + "\n");
  auto box = SecretBox::from_key_file(f.path());
  ASSERT_TRUE(box.ok()) << box.error();
  // The same key read twice opens what the other sealed.
  KeyFile g(hex);
  auto other = SecretBox::from_key_file(g.path());
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other->open(box->seal("x")), "x");
}

TEST(SecretBox, RawKeyFileLoadsAndMatchesFromKey) {
  std::string raw(32, '\0');
  for (int i = 0; i < 32; ++i) raw[static_cast<size_t>(i)] = static_cast<char>(i * 7 + 1);
  KeyFile f(raw);
  auto box = SecretBox::from_key_file(f.path());
  ASSERT_TRUE(box.ok()) << box.error();
  std::array<unsigned char, 32> k{};
  std::copy(raw.begin(), raw.end(), k.begin());
  EXPECT_TRUE(SecretBox::from_key(k).open(box->seal("pw")).ok());
}

TEST(SecretBox, BadKeyFilesGiveClearMessagesWithoutKeyMaterial) {
  auto missing = SecretBox::from_key_file("/nonexistent/deliverd.key");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("cannot read key file /nonexistent/deliverd.key"), std::string::npos);

  KeyFile empty("\n \n");
  auto e = SecretBox::from_key_file(empty.path());
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().find("is empty"), std::string::npos);

  KeyFile short_hex("abcdef0123");
  auto s = SecretBox::from_key_file(short_hex.path());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("32 raw bytes or 64 hex characters"), std::string::npos);
  EXPECT_EQ(s.error().find("abcdef0123"), std::string::npos);

  KeyFile not_hex(std::string(64, 'z'));
  auto z = SecretBox::from_key_file(not_hex.path());
  ASSERT_FALSE(z.ok());
  EXPECT_EQ(z.error().find("zzzz"), std::string::npos);
}

}  // namespace
}  // namespace deliverd::store
