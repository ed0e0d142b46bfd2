// The public one-click endpoint (admin/unsubscribe_routes) on a real listener, storing into the
// suppression list of a real PostgreSQL: what a mailbox provider's POST does, what a person's
// click does, and what forged or abusive requests get.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <memory>
#include <thread>

#include "admin/http_server.h"
#include "admin/router.h"
#include "admin/unsubscribe_routes.h"
#include "smtp/unsubscribe_token.h"
#include "store/migrations.h"
#include "store/pg_connection.h"
#include "store/suppressions.h"
#include "tests/integration/fixtures/address_hashes.h"
#include "tests/integration/fixtures/postgres_server.h"

namespace deliverd::testing {
namespace {

struct HttpReply {
  int status = 0;
  std::string headers, body;
};

// One request on a fresh connection ("Connection: close"), read to EOF; from source_ip when given.
HttpReply http(int port, const std::string& request, const std::string& source_ip = "") {
  HttpReply r;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (!source_ip.empty()) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, source_ip.c_str(), &src.sin_addr);
    ::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return r;
  }
  size_t off = 0;
  while (off < request.size()) {
    ssize_t n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string buf;
  char tmp[8192];
  ssize_t n;
  while ((n = ::recv(fd, tmp, sizeof tmp, 0)) > 0) buf.append(tmp, static_cast<size_t>(n));
  ::close(fd);
  size_t end = buf.find("\r\n\r\n");
  if (buf.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return r;
  r.status = std::stoi(buf.substr(9, 3));
  r.headers = buf.substr(0, end + 2);
  r.body = buf.substr(end + 4);
  return r;
}

std::string post(const std::string& path, const std::string& content_type, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: u.acme.example\r\nConnection: close\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string get(const std::string& path, const std::string& extra_headers = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: u.acme.example\r\nConnection: close\r\n" + extra_headers + "\r\n";
}

const std::string kOneClick = "List-Unsubscribe=One-Click";

// Blocking libpq on the client thread, to look at the table the endpoint writes.
long long count_rows(const std::string& conninfo, const std::string& where) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  PGresult* r = PQexec(c, ("SELECT count(*) FROM suppressions WHERE " + where).c_str());
  long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? std::stoll(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(c);
  return n;
}

class UnsubscribeEndpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pg_ = new PostgresServer();
    auto v = store::migrate(pg_->conninfo());
    ASSERT_TRUE(v.ok()) << v.error();
  }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }
  void SetUp() override {
    pg_->exec("TRUNCATE suppressions");
    uv_loop_init(&loop_);
  }
  void TearDown() override {
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "handles left open";
  }

  // Serves the endpoint on this thread's loop while `client` runs on another thread.
  void serve(std::function<void(int port)> client, admin::UnsubscribeLimits limits = {},
             std::vector<std::string> trusted_proxies = {}) {
    store::PgConnection* pg = store::PgConnection::create(&loop_, pg_->conninfo());
    admin::Router router;
    admin::add_unsubscribe_routes(
        router, tokens_,
        [pg](const smtp::UnsubscribeClaims& c, std::function<void(bool)> done) {
          store::add_suppression(*pg, deliverd::testing::test_hasher(), {c.account, c.address, "unsubscribed", "one_click"},
                                 [done](core::Result<bool, std::string> r) { done(r.ok()); });
        },
        limits);
    admin::HttpServerConfig config = admin::unsubscribe_server_config("127.0.0.1:0");
    for (const auto& p : trusted_proxies) config.trusted_proxies.push_back(*dns::parse_cidr(p));
    auto server = admin::HttpServer::start(&loop_, config, router);
    ASSERT_TRUE(server.ok()) << server.error();
    std::atomic<bool> finished{false};
    std::thread t([&, port = (*server)->port()] {
      client(port);
      finished = true;
    });
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(&tick, [](uv_timer_t*) {}, 10, 10);
    while (!finished) uv_run(&loop_, UV_RUN_ONCE);
    t.join();
    uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
    (*server)->close();
    pg->close();
    uv_run(&loop_, UV_RUN_DEFAULT);  // `tick` lives on this stack frame
  }

  std::string token_for(const std::string& address, const std::string& account = "acct_42") {
    return tokens_.issue({account, address, "cmp_1"});
  }

