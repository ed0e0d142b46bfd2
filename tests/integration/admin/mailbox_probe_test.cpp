// Mailbox create through the API with the real connection test against aiosmtpd: a mailbox is
// saved only when connect and AUTH succeed, and a refusal names the step that failed.
#include "admin/mailbox_probe.h"

#include "dns/address_policy.h"
#include "dns/resolver.h"
#include "tests/integration/admin/api_fixture.h"
#include "tests/integration/fixtures/aiosmtpd_server.h"
#include "tests/integration/fixtures/test_ca.h"

namespace deliverd::admin::testing {
namespace {

constexpr int kSubmissionPort = 2525;  // one the port policy allows; peers differ by address

class ProbeTest : public ApiTest {
 public:
  // The real prober, with loopback allowed (as a test's allow_private_targets would) or not.
  void use_prober(std::vector<std::string> allow, const std::string& ca_file = "") {
    auto policy = dns::AddressPolicy::create(allow);
    ASSERT_TRUE(policy) << policy.error();
    policy_ = std::make_unique<dns::AddressPolicy>(*policy);
    resolver_ = dns::Resolver::create(&loop_, dns::ResolverConfig{}, policy_.get());
    core::TlsClientOptions topts;
    if (!ca_file.empty()) {
      topts.ca_file = ca_file;
      topts.use_system_roots = false;
    }
    auto tls = core::TlsContext::client(topts);
    ASSERT_TRUE(tls) << tls.error();
    MailboxProberConfig cfg;
    cfg.timeout_ms = 10000;
    prober_ = std::make_unique<MailboxProber>(&loop_, resolver_, policy_.get(), *tls, cfg);
    deps_.test_mailbox = [this](const MailboxProbeRequest& r, std::function<void(MailboxTestResult)> done) {
      prober_->probe(r, std::move(done));
    };
    on_stop_ = [this] { resolver_->close(); };
  }

  // aiosmtpd on the submission port of a loopback address of its own.
  static deliverd::testing::AiosmtpdServer::Options submission_server() {
    deliverd::testing::AiosmtpdServer::Options o;
    o.host = deliverd::testing::free_loopback_ip(kSubmissionPort);
    o.port = kSubmissionPort;
    return o;
  }

  // The body of a mailbox that also names an IMAP server, user alice.
  static std::string with_imap(const std::string& id, const std::string& smtp_host, const std::string& imap_host,
                               int imap_port, const std::string& imap_password) {
    std::string m = mailbox(id, smtp_host, kSubmissionPort, "s3cret-pass");
    m.pop_back();
    return m + R"(, "imap": {"host": ")" + imap_host + R"(", "port": )" + std::to_string(imap_port) +
           R"(, "username": "alice", "password": ")" + imap_password + R"("}})";
  }

  static std::string mailbox(const std::string& id, const std::string& host, int port, const std::string& password) {
    return R"({"id": ")" + id + R"(", "email": "alice@acme.example", "smtp_host": ")" + host + R"(", "smtp_port": )" +
           std::to_string(port) +
           R"(, "security": "none", "username": "alice@acme.example",)"
           R"( "password": ")" +
           password + R"("})";
  }

  std::unique_ptr<dns::AddressPolicy> policy_;
  dns::Resolver* resolver_ = nullptr;
  std::unique_ptr<MailboxProber> prober_;
};

