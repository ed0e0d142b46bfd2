#pragma once
// A migrated PostgreSQL of its own per test, async store calls run to their answer on a loop of
// their own, and one-value SQL for asserting state.
#include <gtest/gtest.h>
#include <uv.h>

#include <string>

#include "store/migrations.h"
#include "store/pg_blocking.h"
#include "store/pg_connection.h"
#include "tests/integration/fixtures/postgres_server.h"

namespace deliverd::store {

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(migrate(pg_.conninfo()).ok()); }

  // Runs one async store call on a loop of its own until it answers.
  template <class Call>
  void on_loop(Call call) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    PgConnection* c = PgConnection::create(&loop, pg_.conninfo());
    call(*c, [c] { c->close(); });
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }

  std::string scalar(const std::string& sql) {
    auto pg = detail::BlockingPg::connect(pg_.conninfo());
    EXPECT_TRUE(pg.ok());
    PgResult r = pg->exec(sql);
    EXPECT_TRUE(r.ok) << r.error << "\n" << sql;
    return r.rows.empty() || !r.rows[0][0] ? std::string("NULL") : *r.rows[0][0];
  }

  deliverd::testing::PostgresServer pg_;
};

}  // namespace deliverd::store
