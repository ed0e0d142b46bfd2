// Session against real servers: Postfix's smtp-sink and the scripted server for every fault.
// Timeouts are shortened so each fault ends in well under a second or two.
#include "smtp/session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/metrics.h"
#include "smtp/composer.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"
#include "tests/integration/fixtures/smtp_sink.h"

namespace deliverd::smtp {
namespace {

using deliverd::testing::now_ms;
using deliverd::testing::ScriptedSmtpServer;
using deliverd::testing::SmtpSink;

SessionConfig test_config(uint64_t phase_ms = 3000) {
  SessionConfig cfg;
  cfg.helo_name = "client.test";
  for (auto& ms : cfg.timeouts.ms) ms = phase_ms;
  cfg.total_ms = 20000;
  return cfg;
}

Envelope envelope(std::string message = "Subject: hi\r\n\r\nhello\r\n") {
  return Envelope{"alice@acme.example", "bob@example.org", std::move(message)};
}

struct Run {
  core::Outcome outcome;
  int calls = 0;
  long long elapsed_ms = 0;
};

// Runs one session to completion on a fresh loop. `during` may act on the live session
// (e.g. abort it) from a timer after `during_after_ms`.
Run run_session(int port, const SessionConfig& cfg, Envelope env, std::function<void(Session*)> during = {},
                uint64_t during_after_ms = 0) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", port, &addr);
  Run run;
  long long start = now_ms();
  core::Timer* watchdog = core::Timer::create(&loop);
  core::Timer* poke = during ? core::Timer::create(&loop) : nullptr;
  Session* s = Session::start(&loop, cfg, reinterpret_cast<const sockaddr*>(&addr), "mx.test", std::move(env),
                              [&](const core::Outcome& o) {
                                run.outcome = o;
                                ++run.calls;
                                run.elapsed_ms = now_ms() - start;
                                watchdog->close();
                                if (poke) poke->close();
                              });
  // A hung session must fail the test, not hang it.
  watchdog->start(30000, [&] { s->abort("test watchdog"); });
  if (poke) poke->start(during_after_ms, [&] { during(s); });
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  return run;
}

Run run_scripted(const ScriptedSmtpServer& srv, const SessionConfig& cfg = test_config(), Envelope env = envelope()) {
  return run_session(srv.port(), cfg, std::move(env));
}

bool contains(const std::vector<std::string>& v, const std::string& prefix) {
  for (const auto& s : v)
    if (s.rfind(prefix, 0) == 0) return true;
  return false;
}

TEST(SmtpSession, DeliversToSmtpSink) {
  SmtpSink sink;
  auto run = run_session(sink.port(), test_config(), envelope());
  EXPECT_EQ(run.calls, 1);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << run.outcome.reason << " " << run.outcome.detail;
  EXPECT_EQ(run.outcome.reply.code, 250);
  EXPECT_EQ(to_string(run.outcome.phase), "body");
  EXPECT_EQ(run.outcome.host, "mx.test");
  EXPECT_EQ(run.outcome.ip, "127.0.0.1");
  EXPECT_TRUE(sink.wait_for_messages(1, 10000));
}

TEST(SmtpSession, ComposedMessageArrivesIntactAndParsesCleanly) {
  ScriptedSmtpServer srv;
  MessageSpec m;
  m.from_email = "alice@acme.example";
  m.from_name = "Zo\xc3\xab from Acme";
  m.to_email = "bob@example.org";
  m.to_name = "Smith, Bob";
  m.reply_to = "replies@acme.example";
  m.subject = "R\xc3\xa9sum\xc3\xa9 and a rather long subject line that needs folding across lines \xe2\x82\xac";
  m.text = "Hello Bob,\n.leading dot\n..two dots\n" + std::string(1200, 'x') + "\ncaf\xc3\xa9 = tasty \n.\nbye\n";
  m.headers = {{"X-Campaign-Id", "cmp_1"}};
  auto composed = compose(m, 1700000000);
  ASSERT_TRUE(composed.ok()) << composed.error();

  auto run = run_scripted(srv, test_config(), Envelope{m.from_email, m.to_email, *composed});
  ASSERT_EQ(run.outcome.status, core::Status::Delivered) << run.outcome.reason << " " << run.outcome.detail;
  ASSERT_TRUE(srv.wait_for_messages(1, 5000));
  EXPECT_EQ(srv.messages()[0], *composed);  // dot-stuffing undone by the server gives it back exactly

  auto cmds = srv.commands();
  EXPECT_TRUE(contains(cmds, "EHLO client.test"));
  EXPECT_TRUE(contains(cmds, "MAIL FROM:<alice@acme.example> SIZE="));
  EXPECT_TRUE(contains(cmds, "RCPT TO:<bob@example.org>"));

  deliverd::testing::TempDir dir;
  deliverd::testing::write_file(dir.file("m.eml"), srv.messages()[0]);
  const char* check = R"PY(
import sys, email, email.policy
raw = open(sys.argv[1], 'rb').read()
m = email.message_from_bytes(raw, policy=email.policy.default)
defects = list(m.defects)
for part in m.walk():
    defects += list(part.defects)
for name, value in m.items():
    defects += list(getattr(value, 'defects', []))
assert not defects, defects
assert m['From'].addresses[0].display_name == sys.argv[2], m['From']
assert m['To'].addresses[0].display_name == sys.argv[3], m['To']
assert str(m['Subject']) == sys.argv[4], str(m['Subject'])
assert m.get_content().replace('\r\n', '\n') == sys.argv[5], repr(m.get_content())
assert m['Reply-To'].addresses[0].addr_spec == 'replies@acme.example'
assert m['X-Campaign-Id'] == 'cmp_1'
assert all(len(l) <= 998 for l in raw.split(b'\r\n'))
print('ok')
)PY";
  std::string out;
  int rc = deliverd::testing::run_command(
      {"/usr/bin/python3", "-c", check, dir.file("m.eml"), m.from_name, m.to_name, m.subject, m.text}, &out);
  EXPECT_EQ(rc, 0) << out;
}

