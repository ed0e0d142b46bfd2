// OAuth mailboxes end to end: real daemons refresh 5-second access tokens at the in-tree HTTPS
// token endpoint (test CA, its name from dnsmasq) and submit through aiosmtpd, which takes only
// tokens that endpoint issued and that have not expired. Two daemons share one refresh per
// expiry; a rotated refresh token survives kill -9; a revoked grant disables the mailbox once;
// an endpoint that is down defers jobs and loses none.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/aiosmtpd_server.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/imap_stub.h"
#include "tests/integration/fixtures/oauth_endpoint.h"
#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/fixtures/test_ca.h"

using namespace deliverd::testing;

namespace {

constexpr int kMailPort = 2525;

// A labelled sample from Prometheus text ("name{labels} value"); 0 when absent.
double sample(const std::string& metrics, const std::string& series) {
  std::istringstream in(metrics);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return 0;
}

class OAuthDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OAuthEndpoint::Options eo;
    eo.rotate = rotate_;
    endpoint_ = std::make_unique<OAuthEndpoint>(ca_, eo);
    std::string smtp_ip = free_loopback_ip(kMailPort);
    while (smtp_ip == endpoint_->ip()) smtp_ip = free_loopback_ip(kMailPort);
    auto cert = ca_.issue("smtp-oauth", {smtp_ip}, 2);
    AiosmtpdServer::Options ao;
    ao.host = smtp_ip;
    ao.port = kMailPort;
    ao.cert_file = cert.cert_file;
    ao.key_file = cert.key_file;
    ao.mechanisms = "XOAUTH2";
    ao.oauth_tokens_file = endpoint_->tokens_file();
    ao.auth_required = true;
    smtp_ = std::make_unique<AiosmtpdServer>(ao);
    smtp_ip_ = smtp_ip;
    DnsServer::Options dso;
    dso.records = {DnsServer::host_record("oauth.test", endpoint_->ip())};
    dns_ = std::make_unique<DnsServer>(dso);
    write_secret_file(dir_.file("client-secret"), endpoint_->options().client_secret + "\n");
    write_secret_file(dir_.file("refresh-token"), endpoint_->options().refresh_token + "\n");
  }

  DeliverdProcess::Options options(const std::string& consumer) {
    DeliverdProcess::Options o;
    o.redis_port = redis_.port();
    o.pg_conninfo = pg_.conninfo();
    o.consumer = consumer;
    o.policy_toml += policy_extra_;
    // Short pooled sessions: new connections keep authenticating with the token of the moment.
    o.extra_toml = "ca_file = \"" + ca_.ca_file() +
                   "\"\nidle_timeout_s = 1\nmax_messages_per_connection = 25\n\n[dns]\nservers = [\"" +
                   dns_->address() + "\"]\n\n[retry]\nschedule = [\"2s\"]\n\n[[oauth]]\nname = \"google\"\ntoken_url = \"" +
                   endpoint_->url() + "\"\nclient_id = \"" + endpoint_->options().client_id +
                   "\"\nclient_secret_file = \"" + dir_.file("client-secret") +
                   "\"\nscope = \"https://mail.google.com/\"\n";
    return o;
  }

  // The first daemon migrates and holds the mailbox; more daemons share Redis and PostgreSQL.
  DeliverdProcess& daemon(const std::string& consumer = "daemon-1") {
    daemons_.push_back(std::make_unique<DeliverdProcess>(options(consumer)));
    DeliverdProcess& d = *daemons_.back();
    if (daemons_.size() == 1) {
      std::string out;
      if (d.cli({"migrate"}, &out) != 0) ADD_FAILURE() << out;
      if (d.cli({"mailbox", "add", "--id", "mbx_g", "--account", "acct_1", "--email", "alice@acme.example",
                 "--smtp-host", smtp_ip_, "--smtp-port", std::to_string(kMailPort), "--security", "starttls",
                 "--oauth-provider", "google", "--oauth-user", "alice@acme.example", "--refresh-token-file",
                 dir_.file("refresh-token")},
                &out) != 0)
        ADD_FAILURE() << out;
    }
    return d;
  }

  std::vector<std::string> queue_jobs(const std::string& prefix, int from, int n) {
    std::vector<std::string> ids, jobs;
    for (int i = from; i < from + n; ++i) {
      ids.push_back(prefix + std::to_string(i));
      jobs.push_back(make_job(ids.back(), "acct_1", "mbx_g", "rcpt" + std::to_string(i) + "@example.org"));
    }
    redis_.xadd_jobs("deliverd:jobs", jobs);
    return ids;
  }

  std::string all_logs() {
    std::string s = "--- endpoint\n" + endpoint_->log() + "\n--- smtp\n" + smtp_->log();
    for (auto& d : daemons_) s += "\n--- daemon\n" + d->log();
    return s;
  }

  bool rotate_ = false;
  std::string policy_extra_;
  TestCa ca_;
  TempDir dir_{"deliverd-oauth-test"};
  RedisServer redis_;
  PostgresServer pg_;
  std::unique_ptr<OAuthEndpoint> endpoint_;
  std::unique_ptr<AiosmtpdServer> smtp_;
  std::string smtp_ip_;
  std::unique_ptr<DnsServer> dns_;
  std::vector<std::unique_ptr<DeliverdProcess>> daemons_;
};

