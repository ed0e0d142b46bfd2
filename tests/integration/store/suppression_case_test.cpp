// Suppression ignores case across the whole address: the key the daemon computes, the rows
// migration 0008 re-keys and merges, and the rows it cannot re-key (erased addresses), which
// stay suppressed under the spelling they had.
#include <gtest/gtest.h>
#include <uv.h>

#include <optional>
#include <string>

#include "store/accounts.h"
#include "store/migrations.h"
#include "store/pg_blocking.h"
#include "store/pg_connection.h"
#include "store/suppressions.h"
#include "tests/integration/fixtures/address_hashes.h"
#include "tests/integration/store/pg_store_test.h"

namespace deliverd::store {
namespace {

using deliverd::testing::bytea_sql;
using deliverd::testing::plain_sha256;

class SuppressionCase : public PgStoreTest {
 protected:
  bool suppressed(const std::string& account, const std::string& address) {
    std::optional<bool> out;
    on_loop([&](PgConnection& c, auto done) {
      is_suppressed(c, h_, account, address, [&, done](core::Result<bool, std::string> r) {
        out = r.ok() && *r;
        done();
      });
    });
    return out.value_or(false);
  }

  AddressHasher h_ = deliverd::testing::test_hasher();
};

TEST_F(SuppressionCase, OneKeyForEverySpellingOfAnAddress) {
  EXPECT_EQ(h_.key("Bob@X.org"), h_.key("bob@x.org"));
  EXPECT_EQ(h_.key(" BOB@x.ORG\t"), h_.key("bob@x.org"));
  EXPECT_EQ(h_.key("bob@b\xc3\xbc" "cher.example"), h_.key("bob@xn--bcher-kva.example"));
  EXPECT_EQ(h_.key("not an address"), "");
  EXPECT_EQ(h_.candidates("bob@x.org").size(), 2u);  // nothing to fold: no legacy form
  EXPECT_EQ(h_.candidates("Bob@X.org").back(), plain_sha256("Bob@x.org"));

  ASSERT_TRUE(add_suppression_blocking(pg_.conninfo(), h_, {"acct_1", "Bob@X.org", "unsubscribed", "one_click"}).value());
  EXPECT_FALSE(add_suppression_blocking(pg_.conninfo(), h_, {"acct_1", "bob@x.org", "hard_bounce", "bounce"}).value());
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), "1");
  EXPECT_EQ(scalar("SELECT address FROM suppressions"), "Bob@x.org");  // the spelling it was listed under
  // Keyed: not the SHA-256 a dictionary would hold.
  EXPECT_EQ(scalar("SELECT address_sha256 = " + bytea_sql(h_.key("bob@x.org")) + " FROM suppressions"), "t");
  EXPECT_EQ(scalar("SELECT address_sha256 = sha256('bob@x.org') FROM suppressions"), "f");
  EXPECT_TRUE(suppressed("acct_1", "BOB@x.org"));
  EXPECT_FALSE(suppressed("acct_2", "bob@x.org"));
  auto listed = list_suppressions_blocking(pg_.conninfo(), h_, "acct_1", "bOb@X.ORG", 10);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 1u);
  EXPECT_TRUE(remove_suppression_blocking(pg_.conninfo(), h_, "acct_1", "BOB@X.ORG").value());
  EXPECT_FALSE(suppressed("acct_1", "bob@x.org"));
}

TEST_F(SuppressionCase, MigrationRekeysMergesAndKeepsErasedRows) {
  // Back to version 7 with rows as it wrote them: the domain folded, the local part not.
  auto row = [](const std::string& account, const std::string& address, const std::string& hashed,
                const std::string& reason, const std::string& at) {
    return "INSERT INTO suppressions (account, address, address_sha256, reason, source, created_at) VALUES ('" +
           account + "', " + (address.empty() ? "NULL" : "'" + address + "'") + ", sha256(convert_to('" + hashed +
           "', 'UTF8')), '" + reason + "', 'test', '" + at + "') RETURNING 1";
  };
  scalar(row("acct_1", "Bob@x.org", "Bob@x.org", "unsubscribed", "2026-01-01"));
  scalar(row("acct_1", "bob@x.org", "bob@x.org", "hard_bounce", "2026-02-01"));
  scalar(row("acct_1", "", "Carol@x.org", "erased", "2026-01-01"));      // erased: cannot be re-keyed
  scalar(row("acct_1", "Dave@x.org", "Dave@x.org", "manual", "2026-03-01"));
  scalar(row("acct_1", "", "dave@x.org", "erased", "2026-04-01"));       // the same mailbox, erased later
  scalar(row("acct_1", "\"Eve X\"@x.org", "\"Eve X\"@x.org", "manual", "2026-01-01"));  // needs the parser
  scalar(row("acct_2", "Bob@x.org", "Bob@x.org", "manual", "2026-05-01"));
  scalar("INSERT INTO delivery_events (job_id, account, recipient, recipient_sha256, status) VALUES"
         " ('j1', 'acct_1', 'Bob@Example.ORG', sha256('Bob@example.org'), 'delivered') RETURNING 1");
  // Migration 0008 once more, as `deliverd migrate` ran it (the later ones stay applied: they
  // cannot be rolled back, and 0008 is what this test is about).
  bool ran = false;
  for (const auto& m : migrations())
    if (m.version == 8) {
      scalar(std::string(m.sql));
      ran = true;
    }
  ASSERT_TRUE(ran);

  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE account = 'acct_1'"), "4");
  // Bob: merged into the earliest row, under the folded key.
  EXPECT_EQ(scalar("SELECT reason || ' ' || address FROM suppressions WHERE address_sha256 = sha256('bob@x.org')"
                   " AND account = 'acct_1'"),
            "unsubscribed Bob@x.org");
  // Dave: the earliest row survives, and is erased because one of the merged rows was.
  EXPECT_EQ(scalar("SELECT coalesce(address, 'erased') || ' ' || reason FROM suppressions"
                   " WHERE address_sha256 = sha256('dave@x.org')"),
            "erased manual");
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE address_sha256 = sha256('Carol@x.org')"), "1");
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE account = 'acct_2' AND address_sha256 = sha256('bob@x.org')"),
            "1");
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events WHERE recipient_sha256 = sha256('bob@example.org')"), "1");

  EXPECT_TRUE(suppressed("acct_1", "BOB@X.ORG"));
  EXPECT_TRUE(suppressed("acct_1", "dave@x.org"));
  EXPECT_TRUE(suppressed("acct_1", "Carol@x.org"));   // the erased row, under the spelling it had
  EXPECT_TRUE(suppressed("acct_1", "\"Eve X\"@x.org"));
  EXPECT_FALSE(suppressed("acct_1", "frank@x.org"));

  // Erasing again reaches the legacy row too, and leaves one row per key.
  std::optional<bool> erased;
  on_loop([&](PgConnection& c, auto done) {
    erase_address(c, h_, "acct_1", "\"Eve X\"@x.org", [&, done](core::Result<int64_t, std::string> r) {
      erased = r.ok();
      done();
    });
  });
  EXPECT_EQ(erased, true);
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE address IS NOT NULL AND address LIKE '%Eve%'"), "0");
}

}  // namespace
}  // namespace deliverd::store
