// core::HttpsClient against a real TLS server on its own loop and thread: verified TLS with the
// test CA, addresses only from the lookup (and, through dns::Resolver, only vetted ones), a
// timeout per phase, a bound on the answer, and no redirect followed.
#include "core/https_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <uv.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include "core/tcp_stream.h"
#include "dns/address_policy.h"
#include "dns/resolver.h"
#include "dns/resolver_lookup.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/fixed_lookup.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/test_ca.h"

namespace deliverd {
namespace {

using core::HttpsErrorKind;
using core::HttpsPhase;

// What the server does with each connection.
enum class Behaviour { Answer, NoTls, Silent };

class HttpsServer {
 public:
  HttpsServer(const testing::TestCa::Cert& cert, const std::string& ip) : ip_(ip) {
    ctx_ = core::TlsContext::server({cert.cert_file, cert.key_file}).value();
    uv_loop_init(&loop_);
    uv_tcp_init(&loop_, &listener_);
    listener_.data = this;
    sockaddr_in sa{};
    uv_ip4_addr(ip.c_str(), 443, &sa);
    if (uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&sa), 0) != 0 ||
        uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 64, on_connection) != 0)
      throw std::runtime_error("cannot listen on " + ip + ":443");
    uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
      auto* self = static_cast<HttpsServer*>(a->data);
      uv_walk(&self->loop_, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); }, nullptr);
    });
    stop_.data = this;
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  ~HttpsServer() {
    uv_async_send(&stop_);
    thread_.join();
    uv_loop_close(&loop_);
  }
  void set(Behaviour b, std::string answer = {}) {
    std::lock_guard lk(mu_);
    behaviour_ = b;
    answer_ = std::move(answer);
  }
  size_t connections() const { return connections_.load(); }
  std::string last_request() {
    std::lock_guard lk(mu_);
    return last_request_;
  }

 private:
  struct Conn final : core::StreamHandler {
    HttpsServer* srv;
    core::TcpStream* stream = nullptr;
    std::string buf;
    Behaviour behaviour;
    std::string answer;
    bool answered = false;
    void on_data(std::string_view bytes) override {
      buf.append(bytes);
      size_t head_end = buf.find("\r\n\r\n");
      if (head_end == std::string::npos || answered) return;
      size_t want = head_end + 4;
      if (auto cl = buf.find("Content-Length: "); cl != std::string::npos && cl < head_end)
        want += std::stoul(buf.substr(cl + 16));
      if (buf.size() < want) return;
      {
        std::lock_guard lk(srv->mu_);
        srv->last_request_ = buf;
      }
      answered = true;
      if (behaviour == Behaviour::Silent) return;
      stream->write(answer);
      // An answer without a length ends with the connection; others wait for the client to close.
      if (answer.find("Content-Length") == std::string::npos && answer.find("chunked") == std::string::npos) {
        stream->close();
        delete this;
      }
    }
    void on_end(int) override {
      stream->close();
      delete this;
    }
    void on_tls_handshake(bool ok, const std::string&) override {
      if (!ok) on_end(0);
    }
  };
  static void on_connection(uv_stream_t* server, int status) {
    if (status != 0) return;
    auto* self = static_cast<HttpsServer*>(server->data);
    auto* c = new Conn();
    c->srv = self;
    {
      std::lock_guard lk(self->mu_);
      c->behaviour = self->behaviour_;
      c->answer = self->answer_;
    }
    c->stream = core::TcpStream::accept(server, c);
    if (!c->stream) {
      delete c;
      return;
    }
    self->connections_++;
    if (c->behaviour != Behaviour::NoTls) c->stream->start_tls_server(self->ctx_);
  }

  std::string ip_;
  std::shared_ptr<core::TlsContext> ctx_;
  uv_loop_t loop_{};
  uv_tcp_t listener_{};
  uv_async_t stop_{};
  std::thread thread_;
  std::mutex mu_;
  Behaviour behaviour_ = Behaviour::Answer;
  std::string answer_;
  std::string last_request_;
  std::atomic<size_t> connections_{0};
};

using testing::FixedLookup;

class HttpsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    ip_ = testing::free_loopback_ip(443);
    cert_ = ca_.issue("token", {"token.test", ip_}, 2);
    server_ = std::make_unique<HttpsServer>(cert_, ip_);
    core::TlsClientOptions to;
    to.ca_file = ca_.ca_file();
    to.use_system_roots = false;
    opts_.tls = core::TlsContext::client(to).value();
    lookup_ = std::make_unique<FixedLookup>(&loop_, ip_);
  }
  void TearDown() override {
    server_.reset();
    uv_run(&loop_, UV_RUN_NOWAIT);
    uv_walk(&loop_, [](uv_handle_t* h, void*) { if (!uv_is_closing(h)) uv_close(h, nullptr); }, nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }

  core::Result<core::HttpsResponse, core::HttpsError> fetch(core::HttpsRequest req, core::HostLookup* lookup = nullptr) {
    auto* client = core::HttpsClient::create(&loop_, lookup ? lookup : lookup_.get(), opts_);
    std::optional<core::Result<core::HttpsResponse, core::HttpsError>> out;
    client->request(std::move(req), [&](core::Result<core::HttpsResponse, core::HttpsError> r) { out.emplace(std::move(r)); });
    long long until = testing::now_ms() + 60000;
    while (!out && testing::now_ms() < until) uv_run(&loop_, UV_RUN_ONCE);
    client->close();
    if (!out) ADD_FAILURE() << "no answer within 60 s";
    return out ? std::move(*out) : core::Result<core::HttpsResponse, core::HttpsError>(core::Err(core::HttpsError{}));
  }
  core::HttpsRequest get(const std::string& path = "/x") { return {"GET", "https://token.test" + path, {}, {}}; }

  testing::TestCa ca_;
  testing::TestCa::Cert cert_;
  std::string ip_;
  uv_loop_t loop_{};
  std::unique_ptr<HttpsServer> server_;
  std::unique_ptr<FixedLookup> lookup_;
  core::HttpsClientOptions opts_;
};

TEST_F(HttpsClientTest, GetReturnsStatusHeadersAndBodyOverVerifiedTls) {
  server_->set(Behaviour::Answer, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
  auto r = fetch(get("/.well-known/mta-sts.txt?x=1"));
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  ASSERT_NE(r->header("content-type"), nullptr);
  EXPECT_EQ(*r->header("content-type"), "text/plain");
  EXPECT_EQ(r->ip, ip_);
  EXPECT_TRUE(r->tls_version == "TLSv1.2" || r->tls_version == "TLSv1.3") << r->tls_version;
  std::string req = server_->last_request();
  EXPECT_EQ(req.rfind("GET /.well-known/mta-sts.txt?x=1 HTTP/1.1\r\n", 0), 0u) << req;
  EXPECT_NE(req.find("\r\nHost: token.test\r\n"), std::string::npos) << req;
  EXPECT_NE(req.find("\r\nConnection: close\r\n"), std::string::npos) << req;
  EXPECT_EQ(lookup_->hosts, std::vector<std::string>{"token.test"});
}

TEST_F(HttpsClientTest, PostSendsItsBodyAndChunkedAnswersAreJoined) {
  server_->set(Behaviour::Answer,
               "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"err\r\n3\r\nor\"\r\n1\r\n}\r\n0\r\n\r\n");
  core::HttpsRequest req{"POST", "https://token.test/token", {{"Content-Type", "application/x-www-form-urlencoded"}},
                         "grant_type=refresh_token&refresh_token=abc"};
  auto r = fetch(req);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->body, "{\"error\"}");
  std::string seen = server_->last_request();
  EXPECT_NE(seen.find("\r\nContent-Length: 42\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("\r\nContent-Type: application/x-www-form-urlencoded\r\n"), std::string::npos);
  EXPECT_EQ(seen.substr(seen.size() - 42), "grant_type=refresh_token&refresh_token=abc");
}

TEST_F(HttpsClientTest, AnAnswerWithoutLengthEndsWithTheConnection) {
  server_->set(Behaviour::Answer, "HTTP/1.1 200 OK\r\n\r\nuntil close");
  auto r = fetch(get());
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->body, "until close");
}

TEST_F(HttpsClientTest, RedirectsAreReturnedNotFollowed) {
  server_->set(Behaviour::Answer, "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n");
  auto r = fetch(get());
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_EQ(r->status, 302);
  EXPECT_EQ(*r->header("location"), "http://169.254.169.254/");
  EXPECT_EQ(server_->connections(), 1u);
}

TEST_F(HttpsClientTest, ACertificateForAnotherNameFailsInTheTlsPhase) {
  server_.reset();
  server_ = std::make_unique<HttpsServer>(ca_.wrong_name(), ip_);
  auto r = fetch(get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().phase, HttpsPhase::Tls);
  EXPECT_EQ(r.error().kind, HttpsErrorKind::TlsFailed);
  EXPECT_NE(r.error().detail.find("certificate verify failed"), std::string::npos) << r.error().detail;
}

TEST_F(HttpsClientTest, ACertificateFromAnUntrustedCaFails) {
  testing::TestCa other;
  core::TlsClientOptions to;
  to.ca_file = other.ca_file();
  to.use_system_roots = false;
  opts_.tls = core::TlsContext::client(to).value();
  server_->set(Behaviour::Answer, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  auto r = fetch(get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, HttpsErrorKind::TlsFailed);
  EXPECT_EQ(r.error().phase, HttpsPhase::Tls);
}

TEST_F(HttpsClientTest, OnlyHttpsUrlsOnAllowedPortsAreTried) {
  auto plain = fetch({"GET", "http://token.test/", {}, {}});
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.error().kind, HttpsErrorKind::BadUrl);
  EXPECT_EQ(plain.error().phase, HttpsPhase::Request);
  auto port = fetch({"GET", "https://token.test:6379/", {}, {}});
  ASSERT_FALSE(port.ok());
  EXPECT_EQ(port.error().kind, HttpsErrorKind::PortRefused);
  auto userinfo = fetch({"GET", "https://token.test@169.254.169.254/", {}, {}});
  ASSERT_FALSE(userinfo.ok());
  EXPECT_EQ(userinfo.error().kind, HttpsErrorKind::BadUrl);
  auto injected = fetch({"GET", "https://token.test/", {{"X-A", "1\r\nHost: evil"}}, {}});
  ASSERT_FALSE(injected.ok());
  EXPECT_EQ(injected.error().kind, HttpsErrorKind::BadRequest);
  EXPECT_TRUE(lookup_->hosts.empty());
  EXPECT_EQ(server_->connections(), 0u);
}

TEST_F(HttpsClientTest, APeerThatNeverStartsTlsTimesOutInTheTlsPhase) {
  server_->set(Behaviour::NoTls);
  opts_.tls_timeout_ms = 300;
  auto r = fetch(get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, HttpsErrorKind::Timeout);
  EXPECT_EQ(r.error().phase, HttpsPhase::Tls);
}

TEST_F(HttpsClientTest, APeerThatNeverAnswersHitsTheTotalTimeout) {
  server_->set(Behaviour::Silent);
  opts_.total_timeout_ms = 1500;
  auto r = fetch(get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, HttpsErrorKind::Timeout);
  EXPECT_EQ(r.error().phase, HttpsPhase::Response);
  EXPECT_NE(server_->last_request().find("GET /x"), std::string::npos);
}

TEST_F(HttpsClientTest, AnAnswerOverTheSizeBoundIsCutOff) {
  opts_.max_response_bytes = 1000;
  server_->set(Behaviour::Answer, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'a'));
  auto declared = fetch(get());
  ASSERT_FALSE(declared.ok());
  EXPECT_EQ(declared.error().kind, HttpsErrorKind::TooLarge);
  server_->set(Behaviour::Answer, "HTTP/1.1 200 OK\r\n\r\n" + std::string(50000, 'a'));
  auto streamed = fetch(get());
  ASSERT_FALSE(streamed.ok());
  EXPECT_EQ(streamed.error().kind, HttpsErrorKind::TooLarge);
  EXPECT_EQ(streamed.error().phase, HttpsPhase::Response);
}

