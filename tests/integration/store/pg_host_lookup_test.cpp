// PostgreSQL's host name is looked up through the loop's resolver (c-ares against the fixtures'
// dnsmasq), never by libpq's blocking getaddrinfo: inside the test's network namespace the
// system resolver has no server, so a connection by name succeeds only through that path.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "dns/resolver.h"
#include "store/pg_connection.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/test_loop.h"

namespace deliverd::store {
namespace {

using testing::DnsServer;
using testing::PostgresServer;

class PgHostLookup : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pg_server_ = new PostgresServer();
    DnsServer::Options o;
    o.records = {DnsServer::host_record("db.deliverd.test", "127.0.0.1")};
    dns_server_ = new DnsServer(o);
  }
  static void TearDownTestSuite() {
    delete pg_server_;
    delete dns_server_;
  }

  void SetUp() override {
    dns::ResolverConfig cfg;
    cfg.servers = {dns_server_->address()};
    resolver_ = dns::Resolver::create(loop_.get(), cfg, nullptr);
  }
  void TearDown() override {
    if (pg_) pg_->close();
    resolver_->close();
    loop_.run_until([] { return false; }, 50);  // lets the handles close
  }

  // A connection string naming the server by host list instead of 127.0.0.1.
  static std::string by_name(const std::string& hosts) {
    std::string info = pg_server_->conninfo("postgres");
    return "host=" + hosts + info.substr(info.find(" port="));
  }

  PgConnectionOptions through_resolver() {
    PgConnectionOptions o;
    o.connect_timeout_ms = 5000;
    o.resolve_host = [this](const std::string& host, auto cb) { resolver_->resolve_service_host(host, std::move(cb)); };
    return o;
  }

  PgResult run(const std::string& sql) {
    PgResult out;
    bool done = false;
    pg_->query(sql, {}, [&](const PgResult& r) {
      out = r;
      done = true;
    });
    EXPECT_TRUE(loop_.run_until([&] { return done; }));
    return out;
  }

  static PostgresServer* pg_server_;
  static DnsServer* dns_server_;
  deliverd::testing::TestLoop loop_;
  dns::Resolver* resolver_ = nullptr;
  PgConnection* pg_ = nullptr;
};
PostgresServer* PgHostLookup::pg_server_ = nullptr;
DnsServer* PgHostLookup::dns_server_ = nullptr;

TEST_F(PgHostLookup, AHostNameIsResolvedOnTheLoopAndConnects) {
  pg_ = PgConnection::create(loop_.get(), by_name("db.deliverd.test"), through_resolver());
  PgResult r = run("SELECT host(inet_server_addr())");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.rows[0][0], "127.0.0.1");
  EXPECT_GE(dns_server_->query_count("db.deliverd.test"), 1u) << "the name went through c-ares";
}

TEST_F(PgHostLookup, ANameWithoutAddressFailsNamingTheHost) {
  pg_ = PgConnection::create(loop_.get(), by_name("nowhere.deliverd.test"), through_resolver());
  PgResult r = run("SELECT 1");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("cannot resolve PostgreSQL host \"nowhere.deliverd.test\""), std::string::npos) << r.error;
}

TEST_F(PgHostLookup, OfSeveralHostsTheOneThatResolvesIsUsed) {
  pg_ = PgConnection::create(loop_.get(), by_name("nowhere.deliverd.test,db.deliverd.test"), through_resolver());
  PgResult r = run("SELECT 1");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.rows[0][0], "1");
}

TEST_F(PgHostLookup, ALookupThatNeverAnswersEndsAtTheConnectDeadline) {
  PgConnectionOptions o;
  o.connect_timeout_ms = 300;
  o.resolve_host = [](const std::string&, auto) {};  // a name server that never answers
  pg_ = PgConnection::create(loop_.get(), by_name("db.deliverd.test"), o);
  PgResult r = run("SELECT 1");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("connect timeout after 300 ms"), std::string::npos) << r.error;
}

TEST_F(PgHostLookup, ANumericHostNeedsNoLookup) {
  PgConnectionOptions o;
  bool asked = false;
  o.resolve_host = [&asked](const std::string&, auto) { asked = true; };
  pg_ = PgConnection::create(loop_.get(), pg_server_->conninfo("postgres"), o);
  PgResult r = run("SELECT 1");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_FALSE(asked);
}

}  // namespace
}  // namespace deliverd::store
