#include "core/key_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace deliverd::core {
namespace {

class KeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    int fd = mkstemp(path_);
    ASSERT_GE(fd, 0);
    close(fd);
    chmod(path_, 0600);
  }
  void TearDown() override { unlink(path_); }
  void write(const std::string& bytes) { std::ofstream(path_, std::ios::binary | std::ios::trunc) << bytes; }
  char path_[40] = "/tmp/deliverd-key-fileXXXXXX";
};

TEST_F(KeyFile, ReadsRawBytes) {
  write(std::string(32, '\x07'));
  auto k = read_key_file(path_);
  ASSERT_TRUE(k.ok()) << k.error();
  EXPECT_EQ((*k)[0], 7);
  EXPECT_EQ((*k)[31], 7);
}

TEST_F(KeyFile, ReadsHexWithSurroundingWhiteSpace) {
  write("  00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\n");
  auto k = read_key_file(path_);
  ASSERT_TRUE(k.ok()) << k.error();
  EXPECT_EQ((*k)[1], 0x11);
  EXPECT_EQ((*k)[15], 0xff);
  EXPECT_EQ((*k)[31], 0xff);
}

TEST_F(KeyFile, ErrorsNameTheFileNeverTheKey) {
  write("not-a-key-secret");
  auto bad = read_key_file(path_);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find(path_), std::string::npos);
  EXPECT_NE(bad.error().find("32 raw bytes or 64 hex characters"), std::string::npos);
  EXPECT_EQ(bad.error().find("secret"), std::string::npos);
  write(std::string(63, 'a') + "g");
  EXPECT_FALSE(read_key_file(path_).ok());
  write(" \n");
  auto empty = read_key_file(path_);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().find("is empty"), std::string::npos);
  auto missing = read_key_file("/nonexistent/deliverd.key");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("cannot read key file /nonexistent/deliverd.key"), std::string::npos);
}

TEST_F(KeyFile, AFileOthersMayReadIsRefusedNamingItsMode) {
  write(std::string(64, 'c') + "\n");
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    chmod(path_, mode);
    auto k = read_key_file(path_);
    ASSERT_FALSE(k) << mode;
    char want[16];
    std::snprintf(want, sizeof want, "mode %04o", static_cast<unsigned>(mode));
    EXPECT_NE(k.error().find(want), std::string::npos) << k.error();
    EXPECT_NE(k.error().find(path_), std::string::npos) << k.error();
    EXPECT_EQ(k.error().find("cccc"), std::string::npos);
    EXPECT_FALSE(read_private_file(path_));
  }
  chmod(path_, 0400);
  auto k = read_key_file(path_);
  ASSERT_TRUE(k) << k.error();
  EXPECT_EQ((*k)[0], 0xcc);
}

TEST(KeyIds, DifferPerKeyAndAreStable) {
  Key256 a{}, b{};
  b[31] = 1;
  EXPECT_NE(key_id(a), key_id(b));
  EXPECT_EQ(key_id(a), key_id(a));
  EXPECT_EQ(key_id_hex(0x0102abcd), "0102abcd");
}

TEST(Hkdf, SeparatesPurposesAndSalts) {
  Key256 master{};
  master.fill(0x0b);
  EXPECT_NE(hkdf_sha256(master, "salt", "a"), hkdf_sha256(master, "salt", "b"));
  EXPECT_NE(hkdf_sha256(master, "salt", "a"), hkdf_sha256(master, "other", "a"));
  EXPECT_EQ(hkdf_sha256(master, "salt", "a"), hkdf_sha256(master, "salt", "a"));
  EXPECT_NE(hkdf_sha256(master, "salt", "a"), master);
}

}  // namespace
}  // namespace deliverd::core