// The fleet case: 2,000 jobs over about a hundred seconds through one mailbox, taken by two
// daemons. Tokens live 5 s and are refreshed 1 s early, so the endpoint should see about one
// grant per 4 s of the run — one per expiry, not one per daemon or per job.
class OAuthFleetTest : public OAuthDaemonTest {
 protected:
  OAuthFleetTest() { rotate_ = true; }  // Microsoft-style: every grant rotates the refresh token
};

TEST_F(OAuthFleetTest, TwoDaemonsDeliverEveryJobWithOneRefreshPerExpiry) {
  DeliverdProcess& a = daemon("daemon-1");
  DeliverdProcess& b = daemon("daemon-2");
  a.start();
  b.start();
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> ids;
  for (int second = 0; second < 100; ++second) {
    auto more = queue_jobs("fleet-", second * 20, 20);
    ids.insert(ids.end(), more.begin(), more.end());
    std::this_thread::sleep_until(t0 + std::chrono::seconds(second + 1));
  }
  auto finals = wait_for_final_events(redis_, ids, 90000);
  double run_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(finals.size(), ids.size()) << all_logs().substr(0, 20000);
  size_t delivered = 0;
  for (auto& [id, ev] : finals) {
    delivered += ev.status == "delivered";
    if (ev.status != "delivered") ADD_FAILURE() << id << " " << ev.status << " " << ev.reason << " " << ev.detail;
  }
  EXPECT_EQ(delivered, ids.size());
  EXPECT_TRUE(smtp_->wait_for_messages(ids.size(), 10000));

  int grants = endpoint_->grants();
  // At most one per 4-second slice of the run (a token is stale 1 s before it expires), give or
  // take the edges; two daemons refreshing apart would be about twice that. At least one per
  // 10 s: the tokens really were renewed as they expired (a slow, sanitized build paces jobs
  // less evenly, hence the loose floor).
  EXPECT_LE(grants, static_cast<int>(run_s / 4) + 4) << "run " << run_s << " s";
  EXPECT_GE(grants, static_cast<int>(run_s / 10)) << "run " << run_s << " s";
  EXPECT_EQ(endpoint_->refused(), 0) << endpoint_->refresh_log();  // no retired refresh token used
  size_t refused_auth = 0;
  for (const auto& line : smtp_->auth_log()) refused_auth += line.find(" ok") == std::string::npos;
  EXPECT_EQ(refused_auth, 0u);

  // Each daemon counts its own refreshes; together they are the endpoint's grants.
  std::string ma = a.http_get("/metrics"), mb = b.http_get("/metrics");
  const std::string ok = "deliverd_oauth_refreshes_total{provider=\"google\",result=\"ok\"}";
  EXPECT_EQ(sample(ma, ok) + sample(mb, ok), grants);
  const std::string lat = "deliverd_oauth_refresh_seconds";
  double count = sample(ma, lat + "_count{provider=\"google\"}") + sample(mb, lat + "_count{provider=\"google\"}");
  double sum = sample(ma, lat + "_sum{provider=\"google\"}") + sample(mb, lat + "_sum{provider=\"google\"}");
  std::cout << "oauth fleet: " << ids.size() << " jobs in " << run_s << " s, " << grants << " refreshes ("
            << sample(ma, ok) << " + " << sample(mb, ok) << " by daemon; run/4 s = " << run_s / 4
            << "), mean refresh latency "
            << (count > 0 ? sum / count * 1000 : 0) << " ms\n";
  EXPECT_EQ(a.stop(SIGTERM), 0);
  EXPECT_EQ(b.stop(SIGTERM), 0);
}

