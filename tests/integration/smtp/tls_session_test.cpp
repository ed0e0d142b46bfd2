// TLS, AUTH and ESMTP extensions against real servers: aiosmtpd (587-style STARTTLS and 465-style
// TLS on connect, AUTH PLAIN/LOGIN/XOAUTH2), the scripted server for TLS faults, and the in-tree
// TLS sink for 2,000 concurrent TLS sessions. Certificates come from a CA made at test time.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tls_context.h"
#include "smtp/session.h"
#include "tests/integration/fixtures/aiosmtpd_server.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/smtp/tls_sink.h"

namespace deliverd::smtp {
namespace {

using deliverd::testing::AiosmtpdServer;
using deliverd::testing::now_ms;
using deliverd::testing::ScriptedSmtpServer;
using deliverd::testing::TestCa;

TestCa& ca() {
  static TestCa* c = new TestCa();  // one CA for the whole binary: key generation is not free
  return *c;
}

std::shared_ptr<core::TlsContext> client_ctx(size_t cache = 64) {
  core::TlsClientOptions o;
  o.ca_file = ca().ca_file();
  o.use_system_roots = false;
  o.session_cache_size = cache;
  auto r = core::TlsContext::client(o);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error());
  return *r;
}

SessionConfig tls_config(Security sec, uint64_t phase_ms = 5000) {
  SessionConfig cfg;
  cfg.helo_name = "client.test";
  for (auto& ms : cfg.timeouts.ms) ms = phase_ms;
  cfg.total_ms = 20000;
  cfg.security = sec;
  cfg.tls = client_ctx();
  cfg.tls_name = "localhost";
  return cfg;
}

Credentials alice(std::string password = "s3cret-pass") { return {"alice@acme.example", std::move(password), ""}; }

Envelope envelope(std::string body = "Subject: hi\r\n\r\nhello over TLS\r\n") {
  return Envelope{"alice@acme.example", "bob@example.org", std::move(body)};
}

struct Run {
  core::Outcome outcome;
  int calls = 0;
  long long elapsed_ms = 0;
};

Run run_session(int port, const SessionConfig& cfg, Envelope env = envelope()) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", port, &addr);
  Run run;
  long long start = now_ms();
  core::Timer* watchdog = core::Timer::create(&loop);
  Session* s = Session::start(&loop, cfg, reinterpret_cast<const sockaddr*>(&addr), "localhost", std::move(env),
                              [&](const core::Outcome& o) {
                                run.outcome = o;
                                ++run.calls;
                                run.elapsed_ms = now_ms() - start;
                                watchdog->close();
                              });
  watchdog->start(30000, [&] { s->abort("test watchdog"); });
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  return run;
}

std::string describe(const core::Outcome& o) {
  return std::string(core::to_string(o.status)) + " " + std::string(core::to_string(o.phase)) + "/" +
         std::string(core::to_string(o.reason)) + " " + std::to_string(o.reply.code) +
         " " + o.detail;
}

bool has_line(const std::vector<std::string>& v, const std::string& prefix) {
  for (const auto& s : v)
    if (s.rfind(prefix, 0) == 0) return true;
  return false;
}

AiosmtpdServer::Options submission(bool implicit = false) {
  AiosmtpdServer::Options o;
  o.cert_file = ca().good().cert_file;
  o.key_file = ca().good().key_file;
  o.implicit_tls = implicit;
  o.oauth_token = "ya29.test-token";
  return o;
}

std::string tls_script(const TestCa::Cert& cert, const std::string& steps = "{}", bool implicit = false) {
  return R"({"tls": {"cert": ")" + cert.cert_file + R"(", "key": ")" + cert.key_file + R"("}, "implicit_tls": )" +
         (implicit ? "true" : "false") + R"(, "steps": )" + steps + "}";
}

