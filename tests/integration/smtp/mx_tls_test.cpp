// MX mode TLS against real servers on 127.0.x.y:<port> found through dnsmasq: a server whose
// STARTTLS handshake fails (the scripted server says 220, then sends bytes that are no TLS) gets
// its mail in plaintext on a second connection when no policy applies, and nothing when TLS is
// required; a server that speaks only TLS 1.1 (the in-tree TLS sink, security level 0) gets it
// over TLS 1.1 opportunistically and nothing when TLS is required. Every outcome names its policy.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/timer.h"
#include "core/tls_context.h"
#include "dns/resolver.h"
#include "smtp/mx_delivery.h"
#include "smtp/session_pool.h"
#include "tests/integration/smtp/mx_test_support.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/smtp/tls_sink.h"

namespace deliverd::smtp {
namespace {

using deliverd::testing::DnsServer;
using deliverd::testing::now_ms;
using deliverd::testing::ScriptedSmtpServer;
using deliverd::testing::TestCa;
using deliverd::testing::TlsSink;
using testing::describe;

TestCa& ca() {
  static TestCa* c = new TestCa();  // one CA for the whole binary: key generation is not free
  return *c;
}


// The commands of each connection, split at the scripted server's "CONNECT" markers.
std::vector<std::vector<std::string>> connections(const std::vector<std::string>& commands) {
  std::vector<std::vector<std::string>> out;
  for (const auto& c : commands) {
    if (c == "CONNECT") {
      out.emplace_back();
    } else if (!out.empty()) {
      out.back().push_back(c);
    }
  }
  return out;
}

bool has_prefix(const std::vector<std::string>& v, const std::string& prefix) {
  for (const auto& s : v)
    if (s.rfind(prefix, 0) == 0) return true;
  return false;
}

class MxTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = deliverd::testing::free_port();
    broken_ip_ = deliverd::testing::free_loopback_ip(port_);
    old_ip_ = deliverd::testing::free_loopback_ip(port_);
    while (old_ip_ == broken_ip_) old_ip_ = deliverd::testing::free_loopback_ip(port_);
    cert_ = ca().issue("mx", {"mx.broken.test", "mx.old.test"}, 30);
    // 220 to STARTTLS, then (while the client is in its handshake) bytes that are not TLS.
    ScriptedSmtpServer::Options so;
    so.host = broken_ip_;
    so.port = port_;
    broken_ = std::make_unique<ScriptedSmtpServer>(
        R"({"tls": {"cert": ")" + cert_.cert_file + R"(", "key": ")" + cert_.key_file +
            R"("}, "steps": {"STARTTLS": {"action": "garbage_tls"}}})",
        so);
    old_ = std::make_unique<TlsSink>(cert_.cert_file, cert_.key_file, TlsSink::Mode::StartTls, old_ip_, port_,
                                     TLS1_1_VERSION);
    DnsServer::Options d;
    d.records = {DnsServer::mx("broken.test", "mx.broken.test", 10), DnsServer::host_record("mx.broken.test", broken_ip_),
                 DnsServer::mx("old.test", "mx.old.test", 10), DnsServer::host_record("mx.old.test", old_ip_)};
    dns_ = std::make_unique<DnsServer>(d);
    uv_loop_init(&loop_);
    auto policy = dns::AddressPolicy::create({"127.0.0.0/8"});
    ASSERT_TRUE(policy);
    policy_ = std::make_unique<dns::AddressPolicy>(*policy);
    dns::ResolverConfig rc;
    rc.servers = {dns_->address()};
    resolver_ = dns::Resolver::create(&loop_, rc, policy_.get());
  }
  void TearDown() override {
    resolver_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // One message to bob@<domain> under [smtp] mx_tls = configured (and the delivery's own policy,
  // when given); the certificate is one the client trusts for the MX host's name.
  core::Outcome deliver(const std::string& domain, TlsPolicy configured,
                        std::optional<TlsPolicy> for_delivery = std::nullopt, int messages = 1) {
    PoolConfig pc;
    pc.idle_timeout_ms = 50;
    SessionPool pool(&loop_, pc);
    core::TlsClientOptions o;
    o.ca_file = ca().ca_file();
    o.use_system_roots = false;
    MxDelivery mx(*resolver_, pool, testing::mx_test_config(port_, core::TlsContext::client(o).value(), configured));
    mx.set_tls_report_sink([this](const smtp::TlsAttemptReport& r) {
      EXPECT_EQ(r.policy_type, smtp::TlsAttemptReport::PolicyType::NoPolicyFound);
      reported_.push_back(std::string(core::to_string(r.result)));
    });
    core::Outcome out;
    int calls = 0;
    core::Timer* tick = core::Timer::create(&loop_);
    tick->start_repeating(10, [] {});
    long long deadline = now_ms() + 25000;
    for (int i = 0; i < messages; ++i) {  // one after the other, so that a later one may reuse the connection
      mx.deliver(
          domain, Envelope{"alice@acme.example", "bob@" + domain, "Subject: tls test\r\n\r\nhello " + domain + "\r\n"},
          [&](const core::Outcome& o) {
            out = o;
            ++calls;
          },
          for_delivery);
      while (calls == i && now_ms() < deadline) uv_run(&loop_, UV_RUN_ONCE);
    }
    while (pool.open_sessions() > 0 && now_ms() < deadline) uv_run(&loop_, UV_RUN_ONCE);
    tick->close();
    EXPECT_EQ(calls, messages);
    return out;
  }

  int port_ = 0;
  std::string broken_ip_, old_ip_;
  TestCa::Cert cert_;
  std::unique_ptr<ScriptedSmtpServer> broken_;
  std::unique_ptr<TlsSink> old_;
  std::unique_ptr<DnsServer> dns_;
  std::unique_ptr<dns::AddressPolicy> policy_;
  uv_loop_t loop_{};
  dns::Resolver* resolver_ = nullptr;
  std::vector<std::string> reported_;  // TLS-RPT result types, in order
};

