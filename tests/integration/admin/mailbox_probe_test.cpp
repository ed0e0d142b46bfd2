// Mailbox create through the API with the real connection test against aiosmtpd: a mailbox is
// saved only when connect and AUTH succeed, and a refusal names the step that failed.
#include "admin/mailbox_probe.h"

#include "core/base64.h"
#include "dns/address_policy.h"
#include "dns/resolver.h"
#include "smtp/session.h"
#include "tests/integration/admin/api_fixture.h"
#include "tests/integration/fixtures/aiosmtpd_server.h"
#include "tests/integration/fixtures/dovecot_server.h"
#include "tests/integration/fixtures/imap_stub.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"
#include "tests/integration/fixtures/test_ca.h"

namespace deliverd::admin::testing {
namespace {

constexpr int kSubmissionPort = 2525;  // one the port policy allows; peers differ by address

deliverd::testing::TestCa& test_ca() {
  static deliverd::testing::TestCa ca;  // one CA per binary: key generation is not free
  return ca;
}

std::shared_ptr<core::TlsContext> client_tls(const std::string& ca_file) {
  core::TlsClientOptions topts;
  if (!ca_file.empty()) {
    topts.ca_file = ca_file;
    topts.use_system_roots = false;
  }
  auto tls = core::TlsContext::client(topts);
  EXPECT_TRUE(tls) << tls.error();
  return *tls;
}

class ProbeTest : public ApiTest {
 public:
  // The real prober, with loopback allowed (as a test's allow_private_targets would) or not. It
  // trusts the test CA, which signs every submission server's certificate.
  void use_prober(std::vector<std::string> allow, const std::string& ca_file = test_ca().ca_file()) {
    auto policy = dns::AddressPolicy::create(allow);
    ASSERT_TRUE(policy) << policy.error();
    policy_ = std::make_unique<dns::AddressPolicy>(*policy);
    resolver_ = dns::Resolver::create(&loop_, dns::ResolverConfig{}, policy_.get());
    MailboxProberConfig cfg;
    cfg.timeout_ms = 10000;
    cfg.tls = client_tls(ca_file);
    prober_ = std::make_unique<MailboxProber>(&loop_, resolver_, cfg);
    deps_.test_mailbox = [this](const MailboxProbeRequest& r, std::function<void(MailboxTestResult)> done) {
      prober_->probe(r, std::move(done));
    };
    on_stop_ = [this] { resolver_->close(); };
  }

