// What inbound/ keeps in PostgreSQL: the Message-ID of every delivered message with its event (so
// a bounce or reply read later names its job), the lookup that matches a signal to it, and the
// watch cursor, which only moves forward within one UIDVALIDITY.
#include <optional>
#include <string>
#include <vector>

#include "store/delivery_events.h"
#include "store/inbound_watch.h"
#include "store/secret_box.h"
#include "tests/integration/fixtures/address_hashes.h"
#include "tests/integration/store/pg_store_test.h"

namespace deliverd::store {
namespace {

class InboundStore : public PgStoreTest {
 protected:
  void SetUp() override {
    PgStoreTest::SetUp();
    scalar("INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port, security) VALUES"
           " ('mbx_1', 'acct_a', 'alice@acme.example', 'smtp.acme.example', 587, 'starttls'),"
           " ('mbx_1', 'acct_b', 'bob@other.example', 'smtp.other.example', 587, 'starttls') RETURNING 1");
  }

  void insert(std::vector<DeliveryEvent> events) {
    std::optional<bool> ok;
    on_loop([&](PgConnection& c, auto done) {
      insert_delivery_events(c, hasher_, events, [&, done](core::Result<core::Ok, std::string> r) {
        ok = r.ok();
        EXPECT_TRUE(r.ok()) << (r ? "" : r.error());
        done();
      });
    });
    ASSERT_EQ(ok, true);
  }

  static DeliveryEvent delivered(std::string job, std::string account, std::string to, std::string message_id) {
    DeliveryEvent e;
    e.job_id = std::move(job);
    e.account = std::move(account);
    e.mailbox = "mbx_1";
    e.recipient = std::move(to);
    e.status = "delivered";
    e.message_id = std::move(message_id);
    return e;
  }

  std::optional<SentMessage> find(const std::string& account, std::vector<std::string> ids, const std::string& to,
                                  int64_t window_s = 3600) {
    std::optional<SentMessage> got;
    bool answered = false;
    on_loop([&](PgConnection& c, auto done) {
      find_sent_message(c, hasher_, account, "mbx_1", ids, to, window_s,
                        [&, done](core::Result<std::optional<SentMessage>, std::string> r) {
                          EXPECT_TRUE(r.ok()) << (r ? "" : r.error());
                          if (r) got = *r;
                          answered = true;
                          done();
                        });
    });
    EXPECT_TRUE(answered);
    return got;
  }

