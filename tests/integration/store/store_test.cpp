// store/ against a real PostgreSQL 15 started by the PostgresServer fixture.
#include <gtest/gtest.h>
#include <uv.h>

#include <atomic>
#include <memory>
#include <thread>

#include "store/mailboxes.h"
#include "store/migrations.h"
#include "store/pg_connection.h"
#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/test_loop.h"

namespace deliverd::store {
namespace {

using testing::PostgresServer;

SecretBox test_box(unsigned char fill = 9) {
  std::array<unsigned char, 32> k{};
  k.fill(fill);
  return SecretBox::from_key(k);
}

using Loop = deliverd::testing::TestLoop;

// Closes the connection when the test body ends, even after a failed ASSERT.
struct Pg {
  PgConnection* p;
  ~Pg() { p->close(); }
  PgConnection* operator->() const { return p; }
  PgConnection& operator*() const { return *p; }
  operator PgConnection*() const { return p; }
};

class StoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new PostgresServer(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  // Every test gets its own database so tests do not see each other's rows.
  void SetUp() override {
    static int n = 0;
    conninfo_ = server_->create_database("t" + std::to_string(++n));
  }

  PgResult run_query(PgConnection* pg, const std::string& sql, std::vector<std::optional<std::string>> params = {}) {
    PgResult out;
    bool done = false;
    pg->query(sql, std::move(params), [&](const PgResult& r) {
      out = r;
      done = true;
    });
    EXPECT_TRUE(loop_.run_until([&] { return done; })) << "query never completed: " << sql;
    return out;
  }

  static PostgresServer* server_;
  std::string conninfo_;
  Loop loop_;
};
PostgresServer* StoreTest::server_ = nullptr;

TEST_F(StoreTest, MigrateAppliesEverythingAndIsIdempotent) {
  auto v = schema_version(conninfo_);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_EQ(*v, 0);

  auto first = migrate(conninfo_);
  ASSERT_TRUE(first.ok()) << first.error();
  EXPECT_EQ(*first, latest_schema_version());
  auto second = migrate(conninfo_);
  ASSERT_TRUE(second.ok()) << second.error();
  EXPECT_EQ(*second, latest_schema_version());
  EXPECT_EQ(*schema_version(conninfo_), latest_schema_version());

  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  PgResult rows = run_query(pg, "SELECT version, name, applied_at IS NOT NULL FROM schema_migrations ORDER BY version");
  ASSERT_TRUE(rows.ok) << rows.error;
  ASSERT_EQ(rows.rows.size(), migrations().size());
  EXPECT_EQ(rows.rows[0][0], "1");
  EXPECT_EQ(rows.rows[0][1], "create_mailboxes");
  EXPECT_EQ(rows.rows[0][2], "t");
}

TEST_F(StoreTest, ConcurrentMigrationsApplyEachVersionOnce) {
  std::vector<core::Result<int, std::string>> results(3, core::Err(std::string("not run")));
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&, i] { results[static_cast<size_t>(i)] = migrate(conninfo_); });
  for (auto& t : threads) t.join();
  for (auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(*r, latest_schema_version());
  }
}

TEST_F(StoreTest, DatabaseEnforcesPortPolicy) {
  ASSERT_TRUE(migrate(conninfo_).ok());
  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  PgResult r = run_query(pg,
                         "INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port) VALUES "
                         "('m', 'a', 'a@b.co', 'h.example', 22)");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.sqlstate, "23514");  // check_violation
}

