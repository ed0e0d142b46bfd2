// `deliverd status` and `deliverd version` as library calls: status against a scripted admin
// listener on loopback (ready, not ready, chunked, unreachable), version naming every library.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "daemon/status_command.h"
#include "daemon/version_info.h"

using namespace deliverd::daemon;

namespace {

// Answers each connection with the reply scripted for its request path, then closes.
class FakeAdmin {
 public:
  FakeAdmin(std::string readyz, std::string metrics) : readyz_(std::move(readyz)), metrics_(std::move(metrics)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd_, 8) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0)
      return;
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeAdmin() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    if (thread_.joinable()) thread_.join();
  }
  std::string listen() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> requests;

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string req;
      char buf[2048];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      requests.push_back(req);
      const std::string& reply = req.rfind("GET /readyz ", 0) == 0 ? readyz_ : metrics_;
      // Two writes, so the client has to read until the peer closes.
      size_t half = reply.size() / 2;
      ::send(c, reply.data(), half, MSG_NOSIGNAL);
      ::send(c, reply.data() + half, reply.size() - half, MSG_NOSIGNAL);
      ::close(c);
    }
  }
  std::string readyz_, metrics_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string http(int code, const std::string& reason, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: text/plain\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

const char* kMetrics =
    "# HELP deliverd_outcomes_total Outcomes published\n"
    "# TYPE deliverd_outcomes_total counter\n"
    "deliverd_outcomes_total{status=\"delivered\",reason=\"\"} 1200\n"
    "deliverd_outcomes_total{status=\"deferred\",reason=\"rate_limited\"} 30\n"
    "deliverd_outcomes_total{status=\"deferred\",reason=\"timeout\"} 12\n"
    "deliverd_outcomes_total{status=\"bounced\",reason=\"rcpt_rejected\"} 4\n"
    "deliverd_queue_inflight 17\n"
    "deliverd_queue_oldest_pending_age_seconds 2.5\n"
    "deliverd_smtp_sessions_active 9\n"
    "deliverd_delivery_duration_seconds_bucket{le=\"1\"} 5\n"
    "deliverd_dns_cache_entries 40\n";

}  // namespace

TEST(StatusCommand, ReadyDaemonPrintsSummaryAndExitsZero) {
  FakeAdmin admin(http(200, "OK", "ready\n"), http(200, "OK", kMetrics));
  std::ostringstream out;
  EXPECT_EQ(run_status(admin.listen(), out), 0);
  std::string s = out.str();
  EXPECT_NE(s.find(": ready (/readyz 200: ready)"), std::string::npos) << s;
  EXPECT_NE(s.find("outcomes: bounced=4 deferred=42 delivered=1200\n"), std::string::npos) << s;
  EXPECT_NE(s.find("deliverd_queue_inflight 17\n"), std::string::npos) << s;
  EXPECT_NE(s.find("deliverd_queue_oldest_pending_age_seconds 2.5\n"), std::string::npos) << s;
  EXPECT_NE(s.find("deliverd_smtp_sessions_active 9\n"), std::string::npos) << s;
  EXPECT_EQ(s.find("dns_cache"), std::string::npos) << s;
  ASSERT_EQ(admin.requests.size(), 2u);
  EXPECT_EQ(admin.requests[0].rfind("GET /readyz HTTP/1.1\r\n", 0), 0u);
  EXPECT_EQ(admin.requests[1].rfind("GET /metrics HTTP/1.1\r\n", 0), 0u);
}

TEST(StatusCommand, NotReadyExitsOneAndNamesTheFailingCheck) {
  FakeAdmin admin(http(503, "Service Unavailable", "postgres: connection refused\n"), http(200, "OK", ""));
  std::ostringstream out;
  EXPECT_EQ(run_status(admin.listen(), out), 1);
  EXPECT_NE(out.str().find("NOT ready (/readyz 503: postgres: connection refused)"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("outcomes: none yet"), std::string::npos) << out.str();
}

TEST(StatusCommand, ChunkedBodiesAreDecoded) {
  FakeAdmin admin("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nready\r\n0\r\n\r\n",
                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "1a\r\ndeliverd_queue_inflight 3\n\r\n0\r\n\r\n");
  HttpReply r = http_get(admin.listen(), "/readyz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ready");
  std::ostringstream out;
  EXPECT_EQ(run_status(admin.listen(), out), 0);
  EXPECT_NE(out.str().find("deliverd_queue_inflight 3\n"), std::string::npos) << out.str();
}

TEST(StatusCommand, UnreachableListenerExitsOne) {
  int port;
  {
    // A port that was free a moment ago and has nobody listening now.
    FakeAdmin gone("", "");
    port = std::stoi(gone.listen().substr(10));
  }
  std::ostringstream out;
  EXPECT_EQ(run_status("127.0.0.1:" + std::to_string(port), out), 1);
  EXPECT_NE(out.str().find("not reachable"), std::string::npos) << out.str();
  EXPECT_EQ(http_get("nonsense", "/readyz").status, 0);
}

TEST(StatusCommand, SummaryIgnoresHistogramSeriesAndComments) {
  auto s = summarize_metrics(
      "# TYPE x counter\n"
      "deliverd_queue_lag_seconds_bucket{le=\"1\"} 3\n"
      "deliverd_queue_pending 8\n"
      "deliverd_outcomes_total{reason=\"x\",status=\"failed\"} 2\n");
  EXPECT_EQ(s.gauges.size(), 1u);
  EXPECT_EQ(s.gauges["deliverd_queue_pending"], 8);
  EXPECT_EQ(s.outcomes_by_status["failed"], 2);
}

TEST(VersionInfo, NamesDeliverdAndEveryLinkedLibrary) {
  std::string v = version_report();
  EXPECT_EQ(v.rfind("deliverd " + deliverd_version() + "\n", 0), 0u) << v;
  for (const char* lib : {"\nlibuv 1.", "\nc-ares 1.", "\nhiredis 0.", "\nlibpq ", "\nopenssl 3.", "\nsimdjson ",
                          "\ntoml++ 3.", "\nhttp-parser 2.", "\nlibsystemd "})
    EXPECT_NE(v.find(lib), std::string::npos) << lib << " missing in\n" << v;
  EXPECT_EQ(v.find("unknown"), std::string::npos) << v;
}