TEST(SmtpTls, StartTlsThenAuthPlainDeliversThroughAiosmtpd) {
  AiosmtpdServer srv(submission());
  auto cfg = tls_config(Security::StartTls);
  cfg.auth = alice();
  auto run = run_session(srv.port(), cfg);
  ASSERT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome) << srv.log();
  EXPECT_EQ(to_string(run.outcome.fault), "success");
  EXPECT_FALSE(run.outcome.tls_version.empty());
  EXPECT_FALSE(run.outcome.tls_cipher.empty());
  ASSERT_TRUE(srv.wait_for_messages(1, 5000));
  EXPECT_NE(srv.messages()[0].find("hello over TLS"), std::string::npos);
  EXPECT_TRUE(has_line(srv.auth_log(), "PLAIN alice@acme.example ok"));
  EXPECT_TRUE(has_line(srv.envelope_log(), "alice@acme.example bob@example.org tls=yes"));
}

TEST(SmtpTls, AuthLoginIsUsedWhenPlainIsNotOffered) {
  auto o = submission();
  o.mechanisms = "LOGIN";
  AiosmtpdServer srv(o);
  auto cfg = tls_config(Security::StartTls);
  cfg.auth = alice();
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome);
  EXPECT_TRUE(has_line(srv.auth_log(), "LOGIN alice@acme.example ok"));
}

TEST(SmtpTls, ImplicitTlsWithAuthDelivers) {
  AiosmtpdServer srv(submission(true));
  auto cfg = tls_config(Security::Tls);
  cfg.auth = alice();
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome) << srv.log();
  EXPECT_FALSE(run.outcome.tls_version.empty());
  EXPECT_TRUE(srv.wait_for_messages(1, 5000));
}

TEST(SmtpTls, XOAuth2TokenAuthenticates) {
  AiosmtpdServer srv(submission());
  auto cfg = tls_config(Security::StartTls);
  cfg.auth = Credentials{"alice@acme.example", "", "ya29.test-token"};
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome) << srv.log();
  EXPECT_TRUE(has_line(srv.auth_log(), "XOAUTH2 alice@acme.example ok"));
}

TEST(SmtpTls, RejectedXOAuth2TokenIsAnAuthFailure) {
  AiosmtpdServer srv(submission());
  auto cfg = tls_config(Security::StartTls);
  cfg.auth = Credentials{"alice@acme.example", "", "expired-token"};
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Failed) << describe(run.outcome);
  EXPECT_EQ(to_string(run.outcome.phase), "auth");
  EXPECT_EQ(to_string(run.outcome.reason), "auth_failed");
  EXPECT_EQ(run.outcome.reply.code, 535);
  EXPECT_EQ(to_string(run.outcome.fault), "policy_auth");
  EXPECT_EQ(srv.message_count(), 0u);
}

// RFC 7628: OAUTHBEARER when the server offers it and not XOAUTH2, its error challenge answered
// with ^A so that the server's final 535 decides; tokens are the ones an OAuth endpoint issued
// (the file it writes), and one past its expiry is refused.
TEST(SmtpTls, OAuthBearerIsUsedWhenXOAuth2IsNotOfferedAndExpiredTokensAreRefused) {
  deliverd::testing::TempDir dir("deliverd-oauthbearer");
  const long long now = static_cast<long long>(time(nullptr)) * 1000;
  deliverd::testing::write_file(dir.file("tokens"), "at-live " + std::to_string(now + 600000) + "\nat-old " +
                                                        std::to_string(now - 1000) + "\n");
  auto o = submission();
  o.mechanisms = "PLAIN,OAUTHBEARER";
  o.oauth_token.clear();
  o.oauth_tokens_file = dir.file("tokens");
  AiosmtpdServer srv(o);
  auto cfg = tls_config(Security::StartTls);
  cfg.auth = Credentials{"alice@acme.example", "", "at-live"};
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome) << srv.log();
  EXPECT_TRUE(has_line(srv.auth_log(), "OAUTHBEARER alice@acme.example ok")) << srv.log();

  cfg.auth = Credentials{"alice@acme.example", "", "at-old"};
  run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Failed) << describe(run.outcome);
  EXPECT_EQ(to_string(run.outcome.reason), "auth_failed");
  EXPECT_EQ(run.outcome.reply.code, 535) << describe(run.outcome);
  EXPECT_TRUE(has_line(srv.auth_log(), "OAUTHBEARER alice@acme.example expired")) << srv.log();
  EXPECT_EQ(srv.message_count(), 1u);
}