  // aiosmtpd on the submission port of a loopback address of its own, STARTTLS before AUTH with
  // a certificate for that address (credentials never travel in plaintext).
  static deliverd::testing::AiosmtpdServer::Options submission_server() {
    deliverd::testing::AiosmtpdServer::Options o;
    o.host = deliverd::testing::free_loopback_ip(kSubmissionPort);
    o.port = kSubmissionPort;
    auto cert = test_ca().issue("smtp", {o.host}, 2);
    o.cert_file = cert.cert_file;
    o.key_file = cert.key_file;
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
           R"(, "security": "starttls", "username": "alice@acme.example",)"
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

using deliverd::testing::ImapStub;

// A tenant re-points its mailbox at a server it controls (here the scripted server, which logs
// every line it gets): the stored password is never sent there, whatever the request says.
TEST_F(ProbeTest, ARepointedMailboxNeverSendsItsStoredSecretToTheNewServer) {
  auto o = submission_server();
  deliverd::testing::AiosmtpdServer smtp(o);
  deliverd::testing::ScriptedSmtpServer::Options lo;
  lo.host = deliverd::testing::free_loopback_ip(kSubmissionPort);
  lo.port = kSubmissionPort;
  auto cert = test_ca().issue("logger", {lo.host}, 2);
  deliverd::testing::ScriptedSmtpServer logger(
      R"({"tls": {"cert": ")" + cert.cert_file + R"(", "key": ")" + cert.key_file +
          R"("}, "steps": {"EHLO": ["250-logger.test", "250-STARTTLS", "250 AUTH PLAIN LOGIN"], "*": "235 2.7.0 ok"}})",
      lo);
  use_prober({"127.0.0.0/8"});
  std::string key = make_key("user", "acct_a");
  const std::string stored = "s3cret-pass";
  run([&](int port) {
    Client c(port);
    ASSERT_EQ(c.request("POST", "/v1/mailboxes", key, mailbox("mbx_r", o.host, kSubmissionPort, stored)).status, 201);
    const std::string to_logger = R"({"smtp_host": ")" + lo.host + "\"";
    auto r = c.request("PATCH", "/v1/mailboxes/mbx_r", key, to_logger + "}");
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_NE(r.body.find("\"code\":\"credentials_required\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\"field\":\"password\""), std::string::npos) << r.body;
    r = c.request("PATCH", "/v1/mailboxes/mbx_r", key, to_logger + R"(, "security": "tls"})");
    EXPECT_EQ(r.status, 422) << r.body;
    r = c.request("PATCH", "/v1/mailboxes/mbx_r", key, R"({"security": "none"})");
    EXPECT_EQ(r.status, 422) << r.body;
    r = c.request("PATCH", "/v1/mailboxes/mbx_r", key, to_logger + R"(, "security": "none", "password": "x"})");
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find("\"field\":\"security\""), std::string::npos) << r.body;
    // The test runs against the stored server with the stored settings, never one the request names.
    auto t = c.request("POST", "/v1/mailboxes/mbx_r/test", key);
    EXPECT_NE(t.body.find("\"ok\":true"), std::string::npos) << t.body;
    EXPECT_TRUE(logger.commands().empty()) << "nothing reached the new server yet";
    // With a password of its own the tenant may move: the new server gets that one only.
    r = c.request("PATCH", "/v1/mailboxes/mbx_r", key, to_logger + R"(, "password": "tenant-new-pw"})");
    EXPECT_EQ(r.status, 200) << r.body;
  });
  std::string seen;
  for (const auto& line : logger.commands()) seen += line + "\n";
  EXPECT_NE(seen.find(core::base64_encode(std::string(1, '\0') + "alice@acme.example" + std::string(1, '\0') + "tenant-new-pw")),
            std::string::npos)
      << "the logger saw the AUTH it was given: " << seen;
  EXPECT_EQ(seen.find(stored), std::string::npos) << seen;
  for (const auto& encoded : {core::base64_encode(std::string(1, '\0') + "alice@acme.example" + std::string(1, '\0') + stored),
                              core::base64_encode(stored)})
    EXPECT_EQ(seen.find(encoded), std::string::npos) << seen;
  EXPECT_EQ(scalar("SELECT smtp_host FROM mailboxes WHERE id = 'mbx_r'"), lo.host);
}

TEST_F(ProbeTest, ImapLoginIsCheckedOverStartTls) {
  auto o = submission_server();
  deliverd::testing::AiosmtpdServer smtp(o);
  auto& ca = test_ca();
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
  auto& ca = test_ca();
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

// The prober and the delivery session are one client: the tests below run the prober without the
// API against the scripted server, whose log of received lines shows what reached the server.
struct ScriptedSubmission {
  explicit ScriptedSubmission(const std::string& steps, const std::string& cert_label = "")
      : ip(deliverd::testing::free_loopback_ip(kSubmissionPort)),
        server(
            script(steps, cert_label.empty() ? std::vector<std::string>{} : std::vector<std::string>{ip}, cert_label),
            {ip, kSubmissionPort}) {}
  // TLS (STARTTLS) with a certificate for `names`; no names: a plaintext server.
  static std::string script(const std::string& steps, const std::vector<std::string>& names, const std::string& label) {
    if (label.empty()) return R"({"steps": )" + steps + "}";
    auto cert = test_ca().issue(label, names, 2);
    return R"({"tls": {"cert": ")" + cert.cert_file + R"(", "key": ")" + cert.key_file + R"("}, "steps": )" + steps +
           "}";
  }
  bool received(const std::string& prefix) const {
    for (const auto& c : server.commands())
      if (c.rfind(prefix, 0) == 0) return true;
    return false;
  }
  std::string ip;
  deliverd::testing::ScriptedSmtpServer server;
};

constexpr const char* kEhloWithAuth =
    R"(["250-scripted.test", "250-STARTTLS", "250-AUTH PLAIN LOGIN XOAUTH2", "250 ENHANCEDSTATUSCODES"])";

store::Mailbox submission_mailbox(const std::string& host, const std::string& security) {
  store::Mailbox m;
  m.id = "mbx_probe";
  m.account = "acct_a";
  m.email = "alice@acme.example";
  m.smtp_host = host;
  m.smtp_port = kSubmissionPort;
  m.security = core::security_from_name(security).value();
  m.username = "alice@acme.example";
  m.password = "s3cret-pass";
  return m;
}

// One connection test on a loop of its own; loopback allowed.
MailboxTestResult probe_once(const store::Mailbox& m, bool allow_plaintext_auth = false, ImapSettings imap = {}) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto policy = dns::AddressPolicy::create({"127.0.0.0/8"});
  EXPECT_TRUE(policy);
  dns::Resolver* resolver = dns::Resolver::create(&loop, dns::ResolverConfig{}, &*policy);
  MailboxProberConfig cfg;
  cfg.timeout_ms = 10000;
  cfg.tls = client_tls(test_ca().ca_file());
  cfg.smtp.allow_plaintext_auth = allow_plaintext_auth;
  MailboxProber prober(&loop, resolver, cfg);
  MailboxTestResult result;
  int calls = 0;
  prober.probe(MailboxProbeRequest{m, imap}, [&](MailboxTestResult r) {
    result = std::move(r);
    ++calls;
    resolver->close();
  });
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_EQ(calls, 1);
  return result;
}

