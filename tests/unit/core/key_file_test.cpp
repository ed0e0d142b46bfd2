#include "core/key_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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

}  // namespace
}  // namespace deliverd::core