TEST(SmtpTls, ATokenWithNeitherOAuthMechanismOfferedIsNamed) {
  auto o = submission();
  o.mechanisms = "PLAIN";
  AiosmtpdServer srv(o);
  auto cfg = tls_config(Security::StartTls);
  cfg.auth = Credentials{"alice@acme.example", "", "ya29.test-token"};
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(to_string(run.outcome.reason), "auth_unavailable");
  EXPECT_EQ(run.outcome.detail, "the server offers neither AUTH XOAUTH2 nor OAUTHBEARER");
}

TEST(SmtpTls, WrongPasswordIsAnAuthFailureAndNeverLogged) {
  AiosmtpdServer srv(submission());
  auto cfg = tls_config(Security::StartTls);
  cfg.auth = alice("wrong-password-xyz");
  ::testing::internal::CaptureStderr();
  ::testing::internal::CaptureStdout();
  auto run = run_session(srv.port(), cfg);
  std::string logs = ::testing::internal::GetCapturedStderr() + ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(run.outcome.status, core::Status::Failed) << describe(run.outcome);
  EXPECT_EQ(to_string(run.outcome.phase), "auth");
  EXPECT_EQ(to_string(run.outcome.reason), "auth_failed");
  EXPECT_EQ(run.outcome.reply.code, 535);
  EXPECT_EQ(to_string(run.outcome.fault), "policy_auth");
  EXPECT_EQ(logs.find("wrong-password-xyz"), std::string::npos);
  EXPECT_EQ(run.outcome.detail.find("wrong-password-xyz"), std::string::npos);
  EXPECT_TRUE(has_line(srv.auth_log(), "PLAIN alice@acme.example fail"));
}

TEST(SmtpTls, NoUsableAuthMechanismFails) {
  auto o = submission();
  o.mechanisms = "XOAUTH2";
  AiosmtpdServer srv(o);
  auto cfg = tls_config(Security::StartTls);
  cfg.auth = alice();
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Failed);
  EXPECT_EQ(to_string(run.outcome.reason), "auth_unavailable");
  EXPECT_EQ(to_string(run.outcome.fault), "policy_auth");
}

TEST(SmtpTls, CertificateForTheWrongNameIsRefused) {
  ScriptedSmtpServer srv(tls_script(ca().wrong_name()));
  auto run = run_session(srv.port(), tls_config(Security::StartTls));
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "tls");
  EXPECT_EQ(to_string(run.outcome.reason), "tls_certificate") << run.outcome.detail;
  EXPECT_NE(run.outcome.detail.find("hostname mismatch"), std::string::npos) << run.outcome.detail;
  EXPECT_EQ(srv.message_count(), 0u);
}

TEST(SmtpTls, ExpiredCertificateIsRefused) {
  ScriptedSmtpServer srv(tls_script(ca().expired(), "{}", true));
  auto run = run_session(srv.port(), tls_config(Security::Tls));
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "tls");
  EXPECT_EQ(to_string(run.outcome.reason), "tls_certificate");
  EXPECT_NE(run.outcome.detail.find("expired"), std::string::npos) << run.outcome.detail;
}