  static PostgresServer* pg_;
  uv_loop_t loop_{};
  smtp::UnsubscribeTokens tokens_ = smtp::UnsubscribeTokens::from_key([] {
    std::array<unsigned char, 32> k{};
    k.fill(0x5a);
    return k;
  }());
};

PostgresServer* UnsubscribeEndpoint::pg_ = nullptr;

TEST_F(UnsubscribeEndpoint, OneClickPostSuppressesAtOnceWithoutRedirectOrCookie) {
  std::string path = "/u/" + token_for("Bob@Example.ORG");
  std::string conninfo = pg_->conninfo();
  serve([&](int port) {
    HttpReply r = http(port, post(path, "application/x-www-form-urlencoded", kOneClick));
    EXPECT_EQ(r.status, 200) << r.headers << r.body;
    EXPECT_EQ(r.headers.find("Set-Cookie"), std::string::npos);
    EXPECT_EQ(r.headers.find("Location"), std::string::npos);
    EXPECT_NE(r.headers.find("Cache-Control: no-store"), std::string::npos);
    EXPECT_EQ(count_rows(conninfo, "account = 'acct_42' AND address = 'Bob@example.org' AND reason = 'unsubscribed'"
                                   " AND source = 'one_click' AND address_sha256 = " +
                                   deliverd::testing::bytea_sql(deliverd::testing::test_hasher().key("bob@example.org"))),
              1);
    // Keyed: the row is not the SHA-256 of the address, which a dictionary would reverse.
    EXPECT_EQ(count_rows(conninfo, "address_sha256 = sha256('bob@example.org')"), 0);
    // Providers retry; people click twice. Both are harmless.
    HttpReply again = http(port, post(path, "application/x-www-form-urlencoded", kOneClick));
    EXPECT_EQ(again.status, 200);
    EXPECT_EQ(count_rows(conninfo, "true"), 1);
  });
}

TEST_F(UnsubscribeEndpoint, MultipartFormDataPostIsAccepted) {
  std::string path = "/u/" + token_for("carol@example.org");
  std::string conninfo = pg_->conninfo();
  std::string body =
      "--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n";
  serve([&](int port) {
    HttpReply r = http(port, post(path, "multipart/form-data; boundary=XyZ", body));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(count_rows(conninfo, "address = 'carol@example.org'"), 1);
  });
}

TEST_F(UnsubscribeEndpoint, GetShowsAConfirmationFormAndSuppressesNothing) {
  std::string path = "/u/" + token_for("dave@example.org");
  std::string conninfo = pg_->conninfo();
  serve([&](int port) {
    HttpReply r = http(port, get(path));
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.headers.find("Content-Type: text/html"), std::string::npos) << r.headers;
    EXPECT_NE(r.body.find("<form method=\"post\">"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("name=\"List-Unsubscribe\" value=\"One-Click\""), std::string::npos);
    EXPECT_EQ(r.body.find("dave@example.org"), std::string::npos);
    EXPECT_EQ(count_rows(conninfo, "true"), 0);
  });
}

TEST_F(UnsubscribeEndpoint, ForgedAndGarbageTokensAllGetTheSame404) {
  std::string good = token_for("erin@example.org");
  std::string forged = token_for("erin@example.org", "acct_other");
  forged = forged.substr(0, forged.find('.')) + good.substr(good.find('.'));  // someone else's MAC
  std::string conninfo = pg_->conninfo();
  serve([&](int port) {
    HttpReply a = http(port, post("/u/" + forged, "application/x-www-form-urlencoded", kOneClick));
    HttpReply b = http(port, post("/u/garbage", "application/x-www-form-urlencoded", kOneClick));
    HttpReply c = http(port, get("/u/" + good.substr(0, good.size() - 2) + "AA"));
    EXPECT_EQ(a.status, 404);
    EXPECT_EQ(b.status, 404);
    EXPECT_EQ(c.status, 404);
    EXPECT_EQ(a.body, b.body);
    EXPECT_EQ(a.body, c.body);
    EXPECT_EQ(count_rows(conninfo, "true"), 0);
  });
}

TEST_F(UnsubscribeEndpoint, PostWithoutOneClickBodyIsRefused) {
  std::string path = "/u/" + token_for("frank@example.org");
  std::string conninfo = pg_->conninfo();
  serve([&](int port) {
    EXPECT_EQ(http(port, post(path, "application/x-www-form-urlencoded", "List-Unsubscribe=No")).status, 400);
    EXPECT_EQ(http(port, post(path, "text/plain", "")).status, 400);
    EXPECT_EQ(count_rows(conninfo, "true"), 0);
  });
}

