// store/delivery_events: what the daemon writes is what the API reads back, recipient hash included.
#include "store/delivery_events.h"
#include "tests/integration/fixtures/address_hashes.h"

#include <gtest/gtest.h>
#include <uv.h>

#include "core/metrics.h"
#include "core/timer.h"
#include "core/utf8.h"
#include "store/migrations.h"
#include "store/pg_connection.h"
#include "tests/integration/fixtures/postgres_server.h"

namespace deliverd::store {
namespace {

TEST(DeliveryEvents, InsertThenReadByJobAndAccount) {
  deliverd::testing::PostgresServer pg;
  ASSERT_TRUE(migrate(pg.conninfo()));
  uv_loop_t loop;
  uv_loop_init(&loop);
  PgConnection* c = PgConnection::create(&loop, pg.conninfo());
  DeliveryEvent e;
  e.job_id = "j1";
  e.account = "acct";
  e.mailbox = "mbx";
  e.recipient = "Bob@Example.ORG";
  e.status = "deferred";
  e.reply_code = 451;
  e.enhanced_code = "4.7.1";
  e.reply_text = "try later";
  e.attempt = 1;
  e.duration_ms = 1234;
  std::vector<DeliveryEvent> by_job, by_account;
  bool inserted = false;
  DeliveryEvent later = e;
  later.status = "delivered";
  later.reply_code = 250;
  later.attempt = 2;
  insert_delivery_events(*c, deliverd::testing::test_hasher(), {e, later}, [&](core::Result<core::Ok, std::string> r) { inserted = r.ok(); });
  delivery_events_for_job(*c, std::nullopt, "j1", [&](core::Result<std::vector<DeliveryEvent>, std::string> r) {
    if (r) by_job = *r;
  });
  delivery_events_for_account(*c, "acct", 0, 1, [&](core::Result<std::vector<DeliveryEvent>, std::string> r) {
    if (r) by_account = *r;
    c->close();
  });
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_TRUE(inserted);
  ASSERT_EQ(by_job.size(), 2u);
  EXPECT_EQ(by_job[0].status, "deferred");
  EXPECT_EQ(by_job[0].enhanced_code, "4.7.1");
  EXPECT_EQ(by_job[1].status, "delivered");
  EXPECT_EQ(by_job[1].attempt, 2);
  EXPECT_EQ(by_job[1].duration_ms, 1234);
  ASSERT_EQ(by_account.size(), 1u);  // the limit
  std::string json = delivery_event_json(by_job[1]);
  EXPECT_NE(json.find("\"recipient\":\"Bob@Example.ORG\""), std::string::npos) << json;
  // The hash is the suppression list's key: the whole address case-folded, keyed (HMAC), not
  // its plain SHA-256.
  pg.exec("DO $$ BEGIN IF (SELECT count(*) FROM delivery_events WHERE recipient_sha256 = " +
          deliverd::testing::bytea_sql(deliverd::testing::test_hasher().key("bob@example.org")) +
          ") <> 2 OR (SELECT count(*) FROM delivery_events WHERE recipient_sha256 = sha256('bob@example.org')) <> 0"
          " THEN RAISE EXCEPTION 'hash mismatch'; END IF; END $$");
}

double events_total(const std::string& result) {
  return core::Registry::global().counter("deliverd_delivery_events_total", "", {"result"}).with({result}).value();
}

TEST(DeliveryEventWriter, ManyEventsGoInFewBatchesAndNoneIsLost) {
  deliverd::testing::PostgresServer pg;
  ASSERT_TRUE(migrate(pg.conninfo()));
  uv_loop_t loop;
  uv_loop_init(&loop);
  PgConnection* c = PgConnection::create(&loop, pg.conninfo());
  const double written_before = events_total("written"), dropped_before = events_total("dropped");
  bool idle = false;
  {
    DeliveryEventWriter w(*c, deliverd::testing::test_hasher(), 200, 5000);
    for (int i = 0; i < 5200; ++i) {
      DeliveryEvent e;
      e.job_id = "w" + std::to_string(i);
      e.account = "acct";
      e.recipient = "r" + std::to_string(i) + "@example.org";
      e.status = "delivered";
      e.reply_code = 250;
      w.add(std::move(e));
    }
    EXPECT_FALSE(w.idle());
    w.when_idle([&] {
      idle = true;
      c->close();
    });
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_TRUE(w.idle());
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_TRUE(idle);
  // The first event went at once; the next 5,000 waited (in batches of 200); the last 199 found
  // the buffer full.
  EXPECT_EQ(events_total("written") - written_before, 5001);
  EXPECT_EQ(events_total("dropped") - dropped_before, 199);
  pg.exec(
      "DO $$ BEGIN IF (SELECT count(DISTINCT job_id) FROM delivery_events WHERE recipient_sha256 IS NOT NULL) <> 5001"
      " THEN RAISE EXCEPTION 'rows missing'; END IF; END $$");
}

// One cluster for the tests below, a fresh database each: initdb is the slow part.
class EventsDb : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new deliverd::testing::PostgresServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    static int n = 0;
    db_ = "events" + std::to_string(++n);
    conninfo_ = server_->create_database(db_);
    ASSERT_TRUE(migrate(conninfo_));
  }
  std::string scalar(const std::string& sql) const { return server_->scalar(sql, db_); }
  void exec(const std::string& sql) const { server_->exec(sql, db_); }
  static deliverd::testing::PostgresServer* server_;
  std::string db_, conninfo_;
};
deliverd::testing::PostgresServer* EventsDb::server_ = nullptr;

DeliveryEvent event_for(const std::string& job, const std::string& status = "delivered") {
  DeliveryEvent e;
  e.job_id = job;
  e.account = "acct";
  e.mailbox = "mbx";
  e.recipient = job + "@example.org";
  e.status = status;
  e.reply_code = 250;
  return e;
}

TEST_F(EventsDb, PeerBytesThatAreNotUtf8AreStoredEscapedAndReadBackLosslessly) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  PgConnection* c = PgConnection::create(&loop, conninfo_);
  DeliveryEvent e = event_for("latin1");
  e.reply_text = "Message accept\xe9 pour livraison \\ ok";  // Latin-1 é, a literal backslash
  e.host = std::string("mx.caf") + '\xe9' + ".example";
  e.detail = std::string("nul\0byte", 8);
  bool inserted = false;
  std::vector<DeliveryEvent> back;
  insert_delivery_events(*c, deliverd::testing::test_hasher(), {e}, [&](core::Result<core::Ok, std::string> r) { inserted = r.ok(); });
  delivery_events_for_job(*c, std::nullopt, "latin1", [&](core::Result<std::vector<DeliveryEvent>, std::string> r) {
    if (r) back = *r;
    c->close();
  });
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  ASSERT_TRUE(inserted);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].reply_text, "Message accept\\xe9 pour livraison \\\\ ok");
  EXPECT_EQ(back[0].host, "mx.caf\\xe9.example");
  EXPECT_EQ(back[0].detail, "nul\\x00byte");
  EXPECT_EQ(core::unescape_utf8_lossless(back[0].reply_text), e.reply_text);
  EXPECT_EQ(core::unescape_utf8_lossless(back[0].detail), e.detail);
}