TEST(SmtpTls, UntrustedCertificateIsRefusedAndOpportunisticTlsAcceptsIt) {
  // A client that does not trust the test CA: verification must fail.
  core::TlsClientOptions o;
  o.use_system_roots = true;
  auto untrusting = core::TlsContext::client(o);
  ASSERT_TRUE(untrusting.ok());
  ScriptedSmtpServer srv(tls_script(ca().good()));
  auto cfg = tls_config(Security::StartTls);
  cfg.tls = *untrusting;
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(to_string(run.outcome.reason), "tls_certificate") << describe(run.outcome);
  // MX-style opportunistic TLS encrypts without verifying.
  cfg.tls_policy = TlsPolicy::Opportunistic;
  cfg.relay = false;
  run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome);
  EXPECT_FALSE(run.outcome.tls_version.empty());
  EXPECT_EQ(core::to_string(run.outcome.tls_policy), "opportunistic");
}

TEST(SmtpTls, StalledStartTlsHandshakeTimesOut) {
  ScriptedSmtpServer srv(tls_script(ca().good(), R"({"STARTTLS": {"action": "stall_tls"}})"));
  auto cfg = tls_config(Security::StartTls);
  cfg.timeouts[Phase::Tls] = 300;
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "tls");
  EXPECT_EQ(to_string(run.outcome.reason), "timeout");
  EXPECT_LT(run.elapsed_ms, 4500);
}

TEST(SmtpTls, StalledImplicitTlsHandshakeTimesOut) {
  ScriptedSmtpServer srv(R"({"tls_stall": true, "implicit_tls": true})");
  auto cfg = tls_config(Security::Tls);
  cfg.timeouts[Phase::Tls] = 300;
  auto run = run_session(srv.port(), cfg);
  EXPECT_EQ(to_string(run.outcome.phase), "tls");
  EXPECT_EQ(to_string(run.outcome.reason), "timeout");
}

TEST(SmtpTls, GarbageInsteadOfTlsIsATlsFailure) {
  ScriptedSmtpServer srv(tls_script(ca().good(), R"({"STARTTLS": {"action": "garbage_tls"}})"));
  auto run = run_session(srv.port(), tls_config(Security::StartTls));
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  // Normally the garbage arrives during the handshake; should it share a packet with the 220, it
  // is refused earlier as bytes behind the STARTTLS reply. Either way nothing is sent in the clear.
  if (to_string(run.outcome.phase) == "starttls") {
    EXPECT_EQ(to_string(run.outcome.reason), "protocol_error");
  } else {
    EXPECT_EQ(to_string(run.outcome.phase), "tls");
    EXPECT_EQ(to_string(run.outcome.reason), "tls_failed") << run.outcome.detail;
  }
  EXPECT_FALSE(has_line(srv.commands(), "MAIL"));
}

TEST(SmtpTls, StartTlsAdvertisedThenRefused) {
  ScriptedSmtpServer srv(
      tls_script(ca().good(), R"({"STARTTLS": "454 4.7.0 TLS not available due to temporary reason"})"));
  auto run = run_session(srv.port(), tls_config(Security::StartTls));
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "starttls");
  EXPECT_EQ(to_string(run.outcome.reason), "starttls_failed");
  EXPECT_EQ(srv.message_count(), 0u);
  // Opportunistic: carry on in plaintext.
  auto cfg = tls_config(Security::StartTls);
  cfg.tls_policy = TlsPolicy::Opportunistic;
  cfg.relay = false;
  run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome);
  EXPECT_TRUE(run.outcome.tls_version.empty());
  EXPECT_EQ(core::to_string(run.outcome.tls_policy), "opportunistic");
  EXPECT_EQ(core::to_string(run.outcome.tls_fallback), "starttls_refused");
  EXPECT_EQ(srv.message_count(), 1u);
}