  AddressHasher hasher_ = deliverd::testing::test_hasher(7);
};

TEST_F(InboundStore, DeliveredEventsKeepTheirMessageIdAndShowIt) {
  insert({delivered("j1", "acct_a", "bob@example.org", "m1@acme.example")});
  EXPECT_EQ(scalar("SELECT message_id FROM delivery_events WHERE job_id = 'j1'"), "m1@acme.example");
  std::optional<std::vector<DeliveryEvent>> read;
  on_loop([&](PgConnection& c, auto done) {
    delivery_events_for_job(c, std::string("acct_a"), "j1", [&, done](auto r) {
      if (r) read = *r;
      done();
    });
  });
  ASSERT_TRUE(read && read->size() == 1);
  EXPECT_EQ((*read)[0].message_id, "m1@acme.example");
  EXPECT_NE(delivery_event_json((*read)[0]).find(R"("message_id":"m1@acme.example")"), std::string::npos);
}

TEST_F(InboundStore, ASignalFindsItsJobByMessageIdFirstThenByRecipient) {
  insert({delivered("j1", "acct_a", "bob@example.org", "m1@acme.example"),
          delivered("j2", "acct_a", "Carol@Example.org", "m2@acme.example"),
          delivered("j3", "acct_a", "carol@example.org", "m3@acme.example")});
  // The returned message's id wins over the recipient the report names.
  auto byid = find("acct_a", {"m1@acme.example"}, "carol@example.org");
  ASSERT_TRUE(byid);
  EXPECT_EQ(byid->job_id, "j1");
  EXPECT_TRUE(byid->by_message_id);
  EXPECT_EQ(byid->recipient, "bob@example.org");
  // Ids are tried in order: the first that names a delivery.
  auto ordered = find("acct_a", {"unknown@elsewhere", "m2@acme.example", "m1@acme.example"}, "");
  ASSERT_TRUE(ordered);
  EXPECT_EQ(ordered->job_id, "j2");
  // No id: the newest delivery to the recipient (any case) within the window.
  auto byrcpt = find("acct_a", {}, "CAROL@example.org");
  ASSERT_TRUE(byrcpt);
  EXPECT_EQ(byrcpt->job_id, "j3");
  EXPECT_FALSE(byrcpt->by_message_id);
  EXPECT_FALSE(find("acct_a", {}, "nobody@example.org"));
}

TEST_F(InboundStore, ASignalNeverMatchesAnotherAccountsSendsOrOldOnes) {
  insert({delivered("j1", "acct_a", "bob@example.org", "m1@acme.example")});
  // Account B's mailbox has the same id; A's Message-ID and recipient are not B's.
  EXPECT_FALSE(find("acct_b", {"m1@acme.example"}, "bob@example.org"));
  scalar("UPDATE delivery_events SET created_at = now() - interval '3 hours' RETURNING 1");
  EXPECT_FALSE(find("acct_a", {}, "bob@example.org", 3600));  // by recipient only within the window
  EXPECT_TRUE(find("acct_a", {"m1@acme.example"}, "bob@example.org", 3600));  // by id at any age
}

TEST_F(InboundStore, HostileIdsAreLeftOutNotSentIntoTheStatement) {
  insert({delivered("j1", "acct_a", "bob@example.org", "m1@acme.example")});
  // Latin-1, array syntax and quotes in ids from a peer: the lookup answers, by the good id.
  auto got = find("acct_a", {"caf\xE9@x", "a\"},{\"b", "x\\y", std::string(300, 'a'), "m1@acme.example"}, "");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->job_id, "j1");
}

TEST_F(InboundStore, TheCursorMovesOnlyForwardWithinOneUidValidity) {
  auto save = [&](uint32_t validity, uint32_t uid) {
    on_loop([&](PgConnection& c, auto done) {
      save_watch_cursor(c, "acct_a", "mbx_1", validity, uid, [done](auto r) {
        EXPECT_TRUE(r.ok());
        done();
      });
    });
  };
  auto load = [&] {
    std::optional<WatchRow> row;
    on_loop([&](PgConnection& c, auto done) {
      load_watch(c, "acct_a", "mbx_1", [&, done](auto r) {
        if (r && *r) row = **r;
        done();
      });
    });
    return row;
  };
  EXPECT_FALSE(load());
  save(100, 7);
  save(100, 5);  // a slow write from a daemon that lost the watch
  ASSERT_TRUE(load());
  EXPECT_EQ(load()->last_uid, 7u);
  save(200, 2);  // the folder was recreated: its UIDs start again
  EXPECT_EQ(load()->uid_validity, 200u);
  EXPECT_EQ(load()->last_uid, 2u);
  on_loop([&](PgConnection& c, auto done) {
    save_watch_state(c, "acct_a", "mbx_1", "backoff", "login: wrong \xFF password", "d1", [done](auto r) {
      EXPECT_TRUE(r.ok());
      done();
    });
  });
  EXPECT_EQ(load()->state, "backoff");
  EXPECT_EQ(load()->last_error, "login: wrong \\xff password");
  EXPECT_EQ(load()->owner, "d1");
  EXPECT_EQ(load()->last_uid, 2u);  // state writes leave the cursor alone
  // Removing the mailbox removes its watch.
  scalar("DELETE FROM mailboxes WHERE account = 'acct_a' RETURNING 1");
  EXPECT_FALSE(load());
}

}  // namespace
}  // namespace deliverd::store
