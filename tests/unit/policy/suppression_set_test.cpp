#include "policy/suppression_set.h"

#include <gtest/gtest.h>

#include "store/suppressions.h"
#include "tests/integration/fixtures/address_hashes.h"

namespace deliverd::policy {
namespace {

std::string hex(const std::string& raw) {
  static const char* k = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(k[c >> 4]);
    out.push_back(k[c & 15]);
  }
  return out;
}

using deliverd::testing::plain_sha256;

// What the gate asks: any of the address's hashes under the test key.
bool has(const SuppressionSet& s, std::string_view account, std::string_view address) {
  static const store::AddressHasher h = deliverd::testing::test_hasher();
  return s.contains_any(account, h.candidates(address));
}

TEST(Normalise, DomainCaseFoldsLocalPartAndPlusAreKept) {
  EXPECT_EQ(store::normalize_address("  Bob+News@Example.ORG "), "Bob+News@example.org");
  EXPECT_EQ(store::normalize_address("bob@x.org"), "bob@x.org");
  EXPECT_EQ(store::normalize_address("no-at-sign"), "");
  EXPECT_EQ(store::normalize_address("@x.org"), "");
  EXPECT_EQ(store::normalize_address("bob@"), "");
  EXPECT_EQ(deliverd::testing::test_hasher().key("bob@x.org").size(), 32u);
}

TEST(SuppressionSet, AccountAndGlobalLists) {
  SuppressionSet s;
  s.insert("acct_1", plain_sha256("bob@example.org"));
  s.insert("*", plain_sha256("spamtrap@example.net"));
  EXPECT_TRUE(has(s, "acct_1", " bob@EXAMPLE.org"));
  EXPECT_TRUE(has(s, "acct_1", "BOB@example.org")) << "suppression ignores case across the whole address";
  EXPECT_FALSE(has(s, "acct_2", "bob@example.org"));
  EXPECT_TRUE(has(s, "acct_2", "spamtrap@Example.NET"));
  EXPECT_FALSE(has(s, "acct_1", "bob+x@example.org")) << "plus-addressing is a different address";
  EXPECT_EQ(s.size(), 2u);
  s.erase("acct_1", plain_sha256("bob@example.org"));
  EXPECT_FALSE(has(s, "acct_1", "bob@example.org"));
  EXPECT_EQ(s.size(), 1u);
}

TEST(SuppressionSet, RowsFromBeforeTheCaseFoldedKeyStillMatch) {
  SuppressionSet s;
  // An erased row migration 0008 could not re-key: hashed with its local part as given.
  s.insert("acct_1", plain_sha256("Carol@example.org"));
  EXPECT_TRUE(has(s, "acct_1", "Carol@EXAMPLE.org"));
  EXPECT_FALSE(has(s, "acct_1", "carol@example.org")) << "only the spelling it was listed under";
  s.insert("acct_1", deliverd::testing::test_hasher().key("J\xc3\x96S\xc3\x89@example.org"));
  EXPECT_TRUE(has(s, "acct_1", "j\xc3\xb6s\xc3\xa9@example.org"));
  EXPECT_TRUE(has(s, "acct_1", "jo\xcc\x88s\xc3\xa9@example.org"));  // NFD spelling
}

TEST(SuppressionSet, NotificationsApply) {
  SuppressionSet s;
  std::string sha = plain_sha256("ivy@example.org");
  SuppressionSet::Change c;
  ASSERT_TRUE(SuppressionSet::parse_notification("I|" + hex(sha) + "|acct|with|bars", c));
  EXPECT_EQ(c.op, SuppressionSet::Op::Insert);
  EXPECT_EQ(c.account, "acct|with|bars");
  s.apply(c);
  EXPECT_TRUE(has(s, "acct|with|bars", "ivy@example.org"));
  ASSERT_TRUE(SuppressionSet::parse_notification("D|" + hex(sha) + "|acct|with|bars", c));
  s.apply(c);
  EXPECT_EQ(s.size(), 0u);
  ASSERT_TRUE(SuppressionSet::parse_notification("T||", c));
  EXPECT_EQ(c.op, SuppressionSet::Op::Truncate);
}

TEST(SuppressionSet, MalformedNotificationsAreRefused) {
  SuppressionSet::Change c;
  std::string h(64, 'a');
  EXPECT_FALSE(SuppressionSet::parse_notification("", c));
  EXPECT_FALSE(SuppressionSet::parse_notification("X|" + h + "|a", c));
  EXPECT_FALSE(SuppressionSet::parse_notification("I|" + h + "|", c)) << "no account";
  EXPECT_FALSE(SuppressionSet::parse_notification("I|" + h.substr(2) + "|a", c)) << "short hash";
  EXPECT_FALSE(SuppressionSet::parse_notification("I|" + std::string(64, 'G') + "|a", c));
  EXPECT_FALSE(SuppressionSet::parse_notification("I" + h, c));
}

}  // namespace
}  // namespace deliverd::policy