TEST_F(ProbeTest, GoodCredentialsAreSavedWrongOnesAndRefusedTargetsAreNot) {
  auto o = submission_server();
  deliverd::testing::AiosmtpdServer smtp(o);
  std::string closed_ip = deliverd::testing::free_loopback_ip(kSubmissionPort);  // nothing listens there
  use_prober({"127.0.0.0/8"});
  std::string key = make_key("user", "acct_a");
  run([&](int port) {
    Client c(port);
    auto r = c.request("POST", "/v1/mailboxes", key, mailbox("mbx_bad", o.host, kSubmissionPort, "not-it"));
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_NE(r.body.find("\"step\":\"auth\""), std::string::npos) << r.body;

    r = c.request("POST", "/v1/mailboxes", key, mailbox("mbx_port", o.host, smtp.port() + 1, "s3cret-pass"));
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_NE(r.body.find("\"step\":\"port_policy\""), std::string::npos) << r.body;

    r = c.request("POST", "/v1/mailboxes", key, mailbox("mbx_closed", closed_ip, kSubmissionPort, "s3cret-pass"));
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_NE(r.body.find("\"step\":\"connect\""), std::string::npos) << r.body;

    r = c.request("POST", "/v1/mailboxes", key, mailbox("mbx_good", o.host, kSubmissionPort, "s3cret-pass"));
    EXPECT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.body.find("s3cret-pass"), std::string::npos);
    auto g = c.request("GET", "/v1/mailboxes/mbx_good", key);
    EXPECT_EQ(g.body.find("s3cret-pass"), std::string::npos);
    EXPECT_NE(g.body.find("\"has_password\":true"), std::string::npos);

    auto t = c.request("POST", "/v1/mailboxes/mbx_good/test", key);
    EXPECT_NE(t.body.find("\"ok\":true"), std::string::npos) << t.body;
  });
  EXPECT_EQ(scalar("SELECT string_agg(id, ',' ORDER BY id) FROM mailboxes"), "mbx_good");
  EXPECT_EQ(
      scalar("SELECT count(*) FROM mailboxes WHERE password_enc::text LIKE '%' || encode('s3cret-pass', 'hex') || '%'"),
      "0");
  bool saw_ok = false, saw_fail = false;
  for (const auto& line : smtp.auth_log()) {
    saw_ok = saw_ok || line.find("ok") != std::string::npos;
    saw_fail = saw_fail || line.find("ok") == std::string::npos;
  }
  EXPECT_TRUE(saw_ok) << smtp.log();
  EXPECT_TRUE(saw_fail) << smtp.log();
  EXPECT_EQ(smtp.message_count(), 0u);  // a test never sends mail
}

// tests/integration/admin/imap_stub.py on a loopback address: port 143 speaks STARTTLS, 993 TLS
// from the first byte.
class ImapStub {
 public:
  ImapStub(const deliverd::testing::TestCa::Cert& cert, const std::string& host, int port = 143) {
    const char* src = std::getenv("DELIVERD_SOURCE_DIR");
    std::string script = std::string(src ? src : ".") + "/tests/integration/admin/imap_stub.py";
    std::vector<std::string> argv = {"/usr/bin/python3", script, "--host", host, "--port", std::to_string(port),
                                     "--cert", cert.cert_file, "--key", cert.key_file, "--user", "alice",
                                     "--password", "imap-pass", "--dir", dir_.path()};
    if (port == 993) argv.push_back("--implicit-tls");
    proc_ = deliverd::testing::Process(argv, dir_.file("stub.log"));
    if (!deliverd::testing::wait_for_ready_file(proc_, dir_.file("ready"), 15000))
      throw std::runtime_error("imap_stub did not start: " + deliverd::testing::read_file(dir_.file("stub.log")));
  }
  ~ImapStub() { proc_.stop(1000); }
  std::string log() const { return deliverd::testing::read_file(dir_.file("imap.log")); }

 private:
  deliverd::testing::TempDir dir_{"deliverd-imap"};
  deliverd::testing::Process proc_;
};

