// store/delivery_events: what the daemon writes is what the API reads back, recipient hash included.
#include "store/delivery_events.h"

#include <gtest/gtest.h>
#include <uv.h>

#include "core/metrics.h"
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
  insert_delivery_events(*c, {e, later}, [&](core::Result<core::Ok, std::string> r) { inserted = r.ok(); });
  delivery_events_for_job(*c, "j1", [&](core::Result<std::vector<DeliveryEvent>, std::string> r) {
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
  // The hash is of the normalised address, as the suppression list's.
  pg.exec(
      "DO $$ BEGIN IF (SELECT count(*) FROM delivery_events WHERE recipient_sha256 = sha256('Bob@example.org')) <> 2"
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
    DeliveryEventWriter w(*c, 200, 5000);
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

}  // namespace
}  // namespace deliverd::store
