#include "smtp/unsubscribe_token.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace deliverd::smtp {
namespace {

std::array<unsigned char, 32> key(unsigned char fill) {
  std::array<unsigned char, 32> k{};
  k.fill(fill);
  return k;
}

const UnsubscribeClaims kClaims{"acct_42", "Bob.Smith@example.org", "cmp_1"};

TEST(UnsubscribeToken, RoundTripsTheClaims) {
  auto t = UnsubscribeTokens::from_key(key(7));
  std::string token = t.issue(kClaims);
  EXPECT_EQ(token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
            std::string::npos);
  auto c = t.verify(token);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(*c, kClaims);
  EXPECT_EQ(t.issue(kClaims), token);  // stable: repeated mail to one address has one URL
}

TEST(UnsubscribeToken, EveryAlteredCharacterIsRejected) {
  auto t = UnsubscribeTokens::from_key(key(7));
  std::string token = t.issue(kClaims);
  for (size_t i = 0; i < token.size(); ++i) {
    std::string bad = token;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(t.verify(bad).ok()) << i;
  }
  EXPECT_FALSE(t.verify(token.substr(0, token.size() - 1)).ok());
  EXPECT_FALSE(t.verify(token + "A").ok());
}

TEST(UnsubscribeToken, AnotherKeysTokenIsRejected) {
  auto a = UnsubscribeTokens::from_key(key(1)), b = UnsubscribeTokens::from_key(key(2));
  EXPECT_FALSE(b.verify(a.issue(kClaims)).ok());
}

TEST(UnsubscribeToken, ForgedPayloadWithOldMacIsRejected) {
  auto t = UnsubscribeTokens::from_key(key(7));
  std::string token = t.issue(kClaims);
  std::string other = t.issue({"acct_42", "alice@example.org", "cmp_1"});
  std::string spliced = other.substr(0, other.find('.')) + token.substr(token.find('.'));
  EXPECT_FALSE(t.verify(spliced).ok());
}

TEST(UnsubscribeToken, GarbageIsRejectedWithoutCrashing) {
  auto t = UnsubscribeTokens::from_key(key(7));
  for (std::string bad : std::vector<std::string>{"", ".", "abc", "abc.", ".abc", "a.b.c", "!!!.???", std::string(2000, 'A') + ".AA"})
    EXPECT_FALSE(t.verify(bad).ok()) << bad;
}

TEST(UnsubscribeToken, KeyFileIsHexOrRaw) {
  char path[] = "/tmp/deliverd-unsub-keyXXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << std::string(64, 'a') << "\n";
  auto hex = UnsubscribeTokens::from_key_file(path);
  ASSERT_TRUE(hex.ok()) << hex.error();
  EXPECT_TRUE(UnsubscribeTokens::from_key(key(0xaa)).verify(hex->issue(kClaims)).ok());
  std::ofstream(path, std::ios::trunc) << "short";
  auto bad = UnsubscribeTokens::from_key_file(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find(path), std::string::npos);
  EXPECT_EQ(bad.error().find("short"), std::string::npos);  // never echo key material
  std::remove(path);
  EXPECT_FALSE(UnsubscribeTokens::from_key_file(path).ok());
}

TEST(UnsubscribeToken, LinksSignedWithAnOldKeyKeepWorkingWhileItIsListed) {
  auto before = UnsubscribeTokens::from_key(key(1));
  std::string mailed = before.issue(kClaims);
  auto rotated = UnsubscribeTokens::from_key(key(2), {key(1)});
  auto c = rotated.verify(mailed);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(*c, kClaims);
  // New links are signed with the new key only.
  EXPECT_FALSE(before.verify(rotated.issue(kClaims)).ok());
  EXPECT_TRUE(UnsubscribeTokens::from_key(key(2)).verify(rotated.issue(kClaims)).ok());
  // Once the old key is dropped, its links stop working, with the key named in the log reason.
  auto dropped = UnsubscribeTokens::from_key(key(2)).verify(mailed);
  ASSERT_FALSE(dropped.ok());
  EXPECT_NE(dropped.error().find("not configured"), std::string::npos) << dropped.error();
}

TEST(UnsubscribeToken, LinksFromBeforeKeyIdsVerifyWithAnyListedKey) {
  std::string legacy = UnsubscribeTokens::from_key(key(1)).issue_legacy(kClaims);
  auto c = UnsubscribeTokens::from_key(key(2), {key(1)}).verify(legacy);
  ASSERT_TRUE(c.ok()) << c.error();
  EXPECT_EQ(*c, kClaims);
  EXPECT_FALSE(UnsubscribeTokens::from_key(key(2)).verify(legacy).ok());
  EXPECT_NE(legacy, UnsubscribeTokens::from_key(key(1)).issue(kClaims));
}

TEST(UnsubscribeToken, KeyFilesOthersCanReadAreRefused) {
  char path[] = "/tmp/deliverd-unsub-keyXXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << std::string(64, 'b') << "\n";
  ::chmod(path, 0644);
  auto t = UnsubscribeTokens::from_key_file(path);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().find("mode 0644"), std::string::npos) << t.error();
  std::remove(path);
}

}  // namespace
}  // namespace deliverd::smtp
