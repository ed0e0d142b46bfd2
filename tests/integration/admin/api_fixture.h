#pragma once
// The admin API on a real PostgreSQL: one cluster per test binary (migrated once, tables emptied
// before each test), the HTTP server on this thread's loop, the test's client on another thread.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admin/api_routes.h"
#include "admin/http_server.h"
#include "store/api_keys.h"
#include "store/migrations.h"
#include "store/pg_connection.h"
#include "store/secret_box.h"
#include "tests/integration/admin/http_client.h"
#include "tests/integration/fixtures/postgres_server.h"

namespace deliverd::admin::testing {

using testclient::Client;
using testclient::HttpReply;

class ApiTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    pg_ = new deliverd::testing::PostgresServer();
    auto v = store::migrate(pg_->conninfo());
    if (!v) throw std::runtime_error("migrate: " + v.error());
  }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }

  void SetUp() override {
    pg_->exec("TRUNCATE api_keys, audit_log, delivery_events, delivery_event_tombstones, suppressions, inbound_watch, mailboxes");
    uv_loop_init(&loop_);
    std::array<unsigned char, 32> key{};
    for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<unsigned char>(i * 7 + 1);
    box_ = std::make_unique<store::SecretBox>(store::SecretBox::from_key(key));
    deps_.loop = &loop_;
    deps_.secrets = box_.get();
    deps_.test_mailbox = [this](const MailboxProbeRequest& r, std::function<void(MailboxTestResult)> done) {
      ++probes_;
      MailboxTestResult t;
      t.ok = r.mailbox.password != "wrong";
      if (!t.ok) {
        t.step = "auth";
        t.message = "535 authentication failed";
      }
      done(t);
    };
    deps_.inject = [this](const std::string& json, std::function<void(core::Result<std::string, std::string>)> cb) {
      injected_.push_back(json);
      cb(std::string("1-0"));
    };
    deps_.breaker_reset = [](const std::string&, const std::string&, std::function<void(bool)> cb) { cb(true); };
    // The PostgreSQL half of policy::Gate::set_state (its Redis half is tested in gate_test).
    deps_.set_mailbox_state = [this](const std::string& account, const std::string& id, store::MailboxChange change,
                                     store::PausedBy by,
                                     std::function<void(core::Result<store::ChangeAnswer, std::string>)> cb) {
      store::store_mailbox_change(*deps_.pg, account, id, change, by, std::move(cb));
    };
    deps_.mailbox_live = [](const std::string&, const std::string&, std::function<void(MailboxLive)> cb) {
      cb(MailboxLive{3, 7, "closed"});
    };
  }
  void TearDown() override { EXPECT_EQ(uv_loop_close(&loop_), 0); }

  // A key as `deliverd key create` stores it (same generator, same columns); returns the token.
  // Through the cached connection, since the role matrix makes a few hundred.
  static std::string make_key(const std::string& role, const std::string& account = "", const std::string& scopes = "",
                              const std::string& expires_at = "", std::string* id = nullptr) {
    store::CreatedApiKey k = store::generate_api_key();
    auto q = [](const std::string& s) { return s.empty() ? std::string("NULL") : "'" + s + "'"; };
    rows("INSERT INTO api_keys (id, prefix, token_sha256, role, account, scopes, created_by, expires_at) VALUES ('" +
         k.key.id + "', '" + k.key.prefix + "', '" + store::encode_bytea(k.key.token_sha256) + "'::bytea, '" + role +
         "', " + q(account) + ", " + q(scopes) + ", 'test', " + q(expires_at) + "::timestamptz) RETURNING 1");
    if (id) *id = k.key.id;
    return k.token;
  }

  // Rows as text ("" for NULL), blocking, on one connection per thread (the client thread's
  // and the test thread's).
  static std::vector<std::vector<std::string>> rows(const std::string& sql) {
    thread_local std::unique_ptr<PGconn, void (*)(PGconn*)> conn(nullptr, PQfinish);
    if (!conn || PQstatus(conn.get()) != CONNECTION_OK) conn.reset(PQconnectdb(pg_->conninfo().c_str()));
    PGconn* c = conn.get();
    PGresult* r = PQexec(c, sql.c_str());
    std::vector<std::vector<std::string>> out;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      std::string e = PQresultErrorMessage(r);
      PQclear(r);
      throw std::runtime_error("query failed: " + e);
    }
    for (int i = 0; i < PQntuples(r); ++i) {
      out.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j) out.back().emplace_back(PQgetvalue(r, i, j));
    }
    PQclear(r);
    return out;
  }
  static std::string scalar(const std::string& sql) {
    auto r = rows(sql);
    return r.empty() || r[0].empty() ? "" : r[0][0];
  }

  void run(const std::function<void(int port)>& client) {
    store::PgConnection* pgc = store::PgConnection::create(&loop_, pg_->conninfo());
    deps_.pg = pgc;
    Router router;
    add_api_routes(router, deps_);
    router_routes_ = router.routes();
    HttpServerConfig cfg;
    cfg.listen = "127.0.0.1:0";
    for (const auto& p : trusted_proxies_) cfg.trusted_proxies.push_back(*dns::parse_cidr(p));
    cfg.idle_timeout_ms = 60000;
    cfg.read_timeout_ms = 20000;
    auto started = HttpServer::start(&loop_, cfg, router);
    ASSERT_TRUE(started.ok()) << started.error();
    server_ = *started;
    uv_async_init(&loop_, &done_, [](uv_async_t* a) {
      auto* self = static_cast<ApiTest*>(a->data);
      self->server_->close();
      self->deps_.pg->close();
      if (self->on_stop_) self->on_stop_();
      uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
    });
    done_.data = this;
    int port = server_->port();
    std::thread t([&, port] {
      client(port);
      uv_async_send(&done_);
    });
    uv_run(&loop_, UV_RUN_DEFAULT);
    t.join();
  }

  static inline deliverd::testing::PostgresServer* pg_ = nullptr;
  uv_loop_t loop_{};
  uv_async_t done_{};
  ApiDeps deps_;
  std::unique_ptr<store::SecretBox> box_;
  HttpServer* server_ = nullptr;
  std::vector<std::string> injected_;
  std::atomic<int> probes_{0};  // connection tests run (on the loop thread)
  std::function<void()> on_stop_;  // runs on the loop when the client is done
  std::vector<std::pair<std::string, std::string>> router_routes_;
  std::vector<std::string> trusted_proxies_;  // [admin] trusted_proxies of the listener
};

}  // namespace deliverd::admin::testing