// A 5xx to STARTTLS is as much a "no TLS here" as a 4xx: opportunistic goes on in plaintext on the
// same connection, as Postfix's "may" does; required never does.
TEST(SmtpTls, PermanentStartTlsRefusalContinuesInPlaintextOnlyOpportunistically) {
  ScriptedSmtpServer srv(tls_script(ca().good(), R"({"STARTTLS": "554 5.7.3 TLS not available"})"));
  auto cfg = tls_config(Security::StartTls);
  cfg.relay = false;
  auto run = run_session(srv.port(), cfg);
  EXPECT_NE(run.outcome.status, core::Status::Delivered) << describe(run.outcome);
  EXPECT_EQ(to_string(run.outcome.reason), "starttls_failed");
  EXPECT_EQ(core::to_string(run.outcome.tls_policy), "required");
  EXPECT_EQ(srv.message_count(), 0u);
  cfg.tls_policy = TlsPolicy::Opportunistic;
  run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome);
  EXPECT_EQ(core::to_string(run.outcome.tls_fallback), "starttls_refused");
  ASSERT_EQ(srv.message_count(), 1u);
  EXPECT_NE(srv.messages()[0].find("hello over TLS"), std::string::npos);
}

// The policy every relay outcome names: "required" for a mailbox's server with TLS (always
// verified), "none" for a lab mailbox in plaintext.
TEST(SmtpTls, RelayOutcomesNameRequiredOrNone) {
  ScriptedSmtpServer srv(tls_script(ca().good()));
  auto run = run_session(srv.port(), submission_config(tls_config(Security::None), Security::StartTls, {}));
  ASSERT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome);
  EXPECT_EQ(core::to_string(run.outcome.tls_policy), "required");
  EXPECT_FALSE(run.outcome.tls_version.empty());
  EXPECT_EQ(core::to_string(run.outcome.tls_fallback), "");
  ScriptedSmtpServer plain;
  run = run_session(plain.port(), submission_config(tls_config(Security::None), Security::None, {}));
  ASSERT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome);
  EXPECT_EQ(core::to_string(run.outcome.tls_policy), "none");
  EXPECT_TRUE(run.outcome.tls_version.empty());
}

TEST(SmtpTls, RequiredStartTlsNotOfferedFailsClearly) {
  ScriptedSmtpServer srv;  // no STARTTLS in EHLO
  auto run = run_session(srv.port(), tls_config(Security::StartTls));
  EXPECT_EQ(run.outcome.status, core::Status::Failed);
  EXPECT_EQ(to_string(run.outcome.phase), "ehlo");
  EXPECT_EQ(to_string(run.outcome.reason), "starttls_unavailable");
  EXPECT_EQ(srv.message_count(), 0u);
  auto cfg = tls_config(Security::StartTls);
  cfg.relay = false;  // MX mode, policy required: deferred, the destination may fix it
  run = run_session(srv.port(), cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.reason), "starttls_unavailable");
}

TEST(SmtpTls, BytesInjectedAfterStartTlsReplyAreRefused) {
  ScriptedSmtpServer srv(tls_script(ca().good(), R"({"STARTTLS": "220 go ahead\n250 injected"})"));
  auto run = run_session(srv.port(), tls_config(Security::StartTls));
  EXPECT_EQ(to_string(run.outcome.phase), "starttls");
  EXPECT_EQ(to_string(run.outcome.reason), "protocol_error");
}

TEST(SmtpTls, EhloIsRepeatedAfterStartTlsAndNothingIsPipelinedAcrossIt) {
  ScriptedSmtpServer srv(tls_script(ca().good()));
  auto run = run_session(srv.port(), tls_config(Security::StartTls));
  ASSERT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome) << srv.log();
  auto cmds = srv.commands();
  ASSERT_GE(cmds.size(), 5u);
  EXPECT_EQ(cmds[1].rfind("EHLO", 0), 0u);
  EXPECT_EQ(cmds[2], "STARTTLS");
  EXPECT_EQ(cmds[3].rfind("EHLO", 0), 0u);  // knowledge from before TLS was discarded
  EXPECT_EQ(cmds[4].rfind("MAIL FROM:", 0), 0u);
}