TEST_F(UnsubscribeEndpoint, OversizedRequestsAreRefused) {
  std::string path = "/u/" + token_for("gina@example.org");
  serve([&](int port) {
    EXPECT_EQ(http(port, post(path, "application/x-www-form-urlencoded", kOneClick + "&pad=" + std::string(20000, 'x')))
                  .status,
              413);
    EXPECT_EQ(http(port, get("/u/" + std::string(20000, 'A'))).status, 431);
  });
}

TEST_F(UnsubscribeEndpoint, RequestRatePerClientIsBounded) {
  std::string path = "/u/" + token_for("hank@example.org");
  admin::UnsubscribeLimits limits;
  limits.requests_per_minute_per_client = 3;
  serve(
      [&](int port) {
        int ok = 0, limited = 0;
        for (int i = 0; i < 6; ++i) {
          HttpReply r = http(port, get(path));
          ok += r.status == 200;
          if (r.status == 429) {
            ++limited;
            EXPECT_NE(r.headers.find("Retry-After: "), std::string::npos);
          }
        }
        // A minute boundary may fall inside the loop and refill the window once.
        EXPECT_GE(ok, 3);
        EXPECT_LE(ok, 6 - 1);
        EXPECT_EQ(ok + limited, 6);
      },
      limits);
}

// Mailbox providers POST one-click unsubscribes for many recipients from a few servers: a valid
// POST is honoured whatever else its address or anyone else sent, and the limiter's bounded
// table never turns into a refusal of everyone.
TEST_F(UnsubscribeEndpoint, AValidOneClickPostIsNeverRefusedBecauseOfOtherTraffic) {
  admin::UnsubscribeLimits limits;
  limits.requests_per_minute_per_client = 3;
  limits.max_tracked_clients = 4;
  std::string path = "/u/" + token_for("ivan@example.org");
  std::string conninfo = pg_->conninfo();
  serve(
      [&](int port) {
        int invalid = 0, limited = 0;
        for (int i = 0; i < 10; ++i) {
          int s = http(port, post("/u/garbage", "application/x-www-form-urlencoded", kOneClick), "127.0.0.1").status;
          invalid += s == 404;
          limited += s == 429;
        }
        EXPECT_EQ(invalid + limited, 10);
        EXPECT_GE(limited, 6);
        EXPECT_EQ(http(port, get(path), "127.0.0.1").status, 429) << "this address is out of page views";
        // …and its valid one-click POST is still honoured.
        HttpReply ok = http(port, post(path, "application/x-www-form-urlencoded", kOneClick), "127.0.0.1");
        EXPECT_EQ(ok.status, 200) << ok.body;
        EXPECT_EQ(count_rows(conninfo, "address = 'ivan@example.org'"), 1);
        // Many other clients churn the table; a new client is never refused for it.
        for (int c = 1; c <= 50; ++c)
          for (int i = 0; i < 4; ++i)
            http(port, post("/u/garbage", "application/x-www-form-urlencoded", kOneClick),
                 "127.0.3." + std::to_string(c));
        EXPECT_EQ(http(port, get(path), "127.0.4.1").status, 200);
        std::string other = "/u/" + token_for("judy@example.org");
        EXPECT_EQ(http(port, post(other, "application/x-www-form-urlencoded", kOneClick), "127.0.3.50").status, 200);
        EXPECT_EQ(count_rows(conninfo, "address = 'judy@example.org'"), 1);
        // A repeat is answered at once and stored once.
        EXPECT_EQ(http(port, post(path, "application/x-www-form-urlencoded", kOneClick), "127.0.0.1").status, 200);
        EXPECT_EQ(count_rows(conninfo, "address = 'ivan@example.org'"), 1);
      },
      limits);
}