class OAuthRotationTest : public OAuthDaemonTest {
 protected:
  OAuthRotationTest() { rotate_ = true; }
};

// Killed while the endpoint's answer (a rotated refresh token) is on its way, the daemon never
// used the new token, so the old one still works after the restart. Killed after a delivery, the
// rotated token it used is in PostgreSQL, and the endpoint (which has retired the old one by
// then) takes it.
TEST_F(OAuthRotationTest, ARotatedRefreshTokenSurvivesKill9) {
  DeliverdProcess& d = daemon();
  std::string sealed_before = pg_.scalar("SELECT encode(oauth_refresh_enc, 'hex') FROM mailboxes WHERE id = 'mbx_g'");
  endpoint_->set_mode("hold");
  d.start();
  queue_jobs("rot-", 1, 1);
  ASSERT_TRUE(wait_until([&] { return endpoint_->holding(); }, 20000)) << all_logs();
  EXPECT_EQ(d.stop(SIGKILL), 128 + SIGKILL);
  endpoint_->set_mode("ok");
  endpoint_->release();

  d.start();
  auto first = wait_for_final_events(redis_, {"rot-1"}, 40000);
  ASSERT_EQ(first["rot-1"].status, "delivered") << first["rot-1"].detail << all_logs();
  EXPECT_EQ(endpoint_->refused(), 0) << endpoint_->refresh_log();
  // At once after the 250: the rotated token it used is durable.
  EXPECT_EQ(d.stop(SIGKILL), 128 + SIGKILL);
  std::string sealed_after = pg_.scalar(
      "SELECT encode(COALESCE(oauth_pending_enc, oauth_refresh_enc), 'hex') FROM mailboxes WHERE id = 'mbx_g'");
  EXPECT_NE(sealed_after, sealed_before);
  EXPECT_EQ(sealed_after.find("rt-"), std::string::npos);  // sealed, not plaintext

  // The shared access token would spare the restarted daemon a refresh; without it, it must
  // refresh with what PostgreSQL holds.
  redis_.command({"EVAL", "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0", "0",
                  "*oauth:*:token"});
  int grants = endpoint_->grants();
  d.start();
  queue_jobs("rot-", 2, 1);
  auto second = wait_for_final_events(redis_, {"rot-2"}, 30000);
  EXPECT_EQ(second["rot-2"].status, "delivered") << second["rot-2"].detail << all_logs();
  EXPECT_EQ(endpoint_->grants(), grants + 1);
  EXPECT_EQ(endpoint_->refused(), 0) << endpoint_->refresh_log();
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

// invalid_grant: the mailbox is disabled with reason oauth_revoked, the platform gets one
// mailbox_disabled event, every job ends with that reason, and nothing asks the endpoint again.
TEST_F(OAuthDaemonTest, ARevokedGrantDisablesTheMailboxOnceAndNothingLoops) {
  DeliverdProcess& d = daemon();
  endpoint_->set_mode("invalid_grant");
  d.start();
  auto ids = queue_jobs("rev-", 1, 5);
  auto finals = wait_for_final_events(redis_, ids, 30000);
  ASSERT_EQ(finals.size(), ids.size()) << all_logs();
  for (auto& [id, ev] : finals) {
    EXPECT_EQ(ev.reason, "oauth_revoked") << id << " " << ev.status << " " << ev.detail;
    // In flight when the grant died: failed; admitted after the disable: rejected.
    EXPECT_TRUE(ev.status == "failed" || ev.status == "rejected") << id << " " << ev.status;
  }
  EXPECT_NE(finals["rev-1"].detail.find("invalid_grant"), std::string::npos) << finals["rev-1"].detail;
  ASSERT_TRUE(wait_until([&] { return pg_.scalar("SELECT disabled FROM mailboxes WHERE id = 'mbx_g'") == "t"; }, 10000));
  EXPECT_EQ(pg_.scalar("SELECT disabled_reason FROM mailboxes WHERE id = 'mbx_g'"), "oauth_revoked");
  EXPECT_EQ(pg_.scalar("SELECT oauth_refresh_result FROM mailboxes WHERE id = 'mbx_g'"), "oauth_revoked");

  ASSERT_TRUE(wait_until([&] { return !mailbox_events(redis_).empty(); }, 10000));
  auto events = mailbox_events(redis_);
  ASSERT_EQ(events.size(), 1u);
  simdjson::dom::parser parser;
  simdjson::dom::element e = parser.parse(events[0]);
  EXPECT_EQ(std::string_view(e["event"].get_string().value()), "mailbox_disabled");
  EXPECT_EQ(std::string_view(e["account"].get_string().value()), "acct_1");
  EXPECT_EQ(std::string_view(e["mailbox"].get_string().value()), "mbx_g");
  EXPECT_EQ(std::string_view(e["reason"].get_string().value()), "oauth_revoked");

  int asked = endpoint_->requests();
  EXPECT_LE(asked, 2);  // one refusal, perhaps one re-read of a rotated grant
  auto later = queue_jobs("rev-", 6, 5);
  auto rejected = wait_for_final_events(redis_, later, 20000);
  for (const auto& id : later) {
    EXPECT_EQ(rejected[id].status, "rejected") << id;
    EXPECT_EQ(rejected[id].reason, "oauth_revoked") << id;
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(endpoint_->requests(), asked);
  EXPECT_EQ(mailbox_events(redis_).size(), 1u);
  EXPECT_EQ(smtp_->message_count(), 0u);
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

// 20 s without a token endpoint (first 503s, then silence): jobs defer (oauth_unavailable), the
// endpoint is not asked once per job, and when it is back every job is delivered. The breaker is
// kept out of the way here (its probe schedule spans minutes); the next test shows it counting.
class OAuthOutageTest : public OAuthDaemonTest {
 protected:
  OAuthOutageTest() { policy_extra_ = "breaker_failures = 1000\n"; }
};

TEST_F(OAuthOutageTest, AnEndpointDownFor20SecondsCostsNoJob) {
  DeliverdProcess& d = daemon();
  endpoint_->set_mode("503");
  d.start();
  std::vector<std::string> ids = queue_jobs("down-", 0, 20);
  auto t0 = std::chrono::steady_clock::now();
  for (int s = 1; s <= 20; ++s) {
    if (s == 10) endpoint_->set_mode("silent");
    auto more = queue_jobs("down-", 100 + s, 1);
    ids.insert(ids.end(), more.begin(), more.end());
    std::this_thread::sleep_until(t0 + std::chrono::seconds(s));
  }
  int asked_while_down = endpoint_->requests();
  endpoint_->set_mode("ok");
  auto finals = wait_for_final_events(redis_, ids, 120000);
  ASSERT_EQ(finals.size(), ids.size()) << all_logs().substr(0, 20000);
  auto history = all_events(redis_);
  for (auto& [id, ev] : finals) {
    if (ev.status == "delivered") continue;
    std::string seen;
    for (const auto& h : history)
      if (h.job_id == id) seen += "\n  " + std::to_string(h.entry_ms) + " " + h.status + " " + h.reason + " " + h.detail;
    ADD_FAILURE() << id << " ended " << ev.status << ":" << seen;
  }
  // Each failure is given again for 5 s without a request, and the silent phase is one request
  // that times out: a handful of requests for some hundred job attempts.
  size_t attempts = 0;
  bool unavailable = false;
  for (const auto& ev : history) {
    attempts += ev.status == "deferred";
    unavailable |= ev.status == "deferred" && ev.reason == "oauth_unavailable" && ev.phase == "auth";
  }
  EXPECT_TRUE(unavailable);
  EXPECT_LE(asked_while_down, 6) << attempts << " deferred attempts";
  EXPECT_GT(attempts, static_cast<size_t>(asked_while_down) * 5);
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

class OAuthBreakerTest : public OAuthDaemonTest {
 protected:
  OAuthBreakerTest() { policy_extra_ = "breaker_failures = 3\n"; }
};

// A token endpoint that fails is the mailbox's fault: after three, the breaker opens and holds
// the mailbox's jobs without asking for tokens at all.
TEST_F(OAuthBreakerTest, AFailingTokenEndpointOpensTheBreaker) {
  DeliverdProcess& d = daemon();
  endpoint_->set_mode("503");
  d.start();
  auto ids = queue_jobs("brk-", 1, 6);
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& ev : all_events(redis_))
          if (ev.reason == "breaker_open") return true;
        return false;
      },
      20000))
      << all_logs();
  size_t unavailable = 0;
  for (const auto& ev : all_events(redis_)) unavailable += ev.reason == "oauth_unavailable";
  EXPECT_GE(unavailable, 3u);
  EXPECT_LE(endpoint_->requests(), 2);
  EXPECT_EQ(smtp_->message_count(), 0u);
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

}  // namespace