TEST(SmtpTls, PeerDroppingWithoutCloseNotifyIsAPlainClose) {
  // After the 250 for ".": the message is delivered, whatever happens to QUIT.
  ScriptedSmtpServer quit_drop(tls_script(ca().good(), R"({"QUIT": {"action": "abort"}})"));
  auto run = run_session(quit_drop.port(), tls_config(Security::StartTls));
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome);
  // Mid-payload: deferred, named like any other dropped connection.
  ScriptedSmtpServer body_drop(tls_script(ca().good(), R"({"BODY": {"action": "abort"}})"));
  run = run_session(body_drop.port(), tls_config(Security::StartTls),
                    envelope("Subject: x\r\n\r\n" + std::string(100000, 'y') + "\r\n"));
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "body");
  EXPECT_TRUE(to_string(run.outcome.reason) == "connection_closed" || to_string(run.outcome.reason) == "connection_reset" ||
              to_string(run.outcome.reason) == "io_error")
      << describe(run.outcome);
  EXPECT_EQ(body_drop.message_count(), 0u);
}

TEST(SmtpTls, SessionResumptionCacheIsFilledPerHost) {
  AiosmtpdServer srv(submission(true));
  auto cfg = tls_config(Security::Tls);
  auto ctx = cfg.tls;
  EXPECT_EQ(ctx->cached_sessions(), 0u);
  EXPECT_EQ(run_session(srv.port(), cfg).outcome.status, core::Status::Delivered);
  EXPECT_EQ(ctx->cached_sessions(), 1u);
  EXPECT_EQ(run_session(srv.port(), cfg).outcome.status, core::Status::Delivered);
  EXPECT_EQ(ctx->cached_sessions(), 1u);
}

TEST(SmtpEsmtp, OversizedMessageIsRefusedBeforeMail) {
  ScriptedSmtpServer srv(R"({"steps": {"EHLO": ["250-x", "250-SIZE 1000", "250 PIPELINING"]}})");
  SessionConfig cfg = tls_config(Security::None);
  auto run = run_session(srv.port(), cfg, envelope("Subject: big\r\n\r\n" + std::string(5000, 'z') + "\r\n"));
  EXPECT_EQ(run.outcome.status, core::Status::Bounced);
  EXPECT_EQ(to_string(run.outcome.reason), "message_too_large");
  EXPECT_FALSE(has_line(srv.commands(), "MAIL"));
}

TEST(SmtpEsmtp, Utf8EnvelopeNeedsSmtpUtf8) {
  ScriptedSmtpServer plain;
  auto env = envelope();
  env.rcpt_to = "j\xc3\xb6rg@example.org";
  auto run = run_session(plain.port(), tls_config(Security::None), env);
  EXPECT_EQ(run.outcome.status, core::Status::Bounced);
  EXPECT_EQ(to_string(run.outcome.reason), "smtputf8_unsupported");
  EXPECT_FALSE(has_line(plain.commands(), "MAIL"));

  ScriptedSmtpServer utf8(R"({"steps": {"EHLO": ["250-x", "250-SMTPUTF8", "250 8BITMIME"]}})");
  run = run_session(utf8.port(), tls_config(Security::None), env);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << describe(run.outcome);
  EXPECT_TRUE(has_line(utf8.commands(), "MAIL FROM:<alice@acme.example> SMTPUTF8"));
}

TEST(SmtpEsmtp, PipelinedRecipientRejectionIsABounce) {
  ScriptedSmtpServer srv(R"({"steps": {"RCPT": "550 5.1.1 no such user", "DATA": "554 5.5.1 no valid recipients"}})");
  auto run = run_session(srv.port(), tls_config(Security::None));
  EXPECT_EQ(run.outcome.status, core::Status::Bounced);
  EXPECT_EQ(to_string(run.outcome.phase), "rcpt");
  EXPECT_EQ(to_string(run.outcome.fault), "recipient_permanent");
}