TEST_F(UnsubscribeEndpoint, LinksMailedBeforeTheKeyRotatedStillWork) {
  std::array<unsigned char, 32> old_key{}, new_key{}, dropped{};
  old_key.fill(0x5a);  // the key tokens_ signs with
  new_key.fill(0x6b);
  dropped.fill(0x7c);
  const std::string mailed = token_for("kim@example.org");
  const std::string mailed_before_key_ids =
      smtp::UnsubscribeTokens::from_key(old_key).issue_legacy({"acct_42", "lou@example.org", "cmp_1"});
  const std::string from_dropped_key =
      smtp::UnsubscribeTokens::from_key(dropped).issue({"acct_42", "max@example.org", "cmp_1"});
  tokens_ = smtp::UnsubscribeTokens::from_key(new_key, {old_key});
  std::string conninfo = pg_->conninfo();
  serve([&](int port) {
    EXPECT_EQ(http(port, post("/u/" + mailed, "application/x-www-form-urlencoded", kOneClick)).status, 200);
    EXPECT_EQ(http(port, post("/u/" + mailed_before_key_ids, "application/x-www-form-urlencoded", kOneClick)).status,
              200);
    EXPECT_EQ(http(port, post("/u/" + token_for("ned@example.org"), "application/x-www-form-urlencoded", kOneClick))
                  .status,
              200);
    EXPECT_EQ(http(port, post("/u/" + from_dropped_key, "application/x-www-form-urlencoded", kOneClick)).status, 404);
    EXPECT_EQ(count_rows(conninfo, "address IN ('kim@example.org', 'lou@example.org', 'ned@example.org')"), 3);
    EXPECT_EQ(count_rows(conninfo, "address = 'max@example.org'"), 0);
  });
}

TEST_F(UnsubscribeEndpoint, BehindATrustedProxyEachClientHasItsOwnLimit) {
  admin::UnsubscribeLimits limits;
  limits.requests_per_minute_per_client = 3;
  std::string path = "/u/" + token_for("olga@example.org");
  serve(
      [&](int port) {
        int limited = 0;
        for (int i = 0; i < 6; ++i)
          limited += http(port, get(path, "X-Forwarded-For: 198.51.100.1\r\n")).status == 429;
        EXPECT_GE(limited, 2);
        EXPECT_EQ(http(port, get(path, "X-Forwarded-For: 198.51.100.2\r\n")).status, 200);
      },
      limits, {"127.0.0.1"});
}

TEST_F(UnsubscribeEndpoint, StoreFunctionsAreIdempotentAndNormaliseTheDomain) {
  store::PgConnection* pg = store::PgConnection::create(&loop_, pg_->conninfo());
  std::vector<std::string> log;
  bool done = false;
  store::add_suppression(*pg, deliverd::testing::test_hasher(), {"acct_1", " Ivy@Example.Org ", "hard_bounce", "bounce"}, [&](auto r) {
    log.push_back(r.ok() ? (r.value() ? "added" : "existing") : r.error());
    store::add_suppression(*pg, deliverd::testing::test_hasher(), {"acct_1", "Ivy@example.org", "unsubscribed", "one_click"}, [&](auto r2) {
      log.push_back(r2.ok() ? (r2.value() ? "added" : "existing") : r2.error());
      store::is_suppressed(*pg, deliverd::testing::test_hasher(), "acct_1", "Ivy@EXAMPLE.org", [&](auto s) {
        log.push_back(s.ok() ? (s.value() ? "yes" : "no") : s.error());
        store::is_suppressed(*pg, deliverd::testing::test_hasher(), "acct_1", "ivy@example.org", [&](auto s2) {
          log.push_back(s2.ok() ? (s2.value() ? "yes" : "no") : s2.error());  // case is ignored throughout
          store::is_suppressed(*pg, deliverd::testing::test_hasher(), "acct_2", "Ivy@example.org", [&](auto s3) {
            log.push_back(s3.ok() ? (s3.value() ? "yes" : "no") : s3.error());
            done = true;
          });
        });
      });
    });
  });
  uv_timer_t tick;
  uv_timer_init(&loop_, &tick);
  uv_timer_start(&tick, [](uv_timer_t*) {}, 10, 10);
  long long deadline = now_ms() + 20000;
  while (!done && now_ms() < deadline) uv_run(&loop_, UV_RUN_ONCE);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  pg->close();
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_EQ(log, (std::vector<std::string>{"added", "existing", "yes", "yes", "no"}));
  EXPECT_EQ(store::normalize_address("a@B.c"), "a@b.c");
  EXPECT_EQ(store::normalize_address("nope"), "");
}

}  // namespace
}  // namespace deliverd::testing
