// The admin HTTP server over real loopback sockets: the server runs on a libuv loop in the test
// thread, a plain blocking-socket client runs in a second thread.
#include "admin/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <thread>

#include "admin/admin_routes.h"
#include "core/metrics.h"
#include "core/timer.h"
#include "tests/integration/admin/http_client.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/test_ca.h"

namespace deliverd::admin {
namespace {

using testclient::Client;
using testclient::HttpReply;

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n";
}

// Runs the server on this thread's loop while `client` runs on another thread.
class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    config_.listen = "127.0.0.1:0";
    add_health_routes(router_, [this](std::function<void(ReadinessChecks)> answer) {
      // Answer on a later loop turn, as a real probe (Redis PING) would.
      core::Timer* t = core::Timer::create(&loop_);
      t->start(20, [t, answer, checks = checks_] {
        t->close();
        answer(checks);
      });
    });
    router_.add("GET", "/echo", [](const Request& r, Respond respond) {
      Response resp;
      resp.content_type = "text/plain";
      resp.body = r.method + " " + r.path + "?" + r.query + " peer=" + r.peer_ip + " body=" + r.body;
      respond(std::move(resp));
    });
    router_.add("POST", "/echo", [](const Request& r, Respond respond) {
      Response resp;
      resp.body = r.body;
      respond(std::move(resp));
    });
    router_.add("GET", "/slow", [this](const Request& r, Respond respond) {
      core::Timer* t = core::Timer::create(&loop_);
      std::string q = r.query;
      t->start(80, [t, respond, q] {
        t->close();
        Response resp;
        resp.body = "slow " + q;
        respond(std::move(resp));
      });
    });
    router_.add("GET", "/never", [](const Request&, Respond) {});
  }
  void TearDown() override { EXPECT_EQ(uv_loop_close(&loop_), 0); }

  void run(const std::function<void(int port)>& client) {
    auto started = HttpServer::start(&loop_, config_, router_);
    ASSERT_TRUE(started.ok()) << started.error();
    server_ = *started;
    ASSERT_GT(server_->port(), 0);
    uv_async_init(&loop_, &done_, [](uv_async_t* a) {
      auto* self = static_cast<ServerTest*>(a->data);
      self->server_->close();
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

  uv_loop_t loop_{};
  uv_async_t done_{};
  HttpServerConfig config_;
  Router router_;
  HttpServer* server_ = nullptr;
  ReadinessChecks checks_;
};

TEST_F(ServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  run([](int port) {
    Client c(port);
    ASSERT_TRUE(c.connected());
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(c.send(get("/echo?i=" + std::to_string(i))));
      auto r = c.read_reply();
      ASSERT_TRUE(r) << i;
      EXPECT_EQ(r->status, 200);
      EXPECT_EQ(r->body, "GET /echo?i=" + std::to_string(i) + " peer=127.0.0.1 body=");
      EXPECT_FALSE(r->has_header("Connection: close"));
    }
    std::string body(5000, 'b');
    ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + body));
    auto r = c.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, body);
  });
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  run([](int port) {
    Client c(port);
    ASSERT_TRUE(c.send(get("/slow?1") + get("/echo?2") + get("/slow?3") + get("/healthz") +
                       get("/nope", "Connection: close\r\n")));
    auto a = c.read_reply(), b = c.read_reply(), d = c.read_reply(), e = c.read_reply(), f = c.read_reply();
    ASSERT_TRUE(a && b && d && e && f);
    EXPECT_EQ(a->body, "slow 1");
    EXPECT_EQ(b->body.substr(0, 12), "GET /echo?2 ");
    EXPECT_EQ(d->body, "slow 3");
    EXPECT_EQ(e->body, "ok\n");
    EXPECT_EQ(f->status, 404);
    EXPECT_TRUE(f->has_header("Connection: close"));
    EXPECT_TRUE(c.closed_by_server());
  });
}

TEST_F(ServerTest, OversizedHeaderIs431) {
  run([](int port) {
    Client c(port);
    ASSERT_TRUE(c.send(get("/healthz", "X-Big: " + std::string(20000, 'a') + "\r\n")));
    auto r = c.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 431);
    EXPECT_NE(r->body.find(R"("code":"headers_too_large")"), std::string::npos);
    EXPECT_TRUE(r->has_header("Connection: close"));
    EXPECT_TRUE(c.closed_by_server());
  });
}

TEST_F(ServerTest, OversizedBodyIs413) {
  config_.max_body_bytes = 1000;
  run([](int port) {
    Client c(port);
    ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"));
    auto r = c.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_NE(r->body.find("body_too_large"), std::string::npos);

    Client chunked(port);
    std::string chunk = "400\r\n" + std::string(1024, 'x') + "\r\n";
    ASSERT_TRUE(chunked.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk));
    auto r2 = chunked.read_reply();
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->status, 413);
  });
}