TEST(SmtpEsmtp, ProviderQuotaReplyIsAMailboxFaultNotABounce) {
  ScriptedSmtpServer srv(R"({"steps": {"RCPT": "550 5.4.5 Daily user sending quota exceeded."}})");
  auto run = run_session(srv.port(), tls_config(Security::None));
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.fault), "mailbox");
}

TEST(SmtpTls, FaultySessionsDoNotDisturbOthersOnTheSameLoop) {
  ScriptedSmtpServer stall(tls_script(ca().good(), R"({"STARTTLS": {"action": "stall_tls"}})"));
  ScriptedSmtpServer garbage(R"({"steps": {"EHLO": {"action": "huge_line", "size": 1048576}}})");
  AiosmtpdServer good(submission());
  uv_loop_t loop;
  uv_loop_init(&loop);
  auto start = [&](int port, SessionConfig cfg, std::vector<core::Outcome>* out) {
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", port, &addr);
    Session::start(&loop, cfg, reinterpret_cast<const sockaddr*>(&addr), "localhost", envelope(),
                   [out](const core::Outcome& o) { out->push_back(o); });
  };
  std::vector<core::Outcome> bad, ok;
  auto slow = tls_config(Security::StartTls, 5000);
  slow.timeouts[Phase::Tls] = 1500;
  for (int i = 0; i < 3; ++i) start(stall.port(), slow, &bad);
  for (int i = 0; i < 3; ++i) start(garbage.port(), tls_config(Security::None), &bad);
  auto authed = tls_config(Security::StartTls);
  authed.auth = alice();
  for (int i = 0; i < 5; ++i) start(good.port(), authed, &ok);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  ASSERT_EQ(ok.size(), 5u);
  for (const auto& o : ok) EXPECT_EQ(o.status, core::Status::Delivered) << describe(o);
  ASSERT_EQ(bad.size(), 6u);
  for (const auto& o : bad) EXPECT_EQ(o.status, core::Status::Deferred) << describe(o);
}

TEST(SmtpTls, TwoThousandConcurrentTlsSessions) {
  constexpr int kSessions = 2000;
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rlim_t want = 3 * kSessions + 256;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = std::min<rlim_t>(want, rl.rlim_max);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  ASSERT_GE(rl.rlim_cur, static_cast<rlim_t>(2 * kSessions + 64)) << "cannot raise RLIMIT_NOFILE";
  deliverd::testing::TlsSink sink(ca().good().cert_file, ca().good().key_file,
                                  deliverd::testing::TlsSink::Mode::StartTls);
  uv_loop_t loop;
  uv_loop_init(&loop);
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", sink.port(), &addr);
  auto cfg = tls_config(Security::StartTls, 60000);
  cfg.total_ms = 120000;
  int done = 0, delivered = 0;
  size_t peak = 0;
  std::vector<std::string> problems;
  for (int i = 0; i < kSessions; ++i) {
    Session::start(&loop, cfg, reinterpret_cast<const sockaddr*>(&addr), "localhost",
                   envelope("Subject: n" + std::to_string(i) + "\r\n\r\nbody\r\n"), [&](const core::Outcome& o) {
                     if (done == 0) peak = sink.open_connections();
                     ++done;
                     if (o.status == core::Status::Delivered)
                       ++delivered;
                     else if (problems.size() < 5)
                       problems.push_back(describe(o));
                   });
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_EQ(done, kSessions);
  EXPECT_EQ(delivered, kSessions) << (problems.empty() ? "" : problems[0]);
  EXPECT_EQ(sink.messages(), static_cast<size_t>(kSessions));
  EXPECT_EQ(sink.handshakes(), static_cast<size_t>(kSessions));
  // All of them were open at once before the first one finished (connects are not throttled).
  EXPECT_GT(peak, static_cast<size_t>(kSessions / 2));
}

}  // namespace
}  // namespace deliverd::smtp
