// Keyed address hashes in PostgreSQL: what suppressions and delivery events keep is an HMAC under
// a key derived from the secret key, not the SHA-256 a dictionary reverses; rows written under an
// old key or before keys keep matching, `deliverd rekey` (rehash_addresses) moves the rows that
// still hold their address to the current key, and erased rows match for as long as they can.
#include <optional>
#include <string>
#include <vector>

#include "policy/suppression_set.h"
#include "store/accounts.h"
#include "store/delivery_events.h"
#include "store/rekey.h"
#include "store/secret_box.h"
#include "store/suppressions.h"
#include "tests/integration/fixtures/address_hashes.h"
#include "tests/integration/store/pg_store_test.h"

namespace deliverd::store {
namespace {

using deliverd::testing::bytea_sql;
using deliverd::testing::hash_key;

class KeyedHashes : public PgStoreTest {
 protected:
  // The key as the daemon has it: the current secret key first, then the old ones.
  static AddressHasher hasher(std::vector<unsigned char> secrets) {
    std::vector<core::Key256> old;
    for (size_t i = 1; i < secrets.size(); ++i) old.push_back(hash_key(secrets[i]));
    return AddressHasher::from(SecretBox::from_key(hash_key(secrets[0]), old));
  }

  // The database's answer (is_suppressed) and the gate's (its in-memory set, loaded from the
  // table as the gate loads it) must agree.
  bool suppressed(const AddressHasher& h, const std::string& account, const std::string& address) {
    std::optional<bool> db;
    std::vector<std::pair<std::string, std::string>> rows;
    on_loop([&](PgConnection& c, auto done) {
      is_suppressed(c, h, account, address, [&, done](core::Result<bool, std::string> r) {
        db = r.ok() && *r;
        load_suppression_page(c, std::nullopt, 1000, [&, done](auto loaded) {
          if (loaded) rows = std::move(*loaded);
          done();
        });
      });
    });
    policy::SuppressionSet set;
    for (const auto& [a, hash] : rows) set.append_sorted(a, hash);
    const bool gate = set.contains_any(account, h.candidates(address));
    EXPECT_EQ(db.value_or(!gate), gate) << address;
    return gate;
  }

  void erase(const AddressHasher& h, const std::string& account, const std::string& address) {
    std::optional<bool> ok;
    on_loop([&](PgConnection& c, auto done) {
      erase_address(c, h, account, address, [&, done](core::Result<int64_t, std::string> r) {
        ok = r.ok();
        done();
      });
    });
    ASSERT_EQ(ok, true);
  }

  std::string hash_of(const std::string& where) {
    return scalar("SELECT encode(address_sha256, 'hex') FROM suppressions WHERE " + where);
  }
};

TEST_F(KeyedHashes, ARowIsKeyedNotItsSha256AndStillSuppresses) {
  const AddressHasher h = hasher({1});
  ASSERT_TRUE(add_suppression_blocking(pg_.conninfo(), h, {"acct_1", "Bob@X.org", "unsubscribed", "one_click"}).value());
  EXPECT_EQ(scalar("SELECT address_sha256 = " + bytea_sql(h.key("bob@x.org")) + " FROM suppressions"), "t");
  // Not reversible with a dictionary of plain hashes, in any spelling.
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE address_sha256 IN (sha256('bob@x.org'), sha256('Bob@x.org'),"
                   " sha256('Bob@X.org'))"),
            "0");
  EXPECT_TRUE(suppressed(h, "acct_1", "BOB@x.org"));
  EXPECT_FALSE(suppressed(h, "acct_2", "bob@x.org"));
  EXPECT_FALSE(suppressed(hasher({9}), "acct_1", "bob@x.org")) << "under another secret key it is another hash";
}

TEST_F(KeyedHashes, APlainSha256RowFromBeforeKeysStillSuppresses) {
  scalar("INSERT INTO suppressions (account, address, address_sha256, reason, source) VALUES"
         " ('acct_1', 'old@x.org', sha256('old@x.org'), 'manual', 'test') RETURNING 1");
  const AddressHasher h = hasher({1});
  EXPECT_TRUE(suppressed(h, "acct_1", "Old@X.org"));
  // A second add finds it and keeps it: one row per address.
  EXPECT_FALSE(add_suppression_blocking(pg_.conninfo(), h, {"acct_1", "old@x.org", "manual", "api"}).value());
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), "1");
  // rekey moves it to the key, since it still has its address.
  auto r = rehash_addresses(pg_.conninfo(), h);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->suppressions_rehashed, 1);
  EXPECT_EQ(hash_of("address = 'old@x.org'"), core::to_hex(h.key("old@x.org")));
  EXPECT_TRUE(suppressed(h, "acct_1", "old@x.org"));
}