TEST_F(ServerTest, MalformedRequestIs400AndClosed) {
  run([](int port) {
    Client c(port);
    ASSERT_TRUE(c.send("BLAH\x01 / HTTP/9\r\n\r\n" + get("/healthz")));
    auto r = c.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find(R"({"error":{"code":"bad_request")"), std::string::npos);
    EXPECT_TRUE(c.closed_by_server());
  });
}

TEST_F(ServerTest, NotFoundAndMethodNotAllowedAreJson) {
  run([](int port) {
    Client c(port);
    ASSERT_TRUE(c.send(get("/missing") + "DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto a = c.read_reply(), b = c.read_reply();
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->status, 404);
    EXPECT_TRUE(a->has_header("Content-Type: application/json"));
    EXPECT_EQ(b->status, 405);
    EXPECT_TRUE(b->has_header("Allow: GET"));
    EXPECT_NE(b->body.find("method_not_allowed"), std::string::npos);
  });
}

TEST_F(ServerTest, SlowClientGets408AndIdleClientIsClosed) {
  config_.read_timeout_ms = 300;
  config_.idle_timeout_ms = 300;
  run([](int port) {
    Client slow(port);
    ASSERT_TRUE(slow.send("GET /healthz HTTP/1.1\r\nHost: x\r\n"));  // never finishes the headers
    long long t0 = testing::now_ms();
    auto r = slow.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 408);
    EXPECT_GE(testing::now_ms() - t0, 250);
    EXPECT_TRUE(slow.closed_by_server());

    // Trickling one byte at a time does not extend the deadline: the 408 comes while the bytes
    // still trickle (a deadline renewed by each byte would never come before the last one).
    Client trickle(port);
    const std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(200, 'a') + "\r\n\r\n";
    size_t sent = 0;
    while (sent < req.size() && !trickle.readable(100) && trickle.send(req.substr(sent, 1))) ++sent;
    EXPECT_LT(sent, req.size()) << "the server waited for the whole trickled request";
    auto tr = trickle.read_reply();
    ASSERT_TRUE(tr);
    EXPECT_EQ(tr->status, 408);

    Client idle(port);
    ASSERT_TRUE(idle.send(get("/healthz")));
    ASSERT_TRUE(idle.read_reply());
    EXPECT_TRUE(idle.closed_by_server());  // after the idle timeout, without a response
  });
}

TEST_F(ServerTest, HandlerThatNeverAnswersGets503) {
  config_.handler_timeout_ms = 300;
  run([](int port) {
    Client c(port);
    ASSERT_TRUE(c.send(get("/never")));
    auto r = c.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_NE(r->body.find("handler_timeout"), std::string::npos);
  });
}

TEST_F(ServerTest, ConnectionCapRefusesExtraConnections) {
  config_.max_connections = 2;
  run([](int port) {
    Client a(port), b(port);
    ASSERT_TRUE(a.send(get("/healthz")) && b.send(get("/healthz")));
    ASSERT_TRUE(a.read_reply() && b.read_reply());  // both accepted and held open
    Client c(port);
    ASSERT_TRUE(c.connected());
    auto r = c.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_NE(r->body.find("too_many_connections"), std::string::npos);
    ASSERT_TRUE(a.send(get("/healthz")));
    auto again = a.read_reply();
    ASSERT_TRUE(again);
    EXPECT_EQ(again->status, 200);
  });
}

TEST_F(ServerTest, HealthReadinessAndHead) {
  checks_ = {{"redis", true}, {"postgres", true}};
  run([](int port) {
    Client c(port);
    ASSERT_TRUE(c.send(get("/healthz") + get("/readyz") + "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto h = c.read_reply();
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    EXPECT_EQ(h->body, "ok\n");
    EXPECT_TRUE(h->has_header("Content-Type: text/plain"));
    auto r = c.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, R"({"checks":{"redis":true,"postgres":true},"status":"ready"})");
    // HEAD: the GET's headers (Content-Length: 3) and no body, so the next reply follows directly.
    auto head = c.read_reply(true);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 200);
    EXPECT_TRUE(head->has_header("Content-Length: 3"));
    ASSERT_TRUE(c.send(get("/echo")));
    auto next = c.read_reply();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->body.substr(0, 9), "GET /echo");
  });
}

TEST_F(ServerTest, ReadinessFailsWhenAnyCheckFails) {
  checks_ = {{"redis", true}, {"postgres", false}};
  run([](int port) {
    Client c(port);
    ASSERT_TRUE(c.send(get("/readyz")));
    auto r = c.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_EQ(r->body, R"({"checks":{"redis":true,"postgres":false},"status":"not_ready"})");
  });
}