// The same server and mailbox through the delivery path: what a send would meet.
core::Outcome deliver_once(const ScriptedSubmission& srv, const store::Mailbox& m) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  smtp::SessionConfig base;
  base.tls = client_tls(test_ca().ca_file());
  auto cfg = smtp::submission_config(base, m.security,
                                     smtp::Credentials{m.username, m.password, m.oauth_token});
  sockaddr_in addr{};
  uv_ip4_addr(srv.ip.c_str(), kSubmissionPort, &addr);
  core::Outcome out;
  smtp::Session::start(&loop, cfg, reinterpret_cast<const sockaddr*>(&addr), srv.ip,
                       smtp::Envelope{m.email, "bob@example.org", "Subject: hi\r\n\r\nhello\r\n"},
                       [&](const core::Outcome& o) { out = o; });
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  return out;
}

TEST(ProbeSession, AuthAnsweredWith250PassesTheProbeAsItPassesDelivery) {
  ScriptedSubmission srv(R"({"EHLO": )" + std::string(kEhloWithAuth) + R"(, "*": "250 2.7.0 authenticated"})", "smtp");
  auto m = submission_mailbox(srv.ip, "starttls");
  auto r = probe_once(m);
  EXPECT_TRUE(r.ok) << r.step << ": " << r.message << srv.server.log();
  EXPECT_EQ(r.step, "");
  EXPECT_TRUE(srv.received("AUTH PLAIN "));
  EXPECT_TRUE(srv.received("QUIT"));
  EXPECT_FALSE(srv.received("MAIL")) << "a connection test never sends mail";
  auto o = deliver_once(srv, m);
  EXPECT_EQ(o.status, core::Status::Delivered) << o.phase << "/" << o.reason << " " << o.detail;
}

TEST(ProbeSession, PlaintextAuthIsRefusedAndThePasswordNeverArrives) {
  ScriptedSubmission srv(R"({"EHLO": ["250-plain.test", "250 AUTH PLAIN LOGIN"], "*": "235 2.7.0 ok"})");
  auto m = submission_mailbox(srv.ip, "none");
  auto r = probe_once(m);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.step, "auth");
  EXPECT_NE(r.message.find("TLS"), std::string::npos) << r.message;
  // The delivery session refuses the same way, with a reason that says why.
  auto o = deliver_once(srv, m);
  EXPECT_EQ(o.status, core::Status::Failed);
  EXPECT_EQ(to_string(o.phase), "auth");
  EXPECT_EQ(to_string(o.reason), "auth_needs_tls");
  EXPECT_EQ(to_string(o.fault), "policy_auth");
  std::string received;
  for (const auto& c : srv.server.commands()) received += c + "\n";
  EXPECT_EQ(received.find("AUTH"), std::string::npos) << received;
  EXPECT_EQ(received.find("s3cret-pass"), std::string::npos) << received;
  EXPECT_EQ(received.find("czNjcmV0LXBhc3M"), std::string::npos) << received;  // base64 of it
  EXPECT_EQ(received.find("AGFsaWNl"), std::string::npos) << received;         // AUTH PLAIN's "\0alice"
  // The lab override sends it.
  r = probe_once(m, true);
  EXPECT_TRUE(r.ok) << r.step << ": " << r.message;
  EXPECT_TRUE(srv.received("AUTH PLAIN "));
}

TEST(ProbeSession, StartTlsRefusalStopsAtTlsBeforeAnyAuth) {
  ScriptedSubmission srv(
      R"({"EHLO": )" + std::string(kEhloWithAuth) + R"(, "STARTTLS": "454 4.7.0 TLS not available"})", "smtp");
  auto r = probe_once(submission_mailbox(srv.ip, "starttls"));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.step, "tls");
  EXPECT_NE(r.message.find("454"), std::string::npos) << r.message;
  EXPECT_TRUE(srv.received("STARTTLS"));
  EXPECT_FALSE(srv.received("AUTH"));
}