TEST_F(StoreTest, AddMailboxValidatesAndUpserts) {
  ASSERT_TRUE(migrate(conninfo_).ok());
  SecretBox box = test_box();
  Mailbox m;
  m.id = "mbx_7";
  m.account = "acct_42";
  m.email = "alice@acme.example";
  m.smtp_host = "smtp.acme.example";
  m.username = "alice";
  m.password = "p@ss word";

  Mailbox bad = m;
  bad.smtp_port = 8080;
  auto refused = add_mailbox(conninfo_, bad, box);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("smtp_port: 8080 is not allowed"), std::string::npos);

  ASSERT_TRUE(add_mailbox(conninfo_, m, box).ok());
  m.smtp_port = 465;
  m.security = core::Security::Tls;
  m.password = "rotated";
  auto again = add_mailbox(conninfo_, m, box);
  ASSERT_TRUE(again.ok()) << again.error();

  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  PgResult r = run_query(pg, "SELECT count(*), max(smtp_port), max(security), bool_and(updated_at >= created_at),"
                             " max(position('rotated'::bytea in password_enc)) FROM mailboxes");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.rows[0][0], "1");
  EXPECT_EQ(r.rows[0][1], "465");
  EXPECT_EQ(r.rows[0][2], "tls");
  EXPECT_EQ(r.rows[0][3], "t");
  EXPECT_EQ(r.rows[0][4], "0") << "password stored in clear";
}

TEST_F(StoreTest, AddMailboxBeforeMigrateSaysSo) {
  Mailbox m;
  m.id = "x";
  m.account = "a";
  m.email = "a@b.co";
  m.smtp_host = "h.example";
  auto r = add_mailbox(conninfo_, m, test_box());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("deliverd migrate"), std::string::npos);
}

TEST_F(StoreTest, LoadMailboxesDecryptsPasswordsAsync) {
  ASSERT_TRUE(migrate(conninfo_).ok());
  SecretBox box = test_box();
  for (int i = 1; i <= 3; ++i) {
    Mailbox m;
    m.id = "mbx_" + std::to_string(i);
    m.account = "acct";
    m.email = "u" + std::to_string(i) + "@acme.example";
    m.smtp_host = "smtp.acme.example";
    m.smtp_port = 2525;
    m.paused = i == 2;
    if (i != 3) {
      m.username = "user" + std::to_string(i);
      m.password = "pw-" + std::to_string(i) + std::string("\x01\xc3\xa9", 3);
    }
    ASSERT_TRUE(add_mailbox(conninfo_, m, box).ok());
  }

  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  std::optional<core::Result<std::vector<Mailbox>, std::string>> got;
  load_mailboxes(*pg, box, [&](core::Result<std::vector<Mailbox>, std::string> r) { got = std::move(r); });
  ASSERT_TRUE(loop_.run_until([&] { return got.has_value(); }));
  ASSERT_TRUE(got->ok()) << got->error();
  const auto& list = got->value();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].id, "mbx_1");
  EXPECT_EQ(list[0].password, std::string("pw-1\x01\xc3\xa9", 7));
  EXPECT_EQ(list[0].username, "user1");
  EXPECT_EQ(list[0].smtp_port, 2525);
  EXPECT_FALSE(list[0].paused);
  EXPECT_TRUE(list[1].paused);
  EXPECT_EQ(list[2].password, "");

  // Some rows only: a pair without a row is simply absent (mbx_1 of another account too).
  got.reset();
  load_mailboxes_by_ref(*pg, box, {{"acct", "mbx_3"}, {"acct", "mbx_nope"}, {"acct", "mbx_1"}, {"acct_other", "mbx_2"}},
                       [&](core::Result<std::vector<Mailbox>, std::string> r) { got = std::move(r); });
  ASSERT_TRUE(loop_.run_until([&] { return got.has_value(); }));
  ASSERT_TRUE(got->ok()) << got->error();
  ASSERT_EQ(got->value().size(), 2u);
  EXPECT_EQ(got->value()[0].id, "mbx_1");
  EXPECT_EQ(got->value()[0].password, std::string("pw-1\x01\xc3\xa9", 7));
  EXPECT_EQ(got->value()[1].id, "mbx_3");

  // With the wrong key the load fails and names the mailbox.
  got.reset();
  SecretBox wrong = test_box(10);
  load_mailboxes(*pg, wrong, [&](core::Result<std::vector<Mailbox>, std::string> r) { got = std::move(r); });
  ASSERT_TRUE(loop_.run_until([&] { return got.has_value(); }));
  ASSERT_FALSE(got->ok());
  EXPECT_NE(got->error().find("mailbox mbx_1"), std::string::npos);

  // A sealed password moved onto another row does not open (the id is associated data).
  ASSERT_TRUE(run_query(pg, "UPDATE mailboxes SET password_enc = (SELECT password_enc FROM mailboxes WHERE id = "
                            "'mbx_1') WHERE id = 'mbx_2'")
                  .ok);
  got.reset();
  load_mailboxes(*pg, box, [&](core::Result<std::vector<Mailbox>, std::string> r) { got = std::move(r); });
  ASSERT_TRUE(loop_.run_until([&] { return got.has_value(); }));
  ASSERT_FALSE(got->ok());
  EXPECT_NE(got->error().find("mailbox mbx_2"), std::string::npos);
}