TEST_F(ServerTest, MetricsEndpointPassesPromtool) {
  std::string body;
  run([&](int port) {
    Client c(port);
    ASSERT_TRUE(c.send(get("/nope") + get("/metrics")));
    ASSERT_TRUE(c.read_reply());
    auto r = c.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->has_header("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    body = r->body;
  });
  EXPECT_NE(body.find("deliverd_http_requests_total{code=\"404\"}"), std::string::npos) << body;
  testing::TempDir dir("deliverd-metrics");
  testing::write_file(dir.file("metrics.txt"), body);
  std::string out;
  int rc = testing::run_command({"sh", "-c", "promtool check metrics < " + dir.file("metrics.txt")}, &out);
  EXPECT_EQ(rc, 0) << out << "\n" << body;
}

TEST_F(ServerTest, BadChunkingIs400AndClosed) {
  run([](int port) {
    const std::string head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (const std::string& body : {std::string("zz\r\nhello\r\n0\r\n\r\n"),   // not hex
                                    std::string("\r\nhello\r\n0\r\n\r\n"),     // no size at all
                                    std::string("ffffffffffffffffff\r\n")}) {  // size overflows
      Client c(port);
      ASSERT_TRUE(c.send(head + body + get("/healthz")));
      auto r = c.read_reply();
      ASSERT_TRUE(r) << body;
      EXPECT_TRUE(r->status == 400 || r->status == 413) << r->status << " for " << body;
      EXPECT_TRUE(c.closed_by_server()) << body;  // the pipelined GET is not answered
    }
    // Both framings at once is a smuggling attempt (RFC 9112 6.1): refused.
    Client both(port);
    ASSERT_TRUE(
        both.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "0\r\n\r\n"));
    auto r = both.read_reply();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    // Good chunking still works.
    Client ok(port);
    ASSERT_TRUE(ok.send(head + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
    auto g = ok.read_reply();
    ASSERT_TRUE(g);
    EXPECT_EQ(g->status, 200);
    EXPECT_EQ(g->body, "hello world");
  });
}

TEST_F(ServerTest, TenThousandKeepAliveRequestsOnOneConnection) {
  run([](int port) {
    Client c(port);
    int ok = 0;
    for (int batch = 0; batch < 100; ++batch) {
      std::string reqs;
      for (int i = 0; i < 100; ++i) reqs += get("/healthz");
      ASSERT_TRUE(c.send(reqs));
      for (int i = 0; i < 100; ++i) {
        auto r = c.read_reply();
        ASSERT_TRUE(r) << "after " << ok;
        ok += r->status == 200 && r->body == "ok\n";
      }
    }
    EXPECT_EQ(ok, 10000);
  });
}

TEST_F(ServerTest, ServesHttpsWithTheConfiguredCertificate) {
  deliverd::testing::TestCa ca;
  config_.tls_cert_file = ca.good().cert_file;
  config_.tls_key_file = ca.good().key_file;
  run([&](int port) {
    std::string out;
    int rc = deliverd::testing::run_command({"curl", "-sS", "--max-time", "20", "--cacert", ca.ca_file(),
                                             "https://localhost:" + std::to_string(port) + "/healthz"},
                                            &out);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, "ok\n");
    // Plaintext on the TLS port gets no HTTP answer.
    Client plain(port);
    ASSERT_TRUE(plain.send(get("/healthz")));
    EXPECT_FALSE(plain.read_reply());
  });
}

TEST(HttpServerStart, TlsNeedsReadableCertificateAndKey) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Router router;
  HttpServerConfig cfg;
  cfg.listen = "127.0.0.1:0";
  cfg.tls_cert_file = "/nonexistent/cert.pem";
  auto half = HttpServer::start(&loop, cfg, router);
  ASSERT_FALSE(half.ok());
  cfg.tls_key_file = "/nonexistent/key.pem";
  auto missing = HttpServer::start(&loop, cfg, router);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("TLS"), std::string::npos);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(HttpServerStart, BadOrBusyAddressIsAnError) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Router router;
  HttpServerConfig cfg;
  cfg.listen = "not-an-address";
  auto bad = HttpServer::start(&loop, cfg, router);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("invalid listen address"), std::string::npos);

  cfg.listen = "127.0.0.1:0";
  auto first = HttpServer::start(&loop, cfg, router);
  ASSERT_TRUE(first.ok());
  cfg.listen = "127.0.0.1:" + std::to_string((*first)->port());
  auto busy = HttpServer::start(&loop, cfg, router);
  ASSERT_FALSE(busy.ok());
  EXPECT_NE(busy.error().find("cannot listen on 127.0.0.1:"), std::string::npos);
  (*first)->close();

  cfg.listen = "[::1]:0";
  auto v6 = HttpServer::start(&loop, cfg, router);
  if (v6.ok()) (*v6)->close();  // ::1 may be absent in some containers
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace deliverd::admin