TEST(ProbeSession, StartTlsNotOfferedStopsAtTls) {
  ScriptedSubmission srv(R"({"EHLO": ["250-plain.test", "250 AUTH PLAIN LOGIN"]})");
  auto r = probe_once(submission_mailbox(srv.ip, "starttls"));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.step, "tls");
  EXPECT_NE(r.message.find("STARTTLS"), std::string::npos) << r.message;
  EXPECT_FALSE(srv.received("AUTH"));
}

TEST(ProbeSession, CertificateForAnotherNameStopsAtTlsBeforeAnyAuth) {
  deliverd::testing::TestCa& ca = test_ca();
  std::string ip = deliverd::testing::free_loopback_ip(kSubmissionPort);
  auto other = ca.issue("smtp-other", {"192.0.2.7"}, 2);
  deliverd::testing::ScriptedSmtpServer server(R"({"tls": {"cert": ")" + other.cert_file + R"(", "key": ")" +
                                                   other.key_file + R"("}, "steps": {"EHLO": )" + kEhloWithAuth + "}}",
                                               {ip, kSubmissionPort});
  auto r = probe_once(submission_mailbox(ip, "starttls"));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.step, "tls");
  EXPECT_NE(r.message.find("TLS handshake failed"), std::string::npos) << r.message;
  for (const auto& c : server.commands()) EXPECT_EQ(c.rfind("AUTH", 0), std::string::npos) << c;
}

TEST(ProbeSession, XOAuth2ErrorChallengeIsAnsweredThenReportedAsAuth) {
  // Google's way: 334 with a base64 JSON error, and the final 535 only after an empty line.
  ScriptedSubmission srv(R"({"EHLO": )" + std::string(kEhloWithAuth) +
                             R"(, "*": [{"reply": "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=", "times": 1},)"
                             R"( "535 5.7.8 Username and Password not accepted"]})",
                         "smtp");
  auto m = submission_mailbox(srv.ip, "starttls");
  m.password.clear();
  m.oauth_token = "ya29.expired";
  auto r = probe_once(m);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.step, "auth");
  EXPECT_NE(r.message.find("535"), std::string::npos) << r.message;
  auto cmds = srv.server.commands();
  size_t i = 0;
  while (i < cmds.size() && cmds[i].rfind("AUTH XOAUTH2 ", 0) != 0) ++i;
  ASSERT_LT(i + 1, cmds.size()) << srv.server.log();
  EXPECT_EQ(cmds[i + 1], "");  // the empty line that asks for the final reply
}

// The IMAP step is the inbound client, against a real Dovecot that refuses LOGIN before TLS.
TEST(ProbeImap, DovecotOnBothImapPortsAndNoOtherPort) {
  ScriptedSubmission srv(R"({"EHLO": )" + std::string(kEhloWithAuth) + R"(, "*": "235 2.7.0 ok"})", "smtp");
  deliverd::testing::DovecotServer::Options o;
  o.ca = &test_ca();
  deliverd::testing::DovecotServer dovecot(o);
  auto m = submission_mailbox(srv.ip, "starttls");
  auto imap = [&](int port, const std::string& password) {
    return ImapSettings{dovecot.host(), port, "alice", password};
  };
  auto tls = probe_once(m, false, imap(993, "imap-pass"));
  EXPECT_TRUE(tls.ok) << tls.step << ": " << tls.message;
  auto starttls = probe_once(m, false, imap(143, "imap-pass"));
  EXPECT_TRUE(starttls.ok) << starttls.step << ": " << starttls.message;
  auto wrong = probe_once(m, false, imap(143, "nope"));
  EXPECT_FALSE(wrong.ok);
  EXPECT_EQ(wrong.step, "imap_login");
  EXPECT_NE(wrong.message.find("AUTHENTICATIONFAILED"), std::string::npos) << wrong.message;
  EXPECT_EQ(wrong.message.find("nope"), std::string::npos);
  // An IMAP server on a mail port that is not an IMAP port would get LOGIN without TLS: refused.
  auto other = probe_once(m, false, imap(587, "imap-pass"));
  EXPECT_FALSE(other.ok);
  EXPECT_EQ(other.step, "imap_port_policy");
  std::string log = dovecot.log();
  EXPECT_EQ(log.find("Plaintext authentication"), std::string::npos) << log;
  EXPECT_NE(log.find("Login: user=<alice>"), std::string::npos) << log;
}

}  // namespace
}  // namespace deliverd::admin::testing