TEST(SmtpSession, RecipientRejectedIsBounced) {
  ScriptedSmtpServer srv(R"({"steps": {"RCPT": "550 5.1.1 no such user"}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Bounced);
  EXPECT_EQ(to_string(run.outcome.phase), "rcpt");
  EXPECT_EQ(to_string(run.outcome.reason), "rcpt_rejected");
  EXPECT_EQ(run.outcome.reply.code, 550);
  EXPECT_EQ(run.outcome.reply.enhanced, "5.1.1");
  EXPECT_EQ(run.outcome.reply.text, "no such user");
  EXPECT_EQ(srv.message_count(), 0u);
}

TEST(SmtpSession, RecipientTempfailIsDeferred) {
  ScriptedSmtpServer srv(R"({"steps": {"RCPT": "451 4.3.0 try later"}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "rcpt");
  EXPECT_EQ(run.outcome.reply.code, 451);
  EXPECT_EQ(run.outcome.reply.enhanced, "4.3.0");
}

TEST(SmtpSession, TempfailTwiceThenAccepted) {
  ScriptedSmtpServer srv(R"({"steps": {"RCPT": [{"times": 2, "reply": "451 4.3.0 later"}, {"reply": "250 ok"}]}})");
  EXPECT_EQ(run_scripted(srv).outcome.status, core::Status::Deferred);
  EXPECT_EQ(run_scripted(srv).outcome.status, core::Status::Deferred);
  EXPECT_EQ(run_scripted(srv).outcome.status, core::Status::Delivered);
  EXPECT_EQ(srv.message_count(), 1u);
}

TEST(SmtpSession, ConnectionClosedMidDataIsDeferred) {
  ScriptedSmtpServer srv(R"({"steps": {"BODY": {"action": "close"}}})");
  auto run = run_scripted(srv, test_config(), envelope("Subject: x\r\n\r\n" + std::string(200000, 'y') + "\r\n"));
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "body");
  EXPECT_TRUE(to_string(run.outcome.reason) == "connection_closed" || to_string(run.outcome.reason) == "connection_reset" ||
              to_string(run.outcome.reason) == "io_error")
      << run.outcome.reason;
  EXPECT_EQ(srv.message_count(), 0u);
}

TEST(SmtpSession, SlowBannerTimesOut) {
  ScriptedSmtpServer srv(R"({"steps": {"BANNER": {"delay_ms": 5000, "reply": "220 late"}}})");
  auto cfg = test_config();
  cfg.timeouts[Phase::Banner] = 300;
  auto run = run_scripted(srv, cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "banner");
  EXPECT_EQ(to_string(run.outcome.reason), "timeout");
  EXPECT_LT(run.elapsed_ms, 4500);
}

TEST(SmtpSession, MissingBannerTimesOut) {
  ScriptedSmtpServer srv(R"({"steps": {"BANNER": {"action": "silent"}}})");
  auto cfg = test_config();
  cfg.timeouts[Phase::Banner] = 300;
  auto run = run_scripted(srv, cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "banner");
  EXPECT_EQ(to_string(run.outcome.reason), "timeout");
}

TEST(SmtpSession, RepliesSplitAcrossManyPacketsAreReassembled) {
  ScriptedSmtpServer srv(R"({"steps": {
      "BANNER": {"split": true, "reply": "220 split.test ESMTP"},
      "EHLO": {"split": true, "reply": ["250-split.test", "250-SIZE 1000000", "250 8BITMIME"]},
      "DOT": {"split": true, "reply": "250 2.0.0 queued"}}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << run.outcome.reason << " " << run.outcome.detail;
  EXPECT_EQ(run.outcome.reply.enhanced, "2.0.0");
}

TEST(SmtpSession, MegabyteReplyLineIsAProtocolError) {
  ScriptedSmtpServer srv(R"({"steps": {"EHLO": {"action": "huge_line", "size": 1048576}}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "ehlo");
  EXPECT_EQ(to_string(run.outcome.reason), "protocol_error");
  EXPECT_EQ(run.outcome.detail, "line_too_long");
}

TEST(SmtpSession, EndlessMultilineReplyIsAProtocolError) {
  ScriptedSmtpServer srv(R"({"steps": {"EHLO": {"action": "endless"}}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "ehlo");
  EXPECT_EQ(to_string(run.outcome.reason), "protocol_error");
  EXPECT_EQ(run.outcome.detail, "reply_too_large");
}

TEST(SmtpSession, GarbageBannerIsAProtocolError) {
  ScriptedSmtpServer srv(R"({"steps": {"BANNER": {"action": "garbage"}}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "banner");
  EXPECT_EQ(to_string(run.outcome.reason), "protocol_error");
}

TEST(SmtpSession, ServerClosingAfterEachCommandIsDeferred) {
  ScriptedSmtpServer srv(R"({"steps": {"BANNER": "220 ok"}, "close_after_each_command": true})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "mail");  // EHLO got its reply, then the server hung up
  EXPECT_TRUE(to_string(run.outcome.reason) == "connection_closed" || to_string(run.outcome.reason) == "connection_reset");
}

TEST(SmtpSession, ServerClosingAfterEhloIsDeferredInMail) {
  ScriptedSmtpServer srv(R"({"steps": {"EHLO": {"reply": "250 ok", "close_after": true}}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "mail");
  EXPECT_TRUE(to_string(run.outcome.reason) == "connection_closed" || to_string(run.outcome.reason) == "connection_reset");
}

TEST(SmtpSession, EhloRefusedFallsBackToHelo) {
  ScriptedSmtpServer srv(R"({"steps": {"EHLO": "502 5.5.2 what is EHLO"}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered) << run.outcome.reason;
  auto cmds = srv.commands();
  EXPECT_TRUE(contains(cmds, "HELO client.test"));
  EXPECT_TRUE(contains(cmds, "MAIL FROM:<alice@acme.example>"));
  EXPECT_FALSE(contains(cmds, "MAIL FROM:<alice@acme.example> SIZE="));  // nothing was advertised
}

TEST(SmtpSession, EhloAndHeloRefusedIsFailed) {
  ScriptedSmtpServer srv(R"({"steps": {"EHLO": "500 no", "HELO": "550 5.7.1 go away"}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Failed);
  EXPECT_EQ(to_string(run.outcome.phase), "helo");
  EXPECT_EQ(run.outcome.reply.code, 550);
}

TEST(SmtpSession, EhloTempfailIsDeferred) {
  ScriptedSmtpServer srv(R"({"steps": {"EHLO": "421 4.3.2 busy"}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "ehlo");
}

TEST(SmtpSession, PermanentErrorsBeforeRecipientAreFailed) {
  struct Case {
    const char* script;
    const char* phase;
  };
  for (auto c : {Case{R"({"steps": {"BANNER": "554 5.7.1 no service"}})", "banner"},
                 Case{R"({"steps": {"MAIL": "553 5.1.8 bad sender"}})", "mail"},
                 Case{R"({"steps": {"DATA": "554 5.5.1 no valid recipients"}})", "data"}}) {
    ScriptedSmtpServer srv(c.script);
    auto run = run_scripted(srv);
    EXPECT_EQ(run.outcome.status, core::Status::Failed) << c.phase;
    EXPECT_EQ(to_string(run.outcome.phase), c.phase);
    EXPECT_EQ(to_string(run.outcome.reason), std::string(c.phase) + "_rejected");
  }
}

TEST(SmtpSession, MessageRejectedAfterDataIsBounced) {
  ScriptedSmtpServer srv(R"({"steps": {"DOT": "552 5.3.4 message too big"}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Bounced);
  EXPECT_EQ(to_string(run.outcome.phase), "body");
  EXPECT_EQ(run.outcome.reply.enhanced, "5.3.4");
}

TEST(SmtpSession, TempfailAfterDataIsDeferred) {
  ScriptedSmtpServer srv(R"({"steps": {"DOT": "451 4.3.0 queue full"}})");
  auto run = run_scripted(srv);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "body");
}

TEST(SmtpSession, DeliveredEvenWhenQuitGetsNoReply) {
  ScriptedSmtpServer silent(R"({"steps": {"QUIT": {"action": "silent"}}})");
  auto cfg = test_config();
  cfg.timeouts[Phase::Quit] = 200;
  auto run = run_scripted(silent, cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Delivered);
  EXPECT_EQ(run.outcome.reply.code, 250);

  ScriptedSmtpServer closing(R"({"steps": {"QUIT": {"action": "close"}}})");
  EXPECT_EQ(run_scripted(closing).outcome.status, core::Status::Delivered);
}

TEST(SmtpSession, ConnectionRefusedIsDeferred) {
  int port = deliverd::testing::free_port();  // nothing listens here
  auto run = run_session(port, test_config(), envelope());
  EXPECT_EQ(run.calls, 1);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.phase), "connect");
  EXPECT_EQ(to_string(run.outcome.reason), "connection_refused");
}

TEST(SmtpSession, AbortEndsPromptlyWithDeferred) {
  ScriptedSmtpServer srv(R"({"steps": {"BANNER": {"action": "silent"}}})");
  auto run = run_session(
      srv.port(), test_config(10000), envelope(), [](Session* s) { s->abort("shutting down"); }, 100);
  EXPECT_EQ(run.calls, 1);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.reason), "aborted");
  EXPECT_EQ(run.outcome.detail, "shutting down");
  EXPECT_LT(run.elapsed_ms, 8000);
}

TEST(SmtpSession, TotalSessionTimeBoundsSlowServers) {
  ScriptedSmtpServer srv(R"({"steps": {"MAIL": {"delay_ms": 5000, "reply": "250 ok"}}})");
  auto cfg = test_config(10000);
  cfg.total_ms = 400;
  auto run = run_scripted(srv, cfg);
  EXPECT_EQ(run.outcome.status, core::Status::Deferred);
  EXPECT_EQ(to_string(run.outcome.reason), "session_timeout");
  EXPECT_EQ(to_string(run.outcome.phase), "mail");
}

TEST(SmtpSession, EnvelopeWithCommandInjectionIsRejectedWithoutConnecting) {
  ScriptedSmtpServer srv;
  auto env = envelope();
  env.rcpt_to = "bob@example.org>\r\nRCPT TO:<eve@example.org";
  auto run = run_scripted(srv, test_config(), env);
  EXPECT_EQ(run.outcome.status, core::Status::Rejected);
  EXPECT_EQ(to_string(run.outcome.phase), "envelope");
  EXPECT_FALSE(contains(srv.commands(), "CONNECT"));
}

TEST(SmtpSession, MetricsCountRepliesAndFailures) {
  auto& reg = core::Registry::global();
  auto& failures =
      reg.counter("deliverd_smtp_session_failures_total", "", {"phase", "reason"}).with({"rcpt", "rcpt_rejected"});
  auto& replies = reg.counter("deliverd_smtp_replies_total", "", {"phase", "class"}).with({"rcpt", "5xx"});
  double f0 = failures.value(), r0 = replies.value();
  ScriptedSmtpServer srv(R"({"steps": {"RCPT": "550 5.1.1 no such user"}})");
  run_scripted(srv);
  EXPECT_EQ(failures.value(), f0 + 1);
  EXPECT_EQ(replies.value(), r0 + 1);
  EXPECT_EQ(reg.gauge("deliverd_smtp_sessions_active", "").get().value(), 0);
  EXPECT_NE(reg.render().find("deliverd_smtp_sessions_active"), std::string::npos);
}

TEST(SmtpSession, TwoHundredConcurrentSessionsOnOneLoop) {
  SmtpSink sink;
  uv_loop_t loop;
  uv_loop_init(&loop);
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", sink.port(), &addr);
  constexpr int kSessions = 200;
  int delivered = 0, done = 0;
  std::vector<std::string> problems;
  auto cfg = test_config(20000);
  cfg.total_ms = 60000;
  for (int i = 0; i < kSessions; ++i) {
    Session::start(&loop, cfg, reinterpret_cast<const sockaddr*>(&addr), "sink.test",
                   envelope("Subject: n" + std::to_string(i) + "\r\n\r\nbody " + std::to_string(i) + "\r\n"),
                   [&](const core::Outcome& o) {
                     ++done;
                     if (o.status == core::Status::Delivered)
                       ++delivered;
                     else if (problems.size() < 5)
                       problems.push_back(std::string(to_string(o.phase)) + "/" + std::string(to_string(o.reason)) + ": " + o.detail);
                   });
  }
  EXPECT_EQ(core::Registry::global().gauge("deliverd_smtp_sessions_active", "").get().value(), kSessions);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_EQ(done, kSessions);
  EXPECT_EQ(delivered, kSessions) << (problems.empty() ? "" : problems[0]);
  EXPECT_TRUE(sink.wait_for_messages(kSessions, 30000)) << sink.message_count();
}

}  // namespace
}  // namespace deliverd::smtp
