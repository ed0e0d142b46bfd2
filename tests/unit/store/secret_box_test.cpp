#include "store/secret_box.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/integration/fixtures/legacy_seal.h"

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
  std::string v3 = sealed;
  v3[0] = 3;
  EXPECT_NE(box.open(v3).error().find("version 3"), std::string::npos);
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

TEST(SecretBox, SealedValuesNameTheirKey) {
  SecretBox box = SecretBox::from_key(key_of(7));
  std::string sealed = box.seal("pw");
  ASSERT_EQ(SecretBox::version_of(sealed), SecretBox::kVersion);
  uint32_t id = 0;
  for (int i = 1; i <= 4; ++i) id = (id << 8) | static_cast<unsigned char>(sealed[static_cast<size_t>(i)]);
  EXPECT_EQ(id, box.key_id());
  EXPECT_EQ(id, core::key_id(key_of(7)));
  EXPECT_NE(box.key_id(), SecretBox::from_key(key_of(8)).key_id());
  EXPECT_TRUE(box.is_current(sealed));
}

TEST(SecretBox, ARotatedKeyStillOpensWhatItSealedAndOnlyTheNewKeySeals) {
  std::string old_sealed = SecretBox::from_key(key_of(1)).seal("old secret", "mbx_1");
  SecretBox rotated = SecretBox::from_key(key_of(2), {key_of(1)});
  auto opened = rotated.open(old_sealed, "mbx_1");
  ASSERT_TRUE(opened) << opened.error();
  EXPECT_EQ(*opened, "old secret");
  EXPECT_FALSE(rotated.is_current(old_sealed));
  std::string resealed = rotated.seal(*opened, "mbx_1");
  EXPECT_TRUE(rotated.is_current(resealed));
  // The old key alone no longer opens what the new key sealed.
  EXPECT_FALSE(SecretBox::from_key(key_of(1)).open(resealed, "mbx_1"));
  // Without the old key, the old value names the key it needs.
  auto missing = SecretBox::from_key(key_of(2)).open(old_sealed, "mbx_1");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find(core::key_id_hex(core::key_id(key_of(1)))), std::string::npos) << missing.error();
}

TEST(SecretBox, ValuesSealedBeforeKeyIdsStillOpenWithAnyConfiguredKey) {
  std::string v1 = testing::seal_legacy_v1(key_of(1), "legacy pw", "mbx_9");
  EXPECT_EQ(SecretBox::version_of(v1), SecretBox::kLegacyVersion);
  auto a = SecretBox::from_key(key_of(1)).open(v1, "mbx_9");
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(*a, "legacy pw");
  auto b = SecretBox::from_key(key_of(2), {key_of(1)}).open(v1, "mbx_9");
  ASSERT_TRUE(b) << b.error();
  EXPECT_EQ(*b, "legacy pw");
  EXPECT_FALSE(SecretBox::from_key(key_of(2)).open(v1, "mbx_9"));
  EXPECT_FALSE(SecretBox::from_key(key_of(1)).open(v1, "mbx_8"));
  EXPECT_FALSE(SecretBox::from_key(key_of(1)).is_current(v1));
}

TEST(SecretBox, AKeyIdCannotBeRelabelled) {
  // Pointing the header at the other configured key fails: the header is authenticated.
  SecretBox both = SecretBox::from_key(key_of(2), {key_of(1)});
  std::string sealed = both.seal("pw");
  uint32_t other = core::key_id(key_of(1));
  for (int i = 0; i < 4; ++i) sealed[static_cast<size_t>(1 + i)] = static_cast<char>(other >> (24 - 8 * i));
  EXPECT_FALSE(both.open(sealed));
}

TEST(SecretBox, KeyFilesOthersCanReadAreRefusedNamingFileAndMode) {
  KeyFile f(SecretBox::generate_hex_key());
  std::filesystem::permissions(f.path(), std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                             std::filesystem::perms::group_read);
  auto box = SecretBox::from_key_file(f.path());
  ASSERT_FALSE(box);
  EXPECT_NE(box.error().find(f.path()), std::string::npos) << box.error();
  EXPECT_NE(box.error().find("mode 0640"), std::string::npos) << box.error();
  std::filesystem::permissions(f.path(), std::filesystem::perms::owner_read);
  EXPECT_TRUE(SecretBox::from_key_file(f.path())) << "0400 is private";
}

TEST(SecretBox, OldKeyFilesOpenOnlyAndTheSameKeyTwiceIsAnError) {
  std::string hex_old = SecretBox::generate_hex_key(), hex_new = SecretBox::generate_hex_key();
  KeyFile old_file(hex_old), new_file(hex_new), again(hex_new);
  auto old_box = SecretBox::from_key_file(old_file.path());
  ASSERT_TRUE(old_box);
  std::string sealed = old_box->seal("pw");
  auto box = SecretBox::from_key_file(new_file.path(), {old_file.path()});
  ASSERT_TRUE(box) << box.error();
  EXPECT_EQ(box->key_count(), 2u);
  EXPECT_EQ(*box->open(sealed), "pw");
  EXPECT_FALSE(box->is_current(sealed));
  auto twice = SecretBox::from_key_file(new_file.path(), {again.path()});
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().find(again.path()), std::string::npos);
}

}  // namespace
}  // namespace deliverd::store