TEST_F(StoreTest, QueriesRunInOrderWithParamsAndNulls) {
  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  bool connected = false;
  pg->connect([&](bool ok, const std::string& e) {
    EXPECT_TRUE(ok) << e;
    connected = true;
  });
  ASSERT_TRUE(loop_.run_until([&] { return connected; }));
  EXPECT_TRUE(pg->connected());

  std::vector<int> order;
  std::vector<PgResult> results(50);
  for (int i = 0; i < 50; ++i) {
    pg->query("SELECT $1::int * 2 AS doubled, $2::text IS NULL AS isnull, $3::text AS echo",
              {std::to_string(i), std::nullopt, std::string("quote ' and \\ and \xc3\xa9")}, [&, i](const PgResult& r) {
                order.push_back(i);
                results[static_cast<size_t>(i)] = r;
              });
  }
  ASSERT_TRUE(loop_.run_until([&] { return order.size() == 50; }));
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(order[static_cast<size_t>(i)], i);
    const PgResult& r = results[static_cast<size_t>(i)];
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(r.column("doubled"), 0);
    EXPECT_EQ(r.rows[0][0], std::to_string(i * 2));
    EXPECT_EQ(r.rows[0][1], "t");
    EXPECT_EQ(r.rows[0][2], "quote ' and \\ and \xc3\xa9");
  }
}

TEST_F(StoreTest, QueryErrorsAreValuesAndTheConnectionCarriesOn) {
  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  PgResult syntax = run_query(pg, "SELEC nonsense");
  EXPECT_FALSE(syntax.ok);
  EXPECT_EQ(syntax.sqlstate, "42601");
  EXPECT_NE(syntax.error.find("syntax error"), std::string::npos);

  PgResult missing = run_query(pg, "SELECT * FROM no_such_table");
  EXPECT_FALSE(missing.ok);
  EXPECT_EQ(missing.sqlstate, "42P01");

  PgResult bad_param = run_query(pg, "SELECT $1::int", {std::string("not a number")});
  EXPECT_FALSE(bad_param.ok);

  PgResult fine = run_query(pg, "SELECT 41 + 1");
  ASSERT_TRUE(fine.ok) << fine.error;
  EXPECT_EQ(fine.rows[0][0], "42");
}

TEST_F(StoreTest, QueryTimeoutIsAnErrorAndNextQueryReconnects) {
  PgConnectionOptions opts;
  opts.query_timeout_ms = 300;
  Pg pg{PgConnection::create(loop_.get(), conninfo_, opts)};
  PgResult slow = run_query(pg, "SELECT pg_sleep(30)");
  EXPECT_FALSE(slow.ok);
  EXPECT_NE(slow.error.find("query timeout"), std::string::npos);
  PgResult after = run_query(pg, "SELECT 'again'");
  ASSERT_TRUE(after.ok) << after.error;
  EXPECT_EQ(after.rows[0][0], "again");
}

