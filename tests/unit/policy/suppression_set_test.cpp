#include "policy/suppression_set.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

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

// The bulk load fills sorted arrays; notifications then add and remove on top of them, and a
// row out of order (or an account seen again) still counts, once.
TEST(SuppressionSet, BulkLoadedRowsAndLaterChangesAgree) {
  std::vector<std::string> hashes;
  for (int i = 0; i < 6; ++i) hashes.push_back(plain_sha256("user" + std::to_string(i) + "@x.org"));
  std::vector<std::string> sorted = hashes;
  std::sort(sorted.begin(), sorted.end());
  SuppressionSet s;
  s.append_sorted("acct_1", sorted[0]);
  s.append_sorted("acct_1", sorted[2]);
  s.append_sorted("acct_1", sorted[1]);  // out of order
  s.append_sorted("acct_1", sorted[2]);  // a duplicate
  s.append_sorted("acct_2", sorted[3]);
  s.append_sorted("acct_1", sorted[4]);  // the account again, after another one
  EXPECT_EQ(s.size(), 5u);
  for (int i : {0, 1, 2, 4}) EXPECT_TRUE(s.contains_hash("acct_1", sorted[static_cast<size_t>(i)])) << i;
  EXPECT_FALSE(s.contains_hash("acct_1", sorted[3])) << "acct_2's row is not acct_1's";
  EXPECT_TRUE(s.contains_hash("acct_2", sorted[3]));
  EXPECT_FALSE(s.contains_hash("acct_1", sorted[5]));

  s.erase("acct_1", sorted[0]);  // from the sorted array
  EXPECT_FALSE(s.contains_hash("acct_1", sorted[0]));
  s.erase("acct_1", sorted[0]);  // twice: no effect
  EXPECT_EQ(s.size(), 4u);
  s.insert("acct_1", sorted[0]);  // back again
  EXPECT_TRUE(s.contains_hash("acct_1", sorted[0]));
  s.insert("acct_1", sorted[5]);
  s.insert("acct_1", sorted[5]);
  EXPECT_EQ(s.size(), 6u);
  s.erase("acct_2", sorted[3]);
  EXPECT_FALSE(s.contains_hash("acct_2", sorted[3]));
  EXPECT_EQ(s.size(), 5u);
  s.append_sorted("acct_2", sorted[3]);  // an account emptied and loaded again
  EXPECT_TRUE(s.contains_hash("acct_2", sorted[3]));
  EXPECT_EQ(s.size(), 6u);
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

// How the event loops of one daemon hold one list: the bulk-loaded rows once, each loop's
// changes its own. A later append_sorted cannot write into rows another thread reads.
TEST(SuppressionSet, ASharedSetReadsTheSameRowsAndKeepsItsOwnChanges) {
  std::vector<std::string> sorted;
  for (int i = 0; i < 1000; ++i) sorted.push_back(plain_sha256("user" + std::to_string(i) + "@x.org"));
  std::sort(sorted.begin(), sorted.end());
  SuppressionSet primary;
  for (size_t i = 0; i < 900; ++i) primary.append_sorted("acct_1", sorted[i]);
  SuppressionSet loop1 = primary.share();
  EXPECT_TRUE(loop1.shares_rows_with(primary)) << "the rows are not copied";
  EXPECT_EQ(loop1.size(), 900u);

  primary.append_sorted("acct_1", sorted[950]);  // after share(): a change, not a row
  loop1.erase("acct_1", sorted[0]);
  loop1.insert("acct_2", sorted[1]);
  EXPECT_TRUE(primary.contains_hash("acct_1", sorted[950]));
  EXPECT_FALSE(loop1.contains_hash("acct_1", sorted[950])) << "the primary's change is its own";
  EXPECT_TRUE(primary.contains_hash("acct_1", sorted[0])) << "loop 1's change is its own";
  EXPECT_FALSE(loop1.contains_hash("acct_1", sorted[0]));
  EXPECT_TRUE(loop1.contains_hash("acct_2", sorted[1]));
  EXPECT_FALSE(primary.contains_hash("acct_2", sorted[1]));
  EXPECT_EQ(primary.size(), 901u);
  EXPECT_EQ(loop1.size(), 900u);

  // Both read the shared rows on their own threads while each changes its own set.
  auto reader = [&sorted](SuppressionSet& mine, const std::string& account, size_t* found) {
    for (int round = 0; round < 20; ++round)
      for (size_t i = 1; i < 900; ++i) {
        *found += mine.contains_hash("acct_1", sorted[i]);
        mine.insert(account, sorted[i]);
      }
  };
  size_t found_primary = 0, found_loop1 = 0;
  std::thread a(reader, std::ref(primary), "acct_3", &found_primary);
  std::thread b(reader, std::ref(loop1), "acct_4", &found_loop1);
  a.join();
  b.join();
  EXPECT_EQ(found_primary, 20u * 899u);
  EXPECT_EQ(found_loop1, 20u * 899u);

  // A clear() (a TRUNCATE) drops this set's rows, not the other's.
  primary.clear();
  EXPECT_FALSE(primary.shares_rows_with(loop1));
  EXPECT_TRUE(loop1.contains_hash("acct_1", sorted[5]));
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