TEST_F(KeyedHashes, AfterARotationOldRowsMatchAndRekeyMovesThemToTheNewKey) {
  const AddressHasher before = hasher({1});
  ASSERT_TRUE(add_suppression_blocking(pg_.conninfo(), before, {"acct_1", "carol@x.org", "hard_bounce", "bounce"}).value());
  const std::string old_hash = hash_of("address = 'carol@x.org'");
  // The current key moves to old_secret_key_files; a new one takes its place.
  const AddressHasher rotated = hasher({2, 1});
  EXPECT_TRUE(suppressed(rotated, "acct_1", "carol@x.org"));
  EXPECT_FALSE(add_suppression_blocking(pg_.conninfo(), rotated, {"acct_1", "Carol@x.org", "manual", "api"}).value());

  int batches = 0;
  auto r = rehash_addresses(pg_.conninfo(), rotated, 1, [&](const RehashReport&) { ++batches; });
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->suppressions_rehashed, 1);
  EXPECT_GE(batches, 1);
  const std::string new_hash = hash_of("address = 'carol@x.org'");
  EXPECT_NE(new_hash, old_hash);
  EXPECT_EQ(new_hash, core::to_hex(rotated.key("carol@x.org")));
  EXPECT_EQ(scalar("SELECT reason || ' ' || source FROM suppressions"), "hard_bounce bounce");
  EXPECT_TRUE(suppressed(rotated, "acct_1", "carol@x.org"));
  // The old key retired: still suppressed.
  EXPECT_TRUE(suppressed(hasher({2}), "acct_1", "carol@x.org"));
  // A second run has nothing to do.
  auto again = rehash_addresses(pg_.conninfo(), hasher({2}));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->suppressions_rehashed, 0);
}

TEST_F(KeyedHashes, AnErasedAddressStillBlocksAndStillMatchesErasure) {
  const AddressHasher h = hasher({1});
  // A plain row from before keys, then the erasure: one row is left, keyed, without the address.
  scalar("INSERT INTO suppressions (account, address, address_sha256, reason, source) VALUES"
         " ('acct_1', 'dave@x.org', sha256('dave@x.org'), 'manual', 'test') RETURNING 1");
  erase(h, "acct_1", "Dave@x.org");
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), "1");
  EXPECT_EQ(scalar("SELECT coalesce(address, 'NULL') || ' ' || reason || ' ' || source FROM suppressions"),
            "NULL erased erasure");
  EXPECT_EQ(hash_of("true"), core::to_hex(h.key("dave@x.org")));
  EXPECT_TRUE(suppressed(h, "acct_1", "dave@x.org"));
  erase(h, "acct_1", "dave@x.org");  // found again by its hash: still one row
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), "1");

  // Rotated: it cannot be rehashed (no address), and matches through the old key while listed.
  const AddressHasher rotated = hasher({2, 1});
  auto r = rehash_addresses(pg_.conninfo(), rotated);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->suppressions, 0);
  EXPECT_TRUE(suppressed(rotated, "acct_1", "dave@x.org"));
  erase(rotated, "acct_1", "dave@x.org");  // moves the erased row to the current key
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions"), "1");
  EXPECT_EQ(hash_of("true"), core::to_hex(rotated.key("dave@x.org")));
  EXPECT_TRUE(suppressed(hasher({2}), "acct_1", "dave@x.org"));
}

TEST_F(KeyedHashes, DeliveryEventsAreWrittenKeyedFoundByErasureAndRehashed) {
  const AddressHasher h = hasher({1});
  DeliveryEvent e;
  e.job_id = "j1";
  e.account = "acct_1";
  e.recipient = "Eve@Example.org";
  e.status = "delivered";
  std::optional<bool> inserted;
  on_loop([&](PgConnection& c, auto done) {
    insert_delivery_events(c, h, {e}, [&, done](core::Result<core::Ok, std::string> r) {
      inserted = r.ok();
      done();
    });
  });
  ASSERT_EQ(inserted, true);
  EXPECT_EQ(scalar("SELECT recipient_sha256 = " + bytea_sql(h.key("eve@example.org")) + " FROM delivery_events"), "t");
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events WHERE recipient_sha256 = sha256('eve@example.org')"), "0");
  // One written under an old key, one plain from before keys; rekey moves both to the new key.
  const AddressHasher rotated = hasher({2, 1});
  scalar("INSERT INTO delivery_events (job_id, account, recipient, recipient_sha256, status) VALUES"
         " ('j2', 'acct_1', 'eve@example.org', sha256('eve@example.org'), 'bounced') RETURNING 1");
  auto r = rehash_addresses(pg_.conninfo(), rotated, 1);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->events, 2);
  EXPECT_EQ(r->events_rehashed, 2);
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events WHERE recipient_sha256 = " +
                   bytea_sql(rotated.key("eve@example.org"))),
            "2");
  // A plain row left from before keys with no recipient (as 0008 left some) is scrubbed too.
  scalar("INSERT INTO delivery_events (job_id, account, recipient, recipient_sha256, status, reply_text) VALUES"
         " ('j3', 'acct_1', NULL, sha256('eve@example.org'), 'deferred', 'for eve@example.org') RETURNING 1");
  erase(hasher({2}), "acct_1", "EVE@example.org");
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events WHERE recipient IS NOT NULL OR reply_text IS NOT NULL"), "0");
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events"), "3");
}

}  // namespace
}  // namespace deliverd::store