TEST_F(StoreTest, ServerTerminatingTheSessionIsAnErrorThenReconnects) {
  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  PgResult pid = run_query(pg, "SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok) << pid.error;
  // Killed from another session while idle: the next query reconnects transparently or fails
  // once with an error; it never hangs or crashes.
  server_->exec("SELECT pg_terminate_backend(" + *pid.rows[0][0] + ")");
  PgResult killed_in_flight = run_query(pg, "SELECT pg_terminate_backend(pg_backend_pid())");
  EXPECT_FALSE(killed_in_flight.ok);
  PgResult again = run_query(pg, "SELECT pg_backend_pid()");
  ASSERT_TRUE(again.ok) << again.error;
  EXPECT_NE(again.rows[0][0], pid.rows[0][0]);
}

TEST_F(StoreTest, CloseWithQueriesPendingMakesNoCallbacks) {
  PgConnection* pg = PgConnection::create(loop_.get(), conninfo_);
  int called = 0;
  for (int i = 0; i < 5; ++i) pg->query("SELECT pg_sleep(0.05)", {}, [&](const PgResult&) { ++called; });
  loop_.run_until([] { return false; }, 50);
  pg->close();
  pg->close();  // idempotent
  loop_.run_until([] { return false; }, 200);
  EXPECT_EQ(called, 0);
}

TEST_F(StoreTest, NotificationsReachTheHandlerWhileIdle) {
  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  std::vector<std::pair<std::string, std::string>> got;
  pg->set_notify_handler([&](const std::string& ch, const std::string& payload) { got.emplace_back(ch, payload); });
  ASSERT_TRUE(run_query(pg, "LISTEN chan_a").ok);
  // From another session, while this connection has nothing in flight.
  PgResult self_notify = run_query(pg, "SELECT pg_notify('chan_a', 'from me')");
  ASSERT_TRUE(self_notify.ok) << self_notify.error;
  std::string db = conninfo_.substr(conninfo_.find("dbname=") + 7);
  db = db.substr(0, db.find(' '));
  server_->exec("NOTIFY chan_a, 'hello'", db);
  server_->exec("NOTIFY chan_b, 'not listened'", db);
  ASSERT_TRUE(loop_.run_until([&] { return got.size() >= 2; }, 10000));
  EXPECT_EQ(got[0], std::make_pair(std::string("chan_a"), std::string("from me")));
  EXPECT_EQ(got[1], std::make_pair(std::string("chan_a"), std::string("hello")));
  EXPECT_EQ(got.size(), 2u);
}

TEST_F(StoreTest, LostHandlerRunsWhenTheServerDropsAnIdleConnection) {
  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  std::string lost;
  pg->set_lost_handler([&](const std::string& e) { lost = e.empty() ? "?" : e; });
  PgResult pid = run_query(pg, "SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok) << pid.error;
  server_->exec("SELECT pg_terminate_backend(" + *pid.rows[0][0] + ")");
  ASSERT_TRUE(loop_.run_until([&] { return !lost.empty(); }, 10000));
  EXPECT_TRUE(run_query(pg, "SELECT 1").ok) << "the next query reconnects";
}

TEST_F(StoreTest, MailboxPolicyOverridesRoundTrip) {
  ASSERT_TRUE(migrate(conninfo_).ok());
  SecretBox box = test_box();
  Mailbox m;
  m.id = "mbx_p";
  m.account = "acct";
  m.email = "p@acme.example";
  m.smtp_host = "smtp.acme.example";
  m.ramp_start = 8;
  m.ramp_max = 80;
  m.warmup_start = "2026-02-28";
  m.per_minute = 0;
  m.timezone = "Europe/Berlin";
  m.window_days = 31;
  m.window_start_hour = 8;
  m.window_end_hour = 18;
  Mailbox bad = m;
  bad.warmup_start = "2026-02-29";
  ASSERT_FALSE(add_mailbox(conninfo_, bad, box).ok());
  bad = m;
  bad.timezone = "../etc/passwd";
  ASSERT_FALSE(add_mailbox(conninfo_, bad, box).ok());
  ASSERT_TRUE(add_mailbox(conninfo_, m, box).ok());

  Pg pg{PgConnection::create(loop_.get(), conninfo_)};
  std::optional<core::Result<std::vector<Mailbox>, std::string>> got;
  load_mailboxes(*pg, box, [&](core::Result<std::vector<Mailbox>, std::string> r) { got = std::move(r); });
  ASSERT_TRUE(loop_.run_until([&] { return got.has_value(); }));
  ASSERT_TRUE(got->ok()) << got->error();
  const Mailbox& l = got->value().at(0);
  EXPECT_EQ(l.ramp_start, 8);
  EXPECT_FALSE(l.ramp_step.has_value());
  EXPECT_EQ(l.ramp_max, 80);
  EXPECT_EQ(l.warmup_start, "2026-02-28");
  EXPECT_EQ(l.per_minute, 0);
  EXPECT_FALSE(l.per_hour.has_value());
  EXPECT_EQ(l.timezone, "Europe/Berlin");
  EXPECT_EQ(l.window_days, 31);
  EXPECT_EQ(l.window_end_hour, 18);
  EXPECT_FALSE(l.disabled);

  std::optional<core::Result<bool, std::string>> set;
  set_mailbox_flags(*pg, "acct", "mbx_p", std::nullopt, true, PausedBy::Daemon,
                    [&](core::Result<bool, std::string> r) { set = std::move(r); });
  ASSERT_TRUE(loop_.run_until([&] { return set.has_value(); }));
  ASSERT_TRUE(set->ok() && set->value());
  PgResult flags = run_query(pg, "SELECT paused, disabled FROM mailboxes WHERE id = 'mbx_p'");
  ASSERT_TRUE(flags.ok) << flags.error;
  EXPECT_EQ(flags.rows[0][0], "f");
  EXPECT_EQ(flags.rows[0][1], "t");
}

TEST(StoreServerDown, ConnectAndQueryFailAsValues) {
  Loop loop;
  PostgresServer server;
  std::string conninfo = server.conninfo("postgres");
  Pg pg{PgConnection::create(loop.get(), conninfo)};
  bool done = false;
  PgResult first;
  pg->query("SELECT 1", {}, [&](const PgResult& r) {
    first = r;
    done = true;
  });
  ASSERT_TRUE(loop.run_until([&] { return done; }));
  ASSERT_TRUE(first.ok) << first.error;

  server.stop();
  done = false;
  PgResult down;
  pg->query("SELECT 1", {}, [&](const PgResult& r) {
    down = r;
    done = true;
  });
  ASSERT_TRUE(loop.run_until([&] { return done; }));
  EXPECT_FALSE(down.ok);
  EXPECT_FALSE(down.error.empty());

  // Still down: the reconnect attempt fails as a value too.
  bool cb = false, ok = true;
  std::string err;
  pg->connect([&](bool k, const std::string& e) {
    cb = true;
    ok = k;
    err = e;
  });
  ASSERT_TRUE(loop.run_until([&] { return cb; }));
  EXPECT_FALSE(ok);
  EXPECT_FALSE(err.empty());

  // Back up: the next query reconnects.
  server.start();
  done = false;
  PgResult back;
  pg->query("SELECT 'back'", {}, [&](const PgResult& r) {
    back = r;
    done = true;
  });
  ASSERT_TRUE(loop.run_until([&] { return done; }));
  ASSERT_TRUE(back.ok) << back.error;
  EXPECT_EQ(back.rows[0][0], "back");

  auto v = schema_version(conninfo);
  ASSERT_TRUE(v.ok());
  server.stop();
  auto down_version = schema_version(conninfo);
  ASSERT_FALSE(down_version.ok());
  EXPECT_NE(down_version.error().find("cannot connect"), std::string::npos);
  EXPECT_FALSE(migrate(conninfo).ok());
}

TEST(StoreConnect, UnreachableServerTimesOutOrIsRefused) {
  Loop loop;
  int port = testing::free_port();  // nothing listens here
  Pg pg{PgConnection::create(loop.get(), "host=127.0.0.1 port=" + std::to_string(port) + " dbname=x")};
  bool cb = false, ok = true;
  pg->connect([&](bool k, const std::string&) {
    cb = true;
    ok = k;
  });
  ASSERT_TRUE(loop.run_until([&] { return cb; }));
  EXPECT_FALSE(ok);
  EXPECT_FALSE(pg->connected());
}

}  // namespace
}  // namespace deliverd::store