// Postfix's "may": the handshake after STARTTLS's 220 fails, so the same address is dialled again
// and the message goes in plaintext, without STARTTLS; the outcome says so.
TEST_F(MxTlsTest, FailedHandshakeWithoutAPolicyDeliversInPlaintextOnASecondConnection) {
  auto o = deliver("broken.test", TlsPolicy::Opportunistic);
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o) << broken_->log();
  EXPECT_EQ(o.ip, broken_ip_);
  EXPECT_EQ(o.host, "mx.broken.test");
  EXPECT_EQ(core::to_string(o.tls_policy), "opportunistic");
  EXPECT_EQ(core::to_string(o.tls_fallback), "handshake_failed");
  EXPECT_TRUE(o.tls_version.empty()) << o.tls_version;
  // TLS-RPT hears of the failed handshake; the plaintext retry negotiated no TLS to report.
  EXPECT_EQ(reported_, std::vector<std::string>{"validation-failure"});

  auto conns = connections(broken_->commands());
  ASSERT_EQ(conns.size(), 2u) << broken_->log();
  EXPECT_TRUE(has_prefix(conns[0], "STARTTLS"));
  EXPECT_FALSE(has_prefix(conns[0], "MAIL"));
  EXPECT_TRUE(has_prefix(conns[1], "EHLO client.test"));
  EXPECT_FALSE(has_prefix(conns[1], "STARTTLS"));  // offered again, not tried again
  EXPECT_TRUE(has_prefix(conns[1], "MAIL FROM:<alice@acme.example>"));
  EXPECT_TRUE(has_prefix(conns[1], "RCPT TO:<bob@broken.test>"));
  auto messages = broken_->messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_NE(messages[0].find("hello broken.test"), std::string::npos) << messages[0];
}

// mx_tls = "required": the same failure defers, naming TLS, and nothing goes in plaintext.
TEST_F(MxTlsTest, FailedHandshakeUnderRequiredTlsDefersAndSendsNothingInPlaintext) {
  auto o = deliver("broken.test", TlsPolicy::Required);
  EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
  EXPECT_EQ(core::to_string(o.phase), "tls") << describe(o);
  EXPECT_EQ(core::to_string(o.reason), "tls_failed") << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "required");
  EXPECT_EQ(core::to_string(o.tls_fallback), "");
  EXPECT_EQ(reported_, std::vector<std::string>{"validation-failure"});
  auto conns = connections(broken_->commands());
  ASSERT_EQ(conns.size(), 1u) << broken_->log();  // never retried in plaintext
  EXPECT_FALSE(has_prefix(conns[0], "MAIL"));
  EXPECT_EQ(broken_->message_count(), 0u);
}

// A policy that comes with the delivery (MTA-STS enforce, DANE) wins over mx_tls.
TEST_F(MxTlsTest, APolicyGivenWithTheDeliveryIsAppliedAndNamed) {
  auto o = deliver("broken.test", TlsPolicy::Opportunistic, TlsPolicy::MtaSts);
  EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
  EXPECT_EQ(core::to_string(o.reason), "tls_failed") << describe(o);
  EXPECT_EQ(core::to_string(o.tls_policy), "mta-sts");
  EXPECT_EQ(connections(broken_->commands()).size(), 1u) << broken_->log();
  EXPECT_EQ(broken_->message_count(), 0u);
}

// A server that speaks only TLS 1.1: better than plaintext when no policy applies.
TEST_F(MxTlsTest, TlsBelowOnePointTwoIsTakenOpportunisticallyAndRefusedWhenRequired) {
  auto o = deliver("old.test", TlsPolicy::Opportunistic);
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(o.tls_version, "TLSv1.1");
  EXPECT_FALSE(o.tls_cipher.empty());
  EXPECT_EQ(core::to_string(o.tls_policy), "opportunistic");
  EXPECT_EQ(core::to_string(o.tls_fallback), "");
  EXPECT_EQ(old_->messages(), 1u);
  EXPECT_EQ(old_->handshakes(), 1u);
  EXPECT_EQ(reported_, std::vector<std::string>{"success"});

  auto required = deliver("old.test", TlsPolicy::Required);
  EXPECT_EQ(required.status, core::Status::Deferred) << describe(required);
  EXPECT_EQ(core::to_string(required.phase), "tls") << describe(required);
  EXPECT_EQ(core::to_string(required.reason), "tls_failed") << describe(required);
  EXPECT_EQ(core::to_string(required.tls_policy), "required");
  EXPECT_EQ(old_->messages(), 1u);  // nothing more arrived
  EXPECT_EQ(old_->handshakes(), 1u);
}

// TLS-RPT counts sessions: three messages over one connection are one successful session.
TEST_F(MxTlsTest, AReusedConnectionIsReportedOnce) {
  auto o = deliver("old.test", TlsPolicy::Opportunistic, std::nullopt, 3);
  ASSERT_EQ(o.status, core::Status::Delivered) << describe(o);
  EXPECT_EQ(old_->messages(), 3u);
  ASSERT_EQ(old_->handshakes(), 1u);  // reused, else the test proves nothing
  EXPECT_EQ(reported_, std::vector<std::string>{"success"});
}

}  // namespace
}  // namespace deliverd::smtp