TEST_F(EventsDb, ARowTheServerRefusesCostsTheWriterOnlyThatRow) {
  // Something the server still refuses after escaping, for one row of the batch.
  exec("ALTER TABLE delivery_events ADD CONSTRAINT test_refuses_poison CHECK (job_id <> 'poison')");
  uv_loop_t loop;
  uv_loop_init(&loop);
  PgConnection* c = PgConnection::create(&loop, conninfo_);
  const double written_before = events_total("written"), failed_before = events_total("failed");
  {
    DeliveryEventWriter w(*c, deliverd::testing::test_hasher(), 50, 5000);
    // The first add goes alone; the next 50 wait and go as one batch that holds the poison row.
    for (int i = 0; i < 51; ++i) w.add(event_for(i == 20 ? "poison" : "ok" + std::to_string(i)));
    w.when_idle([&] { c->close(); });
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_TRUE(w.idle());
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_EQ(events_total("written") - written_before, 50);
  EXPECT_EQ(events_total("failed") - failed_before, 1);
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events"), "50");
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events WHERE job_id = 'poison'"), "0");
}

TEST_F(EventsDb, RowsGatherIntoOneCopyAndAWaiterDoesNotWaitForTheGatherTime) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  PgConnection* c = PgConnection::create(&loop, conninfo_);
  bool timed_out = false;
  {
    // A gather time of an hour: only a full batch or a waiter may start a write.
    DeliveryEventWriter w(*c, deliverd::testing::test_hasher(), 10, 5000, 3600 * 1000);
    for (int i = 0; i < 25; ++i) {
      DeliveryEvent e = event_for("g" + std::to_string(i));
      // Every byte COPY's text format gives meaning to, in peer text and in our own.
      e.reply_text = "line one\r\nline\ttwo \\N \\ end";
      e.detail = i == 0 ? "tab\there" : "";
      w.add(std::move(e));
    }
    core::TimerHandle guard(&loop);
    guard->start(60000, [&] {
      timed_out = true;
      c->close();
    });
    // Two batches of 10 went when they filled; the last 5 go when someone waits for them.
    w.when_idle([&] {
      guard->stop();
      c->close();
    });
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_TRUE(w.idle());
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the timers' close callbacks
  EXPECT_EQ(uv_loop_close(&loop), 0);
  ASSERT_FALSE(timed_out) << "when_idle waited for the gather time";
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events WHERE job_id LIKE 'g%'"), "25");
  // Rows of one COPY share their transaction id.
  EXPECT_EQ(scalar("SELECT count(DISTINCT xmin::text) FROM delivery_events"), "3");
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events WHERE reply_text = E'line one\\r\\nline\\ttwo \\\\\\\\N \\\\\\\\ end'"), "25");
  EXPECT_EQ(scalar("SELECT detail FROM delivery_events WHERE job_id = 'g0'"), "tab\there");
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events WHERE detail IS NULL AND mailbox = 'mbx'"), "24");
}

TEST_F(EventsDb, ARowWaitsAtMostTheGatherTimeForOthers) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  PgConnection* c = PgConnection::create(&loop, conninfo_);
  {
    DeliveryEventWriter w(*c, deliverd::testing::test_hasher(), 500, 5000, 50);
    w.add(event_for("first"));
    // Added a little later, within the first row's gather time: they go together.
    core::TimerHandle later(&loop);
    later->start(10, [&] {
      for (int i = 0; i < 5; ++i) w.add(event_for("later" + std::to_string(i)));
    });
    // Nobody waits: the gather timer alone must write them.
    core::TimerHandle check(&loop);
    std::function<void()> poll = [&] {
      if (scalar("SELECT count(*) FROM delivery_events") == "6") return c->close();
      check->start(20, poll);
    };
    check->start(20, poll);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the timers' close callbacks
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_EQ(scalar("SELECT count(DISTINCT xmin::text) FROM delivery_events"), "1");
}

TEST_F(EventsDb, RetentionRemovesOldRowsInBatchesAndKeepsTheLastStatusOfTheirJob) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  PgConnection* c = PgConnection::create(&loop, conninfo_);
  std::vector<DeliveryEvent> rows;
  for (int i = 0; i < 25; ++i) {
    rows.push_back(event_for("old" + std::to_string(i), "deferred"));
    rows.push_back(event_for("old" + std::to_string(i), i % 2 ? "bounced" : "delivered"));
  }
  for (int i = 0; i < 5; ++i) rows.push_back(event_for("new" + std::to_string(i)));
  bool inserted = false;
  insert_delivery_events(*c, deliverd::testing::test_hasher(), rows, [&](core::Result<core::Ok, std::string> r) {
    inserted = r.ok();
    c->close();
  });
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_TRUE(inserted);
  exec("UPDATE delivery_events SET created_at = now() - interval '91 days' + id * interval '1 second'"
       " WHERE job_id LIKE 'old%'");

  c = PgConnection::create(&loop, conninfo_);
  int64_t removed = -2, tombstones = -2;
  std::vector<AgedOutJob> aged, unknown;
  {
    RetentionConfig rc;
    rc.days = 90;
    rc.batch = 7;  // several batches, the last one partly old
    rc.pause_ms = 1;
    DeliveryEventRetention retention(*c, rc);
    retention.run_pass([&](int64_t r, int64_t t) {
      removed = r;
      tombstones = t;
      aged_out_jobs(*c, "old3", [&](core::Result<std::vector<AgedOutJob>, std::string> a) {
        if (a) aged = *a;
        aged_out_jobs(*c, "new1", [&](core::Result<std::vector<AgedOutJob>, std::string> b) {
          if (b) unknown = *b;
          c->close();
        });
      });
    });
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  EXPECT_EQ(removed, 50);
  EXPECT_EQ(tombstones, 0);  // the markers are new
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events"), "5");
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_event_tombstones"), "25");
  ASSERT_EQ(aged.size(), 1u);
  EXPECT_EQ(aged[0].account, "acct");
  EXPECT_EQ(aged[0].last_status, "bounced");  // the job's last row, not its first
  EXPECT_TRUE(unknown.empty());

  // The markers last as long again, then go too.
  exec("UPDATE delivery_event_tombstones SET aged_at = now() - interval '91 days'");
  c = PgConnection::create(&loop, conninfo_);
  {
    RetentionConfig rc;
    rc.days = 90;
    DeliveryEventRetention retention(*c, rc);
    retention.run_pass([&](int64_t r, int64_t t) {
      removed = r;
      tombstones = t;
      c->close();
    });
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);  // the retention's timer closes
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_EQ(removed, 0);
  EXPECT_EQ(tombstones, 25);
  EXPECT_EQ(scalar("SELECT count(*) FROM delivery_event_tombstones"), "0");
}

}  // namespace
}  // namespace deliverd::store