namespace {

// The refresh token the endpoint issued last ("OLD -> NEW" lines of its refresh log).
std::string latest_refresh_token(const std::string& log) {
  std::string last;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    auto arrow = line.find(" -> ");
    if (arrow != std::string::npos && line.substr(arrow + 4) != "same") last = line.substr(arrow + 4);
  }
  return last;
}

std::vector<std::string> refresh_lines(const std::string& log) {
  std::vector<std::string> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

class OAuthApiTest : public OAuthDaemonTest {
 protected:
  OAuthApiTest() { rotate_ = true; }
  std::string key(DeliverdProcess& d) {
    std::string out;
    EXPECT_EQ(d.cli({"key", "create", "--role", "user", "--account", "acct_1"}, &out), 0) << out;
    auto pos = out.find("dlv_");
    return pos == std::string::npos ? "" : out.substr(pos, out.find_first_of(" \n", pos) - pos);
  }
  std::string mailbox_body(const std::string& id, const std::string& oauth) {
    std::string imap = imap_ip_.empty() ? "" : R"(,"imap":{"host":")" + imap_ip_ + R"(","port":993,"username":"alice@acme.example"})";
    return R"({"id":")" + id + R"(","email":"alice@acme.example","smtp_host":")" + smtp_ip_ +
           R"(","smtp_port":2525,"security":"starttls","oauth":)" + oauth + imap + "}";
  }
  // An IMAP server that, like the SMTP one, takes only tokens the endpoint issued.
  void start_imap() {
    imap_ip_ = free_loopback_ip(993);
    while (imap_ip_ == smtp_ip_ || imap_ip_ == endpoint_->ip()) imap_ip_ = free_loopback_ip(993);
    ImapStub::Options io;
    io.host = imap_ip_;
    io.port = 993;
    io.user = "alice@acme.example";
    io.oauth_tokens_file = endpoint_->tokens_file();
    imap_ = std::make_unique<ImapStub>(ca_.issue("imap-oauth", {imap_ip_}, 2), io);
  }
  std::string imap_ip_;
  std::unique_ptr<ImapStub> imap_;
};

}  // namespace