TEST_F(ProbeTest, ImapLoginIsCheckedOverStartTls) {
  auto o = submission_server();
  deliverd::testing::AiosmtpdServer smtp(o);
  deliverd::testing::TestCa ca;
  std::string imap_ip = deliverd::testing::free_loopback_ip(143);
  ImapStub imap(ca.issue("imap", {imap_ip}, 2), imap_ip);
  use_prober({"127.0.0.0/8"}, ca.ca_file());
  std::string key = make_key("user", "acct_a");
  auto body = [&](const std::string& id, const std::string& imap_password) {
    return with_imap(id, o.host, imap_ip, 143, imap_password);
  };
  run([&](int port) {
    Client c(port);
    auto r = c.request("POST", "/v1/mailboxes", key, body("mbx_imap_bad", "nope"));
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_NE(r.body.find("\"step\":\"imap_login\""), std::string::npos) << r.body;
    r = c.request("POST", "/v1/mailboxes", key, body("mbx_imap", "imap-pass"));
    EXPECT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.body.find("imap-pass"), std::string::npos);
    EXPECT_NE(r.body.find("\"imap\":{\"host\":\"" + imap_ip), std::string::npos) << r.body;
  });
  EXPECT_NE(imap.log().find("LOGIN alice fail"), std::string::npos) << imap.log();
  EXPECT_NE(imap.log().find("LOGIN alice ok"), std::string::npos) << imap.log();
  EXPECT_EQ(scalar("SELECT string_agg(id, ',') FROM mailboxes"), "mbx_imap");
}

TEST_F(ProbeTest, ImapLoginIsCheckedOverImplicitTlsOn993) {
  auto o = submission_server();
  deliverd::testing::AiosmtpdServer smtp(o);
  deliverd::testing::TestCa ca;
  std::string good_ip = deliverd::testing::free_loopback_ip(993);
  ImapStub good(ca.issue("imap", {good_ip}, 2), good_ip, 993);
  // A certificate for another name: the TLS step must refuse it before any LOGIN is sent.
  std::string wrong_ip = deliverd::testing::free_loopback_ip(993);
  ImapStub wrong_name(ca.issue("imap-other", {"192.0.2.7"}, 2), wrong_ip, 993);
  use_prober({"127.0.0.0/8"}, ca.ca_file());
  std::string key = make_key("user", "acct_a");
  auto body = [&](const std::string& id, const std::string& imap_ip, const std::string& imap_password) {
    return with_imap(id, o.host, imap_ip, 993, imap_password);
  };
  run([&](int port) {
    Client c(port);
    auto r = c.request("POST", "/v1/mailboxes", key, body("mbx_993_name", wrong_ip, "imap-pass"));
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_NE(r.body.find("\"step\":\"imap_tls\""), std::string::npos) << r.body;
    r = c.request("POST", "/v1/mailboxes", key, body("mbx_993_bad", good_ip, "nope"));
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_NE(r.body.find("\"step\":\"imap_login\""), std::string::npos) << r.body;
    r = c.request("POST", "/v1/mailboxes", key, body("mbx_993", good_ip, "imap-pass"));
    EXPECT_EQ(r.status, 201) << r.body;
    EXPECT_NE(r.body.find("\"port\":993"), std::string::npos) << r.body;
  });
  EXPECT_EQ(wrong_name.log().find("LOGIN"), std::string::npos) << wrong_name.log();
  EXPECT_NE(good.log().find("LOGIN alice fail"), std::string::npos) << good.log();
  EXPECT_NE(good.log().find("LOGIN alice ok"), std::string::npos) << good.log();
  EXPECT_EQ(scalar("SELECT string_agg(id, ',') FROM mailboxes"), "mbx_993");
}

TEST_F(ProbeTest, PrivateAddressIsRefusedBySsrfPolicy) {
  auto o = submission_server();
  deliverd::testing::AiosmtpdServer smtp(o);
  use_prober({});  // the production default: no allow list
  std::string key = make_key("user", "acct_a");
  run([&](int port) {
    Client c(port);
    auto r = c.request("POST", "/v1/mailboxes", key, mailbox("mbx_ssrf", o.host, kSubmissionPort, "s3cret-pass"));
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_NE(r.body.find("\"step\":\"ssrf\""), std::string::npos) << r.body;
    r = c.request("POST", "/v1/mailboxes", key, mailbox("mbx_meta", "169.254.169.254", 587, "x"));
    EXPECT_NE(r.body.find("\"step\":\"ssrf\""), std::string::npos) << r.body;
  });
  EXPECT_EQ(scalar("SELECT count(*) FROM mailboxes"), "0");
  EXPECT_TRUE(smtp.auth_log().empty());
}

}  // namespace
}  // namespace deliverd::admin::testing
