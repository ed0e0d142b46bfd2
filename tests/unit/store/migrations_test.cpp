#include "store/migrations.h"

#include <gtest/gtest.h>

namespace deliverd::store {
namespace {

TEST(Migrations, EmbeddedVersionsAreConsecutiveFromOne) {
  auto all = migrations();
  ASSERT_FALSE(all.empty());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].version, static_cast<int>(i + 1));
    EXPECT_FALSE(all[i].name.empty());
    EXPECT_FALSE(all[i].sql.empty());
  }
  EXPECT_EQ(latest_schema_version(), all.back().version);
}

TEST(Migrations, FirstCreatesMailboxesWithPortPolicy) {
  const Migration& m = migrations()[0];
  EXPECT_EQ(m.name, "create_mailboxes");
  EXPECT_NE(m.sql.find("CREATE TABLE mailboxes"), std::string_view::npos);
  EXPECT_NE(m.sql.find("(25, 465, 587, 2525)"), std::string_view::npos);
  EXPECT_NE(m.sql.find("ON mailboxes (account)"), std::string_view::npos);
}

}  // namespace
}  // namespace deliverd::store