// A tenant connects an OAuth mailbox through the API: the connection test refreshes once (the
// rotated refresh token it got is the one stored), a wrong provider or a dead token is refused
// naming why, and after the grant was revoked a new one reconnects the mailbox.
TEST_F(OAuthApiTest, ATenantConnectsTestsAndReconnectsAnOAuthMailbox) {
  DeliverdProcess& d = daemon();
  std::string token = key(d);
  ASSERT_FALSE(token.empty());
  start_imap();
  d.start();
  const std::string base = "http://127.0.0.1:" + std::to_string(d.admin_port());
  const std::string grant = R"({"provider":"google","user":"alice@acme.example","refresh_token":"rt-initial"})";

  std::string unknown = curl("POST", base + "/v1/mailboxes", token,
                             mailbox_body("mbx_api", R"({"provider":"yahoo","refresh_token":"rt-initial"})"));
  EXPECT_NE(unknown.find("\"unknown_provider\""), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("oauth.provider"), std::string::npos) << unknown;
  std::string both = curl("POST", base + "/v1/mailboxes", token,
                          R"({"id":"mbx_api","email":"alice@acme.example","smtp_host":")" + smtp_ip_ +
                              R"(","smtp_port":2525,"security":"starttls","password":"x","oauth":)" + grant + "}");
  EXPECT_NE(both.find("exclude each other"), std::string::npos) << both;
  std::string dead = curl("POST", base + "/v1/mailboxes", token,
                          mailbox_body("mbx_api", R"({"provider":"google","refresh_token":"rt-never-issued"})"));
  EXPECT_NE(dead.find("\"step\":\"oauth_refresh\""), std::string::npos) << dead;
  EXPECT_NE(dead.find("invalid_grant"), std::string::npos) << dead;
  EXPECT_EQ(pg_.scalar("SELECT count(*) FROM mailboxes WHERE id = 'mbx_api'"), "0");
  const int refused = endpoint_->refused();  // the dead token's

  std::string created = curl("POST", base + "/v1/mailboxes", token, mailbox_body("mbx_api", grant));
  EXPECT_NE(created.find(R"("oauth":{"provider":"google","user":"alice@acme.example")"), std::string::npos) << created;
  EXPECT_EQ(created.find("rt-"), std::string::npos) << "a refresh token is never returned: " << created;
  ASSERT_EQ(endpoint_->grants(), 1) << "the connection test refreshed once";
  EXPECT_EQ(smtp_->auth_log(), std::vector<std::string>{"XOAUTH2 alice@acme.example ok"});
  EXPECT_NE(imap_->log().find("AUTHENTICATE XOAUTH2 alice@acme.example ok"), std::string::npos) << imap_->log();

  // The job's refresh uses the token the test rotated to, not the one the tenant gave.
  redis_.xadd_job("deliverd:jobs", make_job("api-1", "acct_1", "mbx_api", "bob@example.org"));
  auto first = wait_for_final_events(redis_, {"api-1"}, 30000);
  EXPECT_EQ(first["api-1"].status, "delivered") << first["api-1"].detail << all_logs();
  std::this_thread::sleep_for(std::chrono::milliseconds(5200));  // the access token expires
  redis_.xadd_job("deliverd:jobs", make_job("api-2", "acct_1", "mbx_api", "bob@example.org"));
  EXPECT_EQ(wait_for_final_events(redis_, {"api-2"}, 30000)["api-2"].status, "delivered");
  // The stored grant's test takes its token the way sends do.
  std::string tested = curl("POST", base + "/v1/mailboxes/mbx_api/test", token);
  EXPECT_EQ(tested.find("mailbox_test_failed"), std::string::npos) << tested;
  EXPECT_NE(tested.find("\"ok\":true"), std::string::npos) << tested;
  auto lines = refresh_lines(endpoint_->refresh_log());
  ASSERT_GE(lines.size(), 2u);
  std::string rotated = lines[0].substr(lines[0].find(" -> ") + 4);
  EXPECT_EQ(lines[1].rfind(rotated + " -> ", 0), 0u) << endpoint_->refresh_log();
  EXPECT_EQ(endpoint_->refused(), refused);

  // Revoked: the mailbox is disabled; the tenant may not resume it, only connect it again.
  endpoint_->set_mode("invalid_grant");
  std::this_thread::sleep_for(std::chrono::milliseconds(5200));
  redis_.xadd_job("deliverd:jobs", make_job("api-3", "acct_1", "mbx_api", "bob@example.org"));
  EXPECT_EQ(wait_for_final_events(redis_, {"api-3"}, 30000)["api-3"].reason, "oauth_revoked");
  ASSERT_TRUE(wait_until([&] { return pg_.scalar("SELECT disabled FROM mailboxes WHERE id = 'mbx_api'") == "t"; }, 10000));
  std::string shown = curl("GET", base + "/v1/mailboxes/mbx_api", token);
  EXPECT_NE(shown.find(R"("disabled_reason":"oauth_revoked")"), std::string::npos) << shown;
  EXPECT_NE(shown.find(R"("last_refresh_result":"oauth_revoked")"), std::string::npos) << shown;
  std::string resumed = curl("POST", base + "/v1/mailboxes/mbx_api/resume", token);
  EXPECT_NE(resumed.find("connect it again"), std::string::npos) << resumed;

  endpoint_->set_mode("ok");
  std::string fresh = latest_refresh_token(endpoint_->refresh_log());
  std::string patched = curl("PATCH", base + "/v1/mailboxes/mbx_api", token,
                             R"({"oauth":{"provider":"google","user":"alice@acme.example","refresh_token":")" + fresh +
                                 R"("}})");
  EXPECT_NE(patched.find(R"("disabled":false)"), std::string::npos) << patched;
  EXPECT_NE(patched.find(R"("disabled_reason":null)"), std::string::npos) << patched;
  redis_.xadd_job("deliverd:jobs", make_job("api-4", "acct_1", "mbx_api", "bob@example.org"));
  auto back = wait_for_final_events(redis_, {"api-4"}, 30000);
  EXPECT_EQ(back["api-4"].status, "delivered") << back["api-4"].reason << " " << back["api-4"].detail << all_logs();
  EXPECT_EQ(d.stop(SIGTERM), 0);
}