TEST_F(HttpsClientTest, AGarbledAnswerIsABadResponse) {
  server_->set(Behaviour::Answer, "SMTP/1.0 220 hello\r\n\r\n");
  auto r = fetch(get());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, HttpsErrorKind::BadResponse);
}

// Through the real resolver: the name resolves to a loopback address, which the target policy
// refuses unless it is explicitly allowed; a refused address is never connected to.
TEST_F(HttpsClientTest, TheResolverVetsTheAddressBeforeAnyConnection) {
  testing::DnsServer::Options dopts;
  dopts.records = {testing::DnsServer::host_record("token.test", ip_)};
  testing::DnsServer dns(dopts);
  dns::ResolverConfig rc;
  rc.servers = {dns.address()};
  server_->set(Behaviour::Answer, "HTTP/1.1 204 No Content\r\n\r\n");

  auto strict = dns::AddressPolicy::create({}).value();
  auto* resolver = dns::Resolver::create(&loop_, rc, &strict);
  dns::ResolverLookup lookup(resolver);
  auto refused = fetch(get(), &lookup);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, HttpsErrorKind::RefusedByPolicy);
  EXPECT_EQ(refused.error().phase, HttpsPhase::Resolve);
  EXPECT_NE(refused.error().detail.find("loopback"), std::string::npos) << refused.error().detail;
  EXPECT_EQ(server_->connections(), 0u);

  auto allowing = dns::AddressPolicy::create({ip_}).value();
  resolver->set_policy(&allowing);
  auto allowed = fetch(get(), &lookup);
  ASSERT_TRUE(allowed.ok()) << allowed.error().detail;
  EXPECT_EQ(allowed->status, 204);
  EXPECT_EQ(allowed->ip, ip_);
  resolver->close();
}

}  // namespace
}  // namespace deliverd
