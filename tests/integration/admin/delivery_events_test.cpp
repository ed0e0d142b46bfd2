// store/delivery_events: what the daemon writes is what the API reads back, recipient hash included.
#include "store/delivery_events.h"

#include <gtest/gtest.h>
#include <uv.h>

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
  insert_delivery_event(*c, e, [&](core::Result<core::Ok, std::string> r) { inserted = r.ok(); });
  e.status = "delivered";
  e.reply_code = 250;
  e.attempt = 2;
  insert_delivery_event(*c, e, [&](core::Result<core::Ok, std::string>) {});
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

}  // namespace
}  // namespace deliverd::store
