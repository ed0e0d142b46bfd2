// The walking skeleton end to end: jobs on a real Redis stream, mailboxes in a real PostgreSQL,
// delivered by the real deliverd binary to real SMTP peers, outcomes read back from Redis.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <thread>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/aiosmtpd_server.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"
#include "tests/integration/fixtures/smtp_sink.h"
#include "tests/integration/fixtures/test_ca.h"

using namespace deliverd::testing;

namespace {

constexpr int kMailPort = 2525;  // a port the port policy allows; peers differ by loopback address

bool wait_for_len(RedisServer& redis, const std::string& stream, long long n, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  while (redis.xlen(stream) < n) {
    if (now_ms() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace

class EndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    redis_ = std::make_unique<RedisServer>();
    pg_ = std::make_unique<PostgresServer>();
    sink_ = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
    rcpt550_ = start_scripted(R"({"steps": {"RCPT": "550 5.1.1 <bob@example.org>: no such user"}})");
    rcpt451_ = start_scripted(R"({"steps": {"RCPT": "451 4.3.0 try again later"}})");
    drop_data_ = start_scripted(R"({"steps": {"BODY": {"action": "close"}}})");

    DeliverdProcess::Options o;
    o.redis_port = redis_->port();
    o.pg_conninfo = pg_->conninfo();
    daemon_ = std::make_unique<DeliverdProcess>(o);
    std::string out;
    ASSERT_EQ(daemon_->cli({"migrate"}, &out), 0) << out;
    daemon_->add_mailbox("mbx_sink", "acct_1", "alice@acme.example", sink_->host(), kMailPort);
    daemon_->add_mailbox("mbx_550", "acct_1", "alice@acme.example", rcpt550_->host(), kMailPort);
    daemon_->add_mailbox("mbx_451", "acct_1", "alice@acme.example", rcpt451_->host(), kMailPort);
    daemon_->add_mailbox("mbx_drop", "acct_1", "alice@acme.example", drop_data_->host(), kMailPort);
    daemon_->start();
  }

  static std::unique_ptr<ScriptedSmtpServer> start_scripted(const std::string& script) {
    ScriptedSmtpServer::Options so;
    so.host = free_loopback_ip(kMailPort);
    so.port = kMailPort;
    return std::make_unique<ScriptedSmtpServer>(script, so);
  }

  static void TearDownTestSuite() {
    if (daemon_ && daemon_->running()) {
      EXPECT_EQ(daemon_->stop(SIGTERM), 0) << daemon_->log();
    }
    daemon_.reset();
    sink_.reset();
    rcpt550_.reset();
    rcpt451_.reset();
    drop_data_.reset();
    pg_.reset();
    redis_.reset();
  }

  ResultEvent outcome_of(const std::string& job_json, const std::string& id) {
    redis_->xadd_job("deliverd:jobs", job_json);
    auto all = wait_for_events(*redis_, {id}, 30000);
    EXPECT_TRUE(all.count(id)) << "no outcome for " << id << "\n" << daemon_->log();
    return all[id];
  }

  static std::unique_ptr<RedisServer> redis_;
  static std::unique_ptr<PostgresServer> pg_;
  static std::unique_ptr<SmtpSink> sink_;
  static std::unique_ptr<ScriptedSmtpServer> rcpt550_, rcpt451_, drop_data_;
  static std::unique_ptr<DeliverdProcess> daemon_;
};

std::unique_ptr<RedisServer> EndToEnd::redis_;
std::unique_ptr<PostgresServer> EndToEnd::pg_;
std::unique_ptr<SmtpSink> EndToEnd::sink_;
std::unique_ptr<ScriptedSmtpServer> EndToEnd::rcpt550_, EndToEnd::rcpt451_, EndToEnd::drop_data_;
std::unique_ptr<DeliverdProcess> EndToEnd::daemon_;

TEST_F(EndToEnd, ThousandJobsAreDeliveredToSmtpSinkAndReported) {
  size_t before = sink_->message_count();
  std::vector<std::string> jobs, ids;
  for (int i = 0; i < 1000; ++i) {
    ids.push_back("bulk-" + std::to_string(i));
    jobs.push_back(make_job(ids.back(), "acct_1", "mbx_sink", "rcpt" + std::to_string(i) + "@example.org"));
  }
  redis_->xadd_jobs("deliverd:jobs", jobs);
  auto all = wait_for_events(*redis_, ids, 120000);
  size_t delivered = 0;
  for (const auto& id : ids)
    if (all.count(id) && all[id].status == "delivered") ++delivered;
  EXPECT_EQ(delivered, 1000u) << daemon_->log().substr(0, 4000);
  EXPECT_TRUE(sink_->wait_for_messages(before + 1000, 10000));
  EXPECT_EQ(sink_->message_count(), before + 1000);
  EXPECT_EQ(redis_->xpending_count("deliverd:jobs", "deliverd"), 0);
  // One log line a delivery, the delivery's own (the SMTP transaction's is at debug).
  const std::string log = daemon_->log();
  size_t lines = 0;
  for (size_t at = 0; (at = log.find(" event=delivery job=bulk-", at)) != std::string::npos; ++at) ++lines;
  EXPECT_EQ(lines, 1000u);
  EXPECT_EQ(log.find("smtp_transaction_end"), std::string::npos);
}

namespace {

// calls=N of one command in INFO commandstats (0 when it was not run).
long long command_calls(const std::string& stats, const std::string& command) {
  const std::string tag = "cmdstat_" + command + ":calls=";
  size_t at = stats.find(tag);
  return at == std::string::npos ? 0 : std::atoll(stats.c_str() + at + tag.size());
}

}  // namespace

// Issue 19: a delivered message costs two script calls, the admit (which reads the marker) and
// the publish with the learn in it. Besides the messages, the daemon's own timers run scripts
// (the retry set's poll every second): at most two a second of the run, plus five, are allowed
// for them.
TEST_F(EndToEnd, ADeliveredMessageCostsAtMostTwoScriptCalls) {
  constexpr int kJobs = 300;
  std::vector<std::string> jobs, ids;
  for (int i = 0; i < kJobs; ++i) {
    ids.push_back("cost-" + std::to_string(i));
    jobs.push_back(make_job(ids.back(), "acct_1", "mbx_sink", "cost" + std::to_string(i) + "@example.org"));
  }
  // Every script the run uses is loaded first, so no NOSCRIPT round (EVAL) counts in the run.
  ResultEvent warm = outcome_of(make_job("cost-warm", "acct_1", "mbx_sink", "warm@example.org"), "cost-warm");
  ASSERT_EQ(warm.status, "delivered");
  redis_->command({"CONFIG", "RESETSTAT"});
  const long long t0 = now_ms();
  redis_->xadd_jobs("deliverd:jobs", jobs);
  auto all = wait_for_events(*redis_, ids, 120000);
  const long long elapsed_s = (now_ms() - t0) / 1000 + 1;
  const std::string stats = redis_->command({"INFO", "commandstats"});
  size_t delivered = 0;
  for (const auto& id : ids)
    if (all.count(id) && all[id].status == "delivered") ++delivered;
  ASSERT_EQ(delivered, static_cast<size_t>(kJobs)) << daemon_->log().substr(0, 4000);
  const long long scripts = command_calls(stats, "evalsha") + command_calls(stats, "eval");
  std::printf("%d delivered in about %lld s: %lld script calls (%.2f a message)\n", kJobs, elapsed_s, scripts,
              static_cast<double>(scripts) / kJobs);
  EXPECT_LE(scripts, 2LL * kJobs + 2 * elapsed_s + 5) << stats;
  EXPECT_GE(scripts, 2LL * kJobs) << "the admit and the publish are scripts: " << stats;
}

TEST_F(EndToEnd, InvalidJsonJobIsDeadLetteredAckedAndDaemonKeepsGoing) {
  long long dead_before = redis_->xlen("deliverd:dead");
  redis_->xadd_job("deliverd:jobs", "{\"v\":1, this is not json");
  ASSERT_TRUE(wait_for_len(*redis_, "deliverd:dead", dead_before + 1, 15000)) << daemon_->log();
  auto dead = redis_->xrange("deliverd:dead");
  ASSERT_FALSE(dead.empty());
  EXPECT_FALSE(dead.back().fields["reason"].empty());
  EXPECT_EQ(dead.back().fields["job"], "{\"v\":1, this is not json");

  ResultEvent e = outcome_of(make_job("after-bad", "acct_1", "mbx_sink", "bob@example.org"), "after-bad");
  EXPECT_EQ(e.status, "delivered");
  EXPECT_TRUE(daemon_->running());
}

TEST_F(EndToEnd, JobMissingRequiredFieldNamesTheField) {
  long long dead_before = redis_->xlen("deliverd:dead");
  redis_->xadd_job("deliverd:jobs",
                   R"({"v":1,"id":"no-to","account":"acct_1","mailbox":"mbx_sink","subject":"x","text":"y"})");
  ASSERT_TRUE(wait_for_len(*redis_, "deliverd:dead", dead_before + 1, 15000));
  auto dead = redis_->xrange("deliverd:dead");
  ASSERT_FALSE(dead.empty());
  EXPECT_NE(dead.back().fields["reason"].find("to"), std::string::npos) << dead.back().fields["reason"];
}

TEST_F(EndToEnd, UnknownMailboxIsRejected) {
  ResultEvent e = outcome_of(make_job("unknown-mbx", "acct_1", "mbx_nope", "bob@example.org"), "unknown-mbx");
  EXPECT_EQ(e.status, "rejected");
  EXPECT_EQ(e.reason, "unknown_mailbox");
}

TEST_F(EndToEnd, PermanentRcptFailureBounces) {
  ResultEvent e = outcome_of(make_job("rcpt-550", "acct_1", "mbx_550", "bob@example.org"), "rcpt-550");
  EXPECT_EQ(e.status, "bounced");
  EXPECT_EQ(e.phase, "rcpt");
  EXPECT_EQ(e.code, 550);
  EXPECT_EQ(e.enhanced, "5.1.1");
}

TEST_F(EndToEnd, TransientRcptFailureDefers) {
  ResultEvent e = outcome_of(make_job("rcpt-451", "acct_1", "mbx_451", "carol@example.org"), "rcpt-451");
  EXPECT_EQ(e.status, "deferred");
  EXPECT_EQ(e.phase, "rcpt");
  EXPECT_EQ(e.code, 451);
}

TEST_F(EndToEnd, ServerClosingMidDataDefers) {
  ResultEvent e = outcome_of(make_job("drop-data", "acct_1", "mbx_drop", "dave@example.org"), "drop-data");
  EXPECT_EQ(e.status, "deferred");
  EXPECT_TRUE(e.phase == "data" || e.phase == "body") << e.phase;
}

TEST_F(EndToEnd, MetricsAreValidPrometheusText) {
  int status = 0;
  std::string metrics = daemon_->http_get("/metrics", &status);
  ASSERT_EQ(status, 200);
  for (const char* name : {"deliverd_jobs_consumed_total", "deliverd_outcomes_total", "deliverd_smtp_sessions_active",
                           "deliverd_delivery_duration_seconds_bucket"})
    EXPECT_NE(metrics.find(name), std::string::npos) << name;
  TempDir dir("deliverd-metrics");
  write_file(dir.file("metrics.txt"), metrics);
  std::string out;
  EXPECT_EQ(run_command({"sh", "-c", "promtool check metrics < " + dir.file("metrics.txt")}, &out), 0) << out;
  EXPECT_EQ(daemon_->http_get("/healthz", &status).empty(), false);
  EXPECT_EQ(status, 200);
}

// A daemon with no allow list: the same loopback peer is now an SSRF target and must be refused.
TEST(EndToEndNoAllowList, LoopbackTargetIsRejectedAndNothingIsSent) {
  SmtpSink sink(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack([](DeliverdProcess::Options& o) { o.allow_private_targets = {}; });
  RedisServer& redis = stack.redis;
  DeliverdProcess& d = stack.daemon();
  d.add_mailbox("mbx_lo", "acct_1", "alice@acme.example", sink.host(), kMailPort);
  d.start();
  redis.xadd_job("deliverd:jobs", make_job("ssrf-1", "acct_1", "mbx_lo", "bob@example.org"));
  auto all = wait_for_events(redis, {"ssrf-1"}, 20000);
  ASSERT_TRUE(all.count("ssrf-1")) << d.log();
  EXPECT_EQ(all["ssrf-1"].status, "rejected");
  EXPECT_EQ(all["ssrf-1"].reason, "ssrf_refused");
  EXPECT_EQ(sink.message_count(), 0u);
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

// SIGTERM while deliveries are in flight against a slow server: they finish, are acked, exit 0.
TEST(EndToEndShutdown, SigtermFinishesInFlightDeliveriesAndExitsZero) {
  SmtpSink::Options so = SmtpSink::Options::at_mail_port(kMailPort);
  so.extra_args = {"-w", "3"};  // three seconds before each DATA reply
  SmtpSink sink(so);
  DaemonStack stack;
  RedisServer& redis = stack.redis;
  DeliverdProcess& d = stack.daemon();
  d.add_mailbox("mbx_slow", "acct_1", "alice@acme.example", sink.host(), kMailPort);
  d.start();
  std::vector<std::string> jobs, ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back("slow-" + std::to_string(i));
    jobs.push_back(make_job(ids.back(), "acct_1", "mbx_slow", "bob@example.org"));
  }
  redis.xadd_jobs("deliverd:jobs", jobs);
  // Wait until the daemon itself holds the jobs (read and in delivery, none finished yet: the
  // sink waits three seconds before each DATA reply), then stop it. The sample that ended the
  // wait is the one checked: a second read could already see the first deliveries done.
  long long deadline = now_ms() + 10000;
  double inflight = 0;
  while ((inflight = d.metric("deliverd_queue_inflight")) < 20 && now_ms() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(inflight, 20) << d.log();
  EXPECT_EQ(d.stop(SIGTERM, 30000), 0) << d.log();
  auto all = events_by_job(redis);
  size_t delivered = 0;
  for (const auto& id : ids) delivered += all.count(id) && all[id].status == "delivered";
  EXPECT_EQ(delivered, 20u) << d.log();
  EXPECT_EQ(redis.xpending_count("deliverd:jobs", "deliverd"), 0);
}

// Issue 3: a mailbox on a 587-style submission server (STARTTLS required, AUTH PLAIN) whose
// certificate is checked against [smtp] ca_file; consecutive jobs reuse pooled connections.
TEST(EndToEndTls, StartTlsAndAuthDeliveryThroughAiosmtpd) {
  TestCa ca;
  std::string ip = free_loopback_ip(kMailPort);
  auto cert = ca.issue("mail", {ip}, 2);
  AiosmtpdServer::Options ao;
  ao.host = ip;
  ao.port = kMailPort;
  ao.cert_file = cert.cert_file;
  ao.key_file = cert.key_file;
  ao.auth_required = true;
  AiosmtpdServer smtp(ao);
  DaemonStack stack(
      [&](DeliverdProcess::Options& o) { o.extra_toml = "ca_file = \"" + ca.ca_file() + "\"\nidle_timeout_s = 5\n"; });
  RedisServer& redis = stack.redis;
  DeliverdProcess& d = stack.daemon();
  std::string out;
  TempDir dir;
  write_file(dir.file("pw"), ao.password + "\n");
  ASSERT_EQ(d.cli({"mailbox", "add", "--id", "mbx_tls", "--account", "acct_1", "--email", "alice@acme.example",
                   "--smtp-host", ip, "--smtp-port", std::to_string(kMailPort), "--security", "starttls", "--username",
                   ao.user, "--password-file", dir.file("pw")},
                  &out),
            0)
      << out;
  d.start();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back("tls-" + std::to_string(i));
    redis.xadd_job("deliverd:jobs", make_job(ids.back(), "acct_1", "mbx_tls", "bob@example.org"));
    auto all = wait_for_events(redis, {ids.back()}, 30000);
    ASSERT_TRUE(all.count(ids.back())) << d.log();
    EXPECT_EQ(all[ids.back()].status, "delivered") << all[ids.back()].reason << " " << all[ids.back()].detail;
  }
  EXPECT_TRUE(smtp.wait_for_messages(3, 5000));
  for (const auto& line : smtp.envelope_log()) EXPECT_NE(line.find("tls=yes"), std::string::npos) << line;
  // One job after another on one mailbox: one connection, one AUTH.
  EXPECT_EQ(smtp.auth_log(), std::vector<std::string>{"PLAIN alice@acme.example ok"});
  EXPECT_EQ(d.log().find(ao.password), std::string::npos);
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

// Issue 3: an XOAUTH2 mailbox on a 465-style (TLS on connect) server, and a mailbox in MX mode whose
// recipient domain's MX (served by dnsmasq) points at a scripted server on the [smtp] mx_port.
TEST(EndToEndTls, XOAuth2OverImplicitTlsAndMxMode) {
  TestCa ca;
  std::string tls_ip = free_loopback_ip(kMailPort);
  auto cert = ca.issue("mail465", {tls_ip}, 2);
  AiosmtpdServer::Options ao;
  ao.host = tls_ip;
  ao.port = kMailPort;
  ao.cert_file = cert.cert_file;
  ao.key_file = cert.key_file;
  ao.implicit_tls = true;
  ao.oauth_token = "ya29.daemon-token";
  ao.mechanisms = "XOAUTH2";
  ao.auth_required = true;
  AiosmtpdServer smtp(ao);
  std::string mx_ip = free_loopback_ip(kMailPort);
  while (mx_ip == tls_ip) mx_ip = free_loopback_ip(kMailPort);
  ScriptedSmtpServer::Options so;
  so.host = mx_ip;
  so.port = kMailPort;
  ScriptedSmtpServer mx("{}", so);
  DnsServer::Options dso;
  dso.records = {DnsServer::mx("mxdomain.test", "mail.mxdomain.test", 10),
                 DnsServer::host_record("mail.mxdomain.test", mx_ip)};
  DnsServer dns(dso);
  DaemonStack stack([&](DeliverdProcess::Options& o) {
    o.extra_toml = "ca_file = \"" + ca.ca_file() + "\"\nmx_port = " + std::to_string(kMailPort) +
                   "\nidle_timeout_s = 2\n\n[dns]\nservers = [\"" + dns.address() + "\"]\n";
  });
  RedisServer& redis = stack.redis;
  DeliverdProcess& d = stack.daemon();
  std::string out;
  TempDir dir;
  write_file(dir.file("token"), ao.oauth_token + "\n");
  ASSERT_EQ(d.cli({"mailbox", "add", "--id", "mbx_oauth", "--account", "acct_1", "--email", "alice@acme.example",
                   "--smtp-host", tls_ip, "--smtp-port", std::to_string(kMailPort), "--security", "tls", "--username",
                   ao.user, "--oauth-token-file", dir.file("token")},
                  &out),
            0)
      << out;
  ASSERT_EQ(d.cli({"mailbox", "add", "--id", "mbx_mx", "--account", "acct_1", "--email", "alice@acme.example",
                   "--smtp-host", "unused.example", "--smtp-port", "25", "--mode", "mx"},
                  &out),
            0)
      << out;
  EXPECT_NE(d.cli({"mailbox", "add", "--id", "mbx_bad", "--account", "acct_1", "--email", "alice@acme.example",
                   "--smtp-host", "x.example", "--smtp-port", "25", "--mode", "direct-ish"},
                  &out),
            0);
  d.start();
  redis.xadd_job("deliverd:jobs", make_job("oauth-1", "acct_1", "mbx_oauth", "bob@example.org"));
  redis.xadd_job("deliverd:jobs", make_job("mx-1", "acct_1", "mbx_mx", "carol@mxdomain.test"));
  auto all = wait_for_events(redis, {"oauth-1", "mx-1"}, 30000);
  ASSERT_TRUE(all.count("oauth-1") && all.count("mx-1")) << d.log();
  EXPECT_EQ(all["oauth-1"].status, "delivered") << all["oauth-1"].reason << " " << all["oauth-1"].detail;
  EXPECT_EQ(all["mx-1"].status, "delivered") << all["mx-1"].reason << " " << all["mx-1"].detail;
  EXPECT_EQ(smtp.auth_log(), std::vector<std::string>{"XOAUTH2 alice@acme.example ok"});
  EXPECT_TRUE(mx.wait_for_messages(1, 5000));
  bool rcpt = false;
  for (const auto& c : mx.commands()) rcpt |= c == "RCPT TO:<carol@mxdomain.test>";
  EXPECT_TRUE(rcpt);
  EXPECT_EQ(d.log().find(ao.oauth_token), std::string::npos);
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

// Mailboxes change while the daemon runs — the platform writes the table, `deliverd mailbox
// add` too — and each change reaches the daemon through the table's NOTIFY, or, for a job that
// names a mailbox the daemon has not seen yet, through one more read before it is refused.
TEST(MailboxChanges, ReachTheRunningDaemonWithoutARestart) {
  SmtpSink first(SmtpSink::Options::at_mail_port(kMailPort));
  SmtpSink second(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx_a", "acct_1", "alice@acme.example", first.host(), kMailPort);
  d.start();
  const std::string reloads = "deliverd_mailbox_reloads_total{result=\"ok\"}";
  auto wait_for_reload_after = [&](double before) {
    const long long deadline = now_ms() + 20000;
    while (d.metric(reloads) <= before && now_ms() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return d.metric(reloads) > before;
  };

  // An UPDATE by someone else: the next job goes to the new host.
  double before = d.metric(reloads);
  stack.pg.exec("UPDATE mailboxes SET smtp_host = '" + second.host() + "' WHERE id = 'mbx_a'");
  ASSERT_TRUE(wait_for_reload_after(before)) << d.log();
  stack.redis.xadd_job("deliverd:jobs", make_job("moved", "acct_1", "mbx_a", "bob@example.org"));
  EXPECT_EQ(wait_for_final_events(stack.redis, {"moved"}, 20000)["moved"].status, "delivered") << d.log();
  EXPECT_EQ(first.message_count(), 0u);
  EXPECT_EQ(second.message_count(), 1u);

  // A mailbox added with notifications switched off, its job queued at once: the daemon reads
  // the table again before it would refuse the job.
  stack.pg.exec("ALTER TABLE mailboxes DISABLE TRIGGER mailboxes_notify");
  d.add_mailbox("mbx_new", "acct_1", "nina@acme.example", first.host(), kMailPort);
  stack.redis.xadd_job("deliverd:jobs", make_job("fresh", "acct_1", "mbx_new", "bob@example.org"));
  EXPECT_EQ(wait_for_final_events(stack.redis, {"fresh"}, 20000)["fresh"].status, "delivered") << d.log();
  EXPECT_EQ(first.message_count(), 1u);
  stack.pg.exec("ALTER TABLE mailboxes ENABLE TRIGGER mailboxes_notify");

  // A DELETE: the mailbox's next job is refused.
  before = d.metric(reloads);
  stack.pg.exec("DELETE FROM mailboxes WHERE id = 'mbx_new'");
  ASSERT_TRUE(wait_for_reload_after(before)) << d.log();
  stack.redis.xadd_job("deliverd:jobs", make_job("gone", "acct_1", "mbx_new", "bob@example.org"));
  auto gone = wait_for_final_events(stack.redis, {"gone"}, 20000)["gone"];
  EXPECT_EQ(gone.status, "rejected");
  EXPECT_EQ(gone.reason, "unknown_mailbox");
  EXPECT_EQ(first.message_count(), 1u);

  // TRUNCATE names no row: everything is read again, and nothing is left.
  before = d.metric(reloads);
  stack.pg.exec("TRUNCATE mailboxes CASCADE");  // with their inbox watches
  ASSERT_TRUE(wait_for_reload_after(before)) << d.log();
  EXPECT_EQ(d.metric("deliverd_mailboxes_loaded"), 0) << d.log();
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

// A server answering in Latin-1 (common among older MTAs): every outcome still has its row in
// PostgreSQL and its event on the results stream, with the bytes kept as \xNN.
TEST(EndToEndBadBytes, Latin1RepliesCostNoRowAndNoEvent) {
  ScriptedSmtpServer::Options so;
  so.host = free_loopback_ip(kMailPort);
  so.port = kMailPort;
  ScriptedSmtpServer latin1(
      R"({"steps": {"DOT": {"reply": "250 2.0.0 Message accept\u00e9 pour livraison", "encoding": "latin-1"}}})", so);
  so.host = free_loopback_ip(kMailPort);
  ScriptedSmtpServer refusing(
      R"({"steps": {"RCPT": {"reply": "550 5.1.1 Destinataire inconnu: bo\u00eete ferm\u00e9e", "encoding": "latin-1"}}})",
      so);
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx_l1", "acct_1", "alice@acme.example", latin1.host(), kMailPort);
  d.add_mailbox("mbx_l1_550", "acct_1", "alice@acme.example", refusing.host(), kMailPort);
  d.start();
  std::vector<std::string> ids, jobs;
  for (int i = 0; i < 40; ++i) {
    ids.push_back("latin1-" + std::to_string(i));
    // Two bounces only: a third would trip the bounce guard (3 in a window of 50) and pause it.
    jobs.push_back(make_job(ids.back(), "acct_1", i % 20 == 19 ? "mbx_l1_550" : "mbx_l1",
                            "r" + std::to_string(i) + "@example.org"));
  }
  stack.redis.xadd_jobs("deliverd:jobs", jobs);
  auto finals = wait_for_final_events(stack.redis, ids, 60000);
  ASSERT_EQ(finals.size(), ids.size()) << d.log();
  for (const auto& id : ids) {
    const bool bounced = std::stoi(id.substr(7)) % 20 == 19;
    EXPECT_EQ(finals[id].status, bounced ? "bounced" : "delivered") << id;
  }
  // The event keeps the byte losslessly (the JSON text holds \\xe9).
  bool saw_escaped = false;
  for (const auto& e : stack.redis.xrange("deliverd:results"))
    saw_escaped = saw_escaped || e.fields.at("event").find("accept\\\\xe9 pour") != std::string::npos;
  EXPECT_TRUE(saw_escaped);
  // Rows are written in the background: wait for all of them.
  std::string rows;
  for (long long deadline = now_ms() + 30000; now_ms() < deadline;) {
    rows = stack.pg.scalar("SELECT count(*) FROM delivery_events WHERE job_id LIKE 'latin1-%'");
    if (rows == "40") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(rows, "40") << d.log();
  EXPECT_EQ(stack.pg.scalar("SELECT count(*) FROM delivery_events WHERE reply_text LIKE '%accept\\\\xe9 pour%'"), "38");
  EXPECT_EQ(stack.pg.scalar("SELECT count(*) FROM delivery_events WHERE status = 'bounced'"
                            " AND reply_text LIKE '%bo\\\\xeete ferm\\\\xe9e%'"),
            "2");
  EXPECT_LE(d.metric("deliverd_delivery_events_total{result=\"failed\"}"), 0) << "no row may fail";
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

// Jobs already waiting when the daemon starts are taken once the suppression list has loaded,
// not before: taken sooner, each would be deferred ("suppression list not loaded") and wait out a
// retry. A list of 200,000 rows takes forty pages, time enough for the race to show.
TEST(StartUp, PreQueuedJobsWaitForTheSuppressionListInsteadOfARetry) {
  SmtpSink sink(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  d.add_mailbox("mbx_start", "acct_1", "alice@acme.example", sink.host(), kMailPort);
  stack.pg.exec(
      "INSERT INTO suppressions (account, address, address_sha256, reason, source)"
      " SELECT 'acct_' || (i % 3), 'u' || i || '@bulk.example', sha256(convert_to('u' || i || '@bulk.example', 'UTF8')),"
      " 'unsubscribed', 'test' FROM generate_series(1, 200000) i");
  std::vector<std::string> ids, jobs;
  for (int i = 0; i < 50; ++i) {
    ids.push_back("early-" + std::to_string(i));
    jobs.push_back(make_job(ids.back(), "acct_1", "mbx_start", "r" + std::to_string(i) + "@example.org"));
  }
  stack.redis.xadd_jobs("deliverd:jobs", jobs);
  d.start();
  auto finals = wait_for_final_events(stack.redis, ids, 60000);
  ASSERT_EQ(finals.size(), ids.size()) << d.log();
  size_t deferred = 0;
  for (const auto& e : all_events(stack.redis)) deferred += e.status == "deferred";
  EXPECT_EQ(deferred, 0u) << d.log();
  for (const auto& id : ids) {
    EXPECT_EQ(finals[id].status, "delivered") << id;
    EXPECT_EQ(finals[id].attempt, 1) << id;
  }
  EXPECT_EQ(sink.message_count(), 50u);
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}
