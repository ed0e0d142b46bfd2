// The /v1 admin API against a real PostgreSQL: who may call what (role × endpoint), how keys are
// refused, the failed-authentication throttle, and the account data round trip.
#include <simdjson.h>

#include <set>

#include "core/hex.h"
#include "core/metrics.h"
#include "store/mailboxes.h"
#include "queue/redis_client.h"
#include "tests/integration/admin/api_fixture.h"
#include "tests/integration/fixtures/redis_server.h"

namespace deliverd::admin::testing {
namespace {

struct Endpoint {
  std::string method, path, body;
  bool write;
  bool keys;  // needs keys:read/write
  bool operators = false;  // owner and admin keys only, whatever the scopes
};

const char* kJob =
    R"({"v": 1, "id": "job-%N%", "account": "acct_a", "mailbox": "mbx_a", "to": {"email": "bob@example.org"},)"
    R"( "subject": "Quick question", "text": "Hi Bob"})";

std::string replace(std::string s, const std::string& from, const std::string& to) {
  for (size_t p; (p = s.find(from)) != std::string::npos;) s.replace(p, from.size(), to);
  return s;
}

double counter_value(const std::string& reason) {
  auto& f = core::Registry::global().counter("deliverd_admin_auth_refused_total", "", {"reason"});
  return f.with({reason}).value();
}

void seed_account_a() {
  ApiTest::rows(
      "INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port, security, username)"
      " VALUES ('mbx_a', 'acct_a', 'alice@acme.example', 'smtp.acme.example', 587, 'starttls', 'alice')"
      " ON CONFLICT (account, id) DO NOTHING RETURNING 1");
  ApiTest::rows(
      "INSERT INTO suppressions (account, address, address_sha256, reason, source)"
      " VALUES ('acct_a', 'bob@example.org', sha256('bob@example.org'), 'manual', 'test')"
      " ON CONFLICT DO NOTHING RETURNING 1");
  ApiTest::rows(
      "INSERT INTO delivery_events (job_id, account, mailbox, recipient, recipient_sha256, status)"
      " VALUES ('job-1', 'acct_a', 'mbx_a', 'bob@example.org', sha256('bob@example.org'), 'delivered') RETURNING 1");
}

TEST_F(ApiTest, RoleEndpointMatrix) {
  const std::vector<Endpoint> endpoints = {
      {"GET", "/v1/mailboxes", "", false, false},
      {"POST", "/v1/mailboxes",
       R"({"id": "mbx_new_%N%", "account": "acct_a", "email": "x@acme.example", "smtp_host": "smtp.acme.example",)"
       R"( "smtp_port": 587, "username": "x", "password": "pw"})",
       true, false},
      {"GET", "/v1/mailboxes/mbx_a", "", false, false},
      {"PATCH", "/v1/mailboxes/mbx_a", R"({"email": "al@acme.example"})", true, false},
      {"POST", "/v1/mailboxes/mbx_a/pause", "", true, false},
      {"POST", "/v1/mailboxes/mbx_a/resume", "", true, false},
      {"POST", "/v1/mailboxes/mbx_a/breaker-reset", "", true, false, true},
      {"POST", "/v1/mailboxes/mbx_a/test", "", true, false},
      {"DELETE", "/v1/mailboxes/mbx_a", "", true, false},
      {"GET", "/v1/accounts/acct_a/suppressions", "", false, false},
      {"POST", "/v1/accounts/acct_a/suppressions", R"({"address": "carol%N%@example.org"})", true, false},
      {"GET", "/v1/accounts/acct_a/suppressions/bob@example.org", "", false, false},
      {"DELETE", "/v1/accounts/acct_a/suppressions/bob@example.org", "", true, false},
      {"POST", "/v1/messages", kJob, true, false},
      {"GET", "/v1/messages/job-1", "", false, false},
      {"GET", "/v1/accounts/acct_a/export", "", false, false},
      {"POST", "/v1/accounts/acct_a/erase-address", R"({"address": "bob@example.org"})", true, false},
      {"DELETE", "/v1/accounts/acct_a", "", true, false, true},
      {"GET", "/v1/keys", "", false, true},
      {"POST", "/v1/keys", R"({"role": "readonly", "account": "acct_a"})", true, true},
      {"DELETE", "/v1/keys/%KEY%", "", true, true},
      {"GET", "/v1/metrics", "", false, false},
  };
  const std::vector<std::string> roles = {"owner", "admin", "user", "readonly"};
  run([&](int port) {
    Client c(port);
    int n = 0;
    for (const auto& e : endpoints) {
      for (const auto& role : roles) {
        ++n;
        seed_account_a();
        std::string token = make_key(role, role == "owner" || role == "admin" ? "" : "acct_a");
        std::string victim_id;
        make_key("user", "acct_a", "", "", &victim_id);
        std::string path = replace(replace(e.path, "%N%", std::to_string(n)), "%KEY%", victim_id);
        std::string body = replace(e.body, "%N%", std::to_string(n));
        HttpReply r = c.request(e.method, path, token, body);
        bool allowed = role == "owner" || role == "admin" || (role == "user" && !e.keys && !e.operators) ||
                       (role == "readonly" && !e.write && !e.keys);
        SCOPED_TRACE(role + " " + e.method + " " + path + " -> " + std::to_string(r.status) + " " + r.body);
        ASSERT_NE(r.status, 0);
        EXPECT_NE(r.status, 401);
        if (allowed) {
          EXPECT_LT(r.status, 300);
        } else {
          EXPECT_EQ(r.status, 403);
          EXPECT_NE(r.body.find("\"forbidden\""), std::string::npos);
        }
      }
    }
  });
  // Every write that was answered is on record, with who and from where.
  EXPECT_GE(std::stoi(scalar("SELECT count(*) FROM audit_log")), 13 * 4);
  EXPECT_EQ(scalar("SELECT count(*) FROM audit_log WHERE peer_ip <> '127.0.0.1' OR action = ''"), "0");
  EXPECT_EQ(
      scalar("SELECT count(*) FROM audit_log WHERE role = 'readonly' AND status = 403 AND action = 'mailbox.create'"),
      "1");
  EXPECT_EQ(injected_.size(), 3u);  // owner, admin, user
}

TEST_F(ApiTest, RefusedKeys) {
  std::string revoked_id;
  std::string good = make_key("user", "acct_a");
  std::string revoked = make_key("user", "acct_a", "", "", &revoked_id);
  pg_->exec("UPDATE api_keys SET revoked_at = now() WHERE id = '" + revoked_id + "'");
  std::string expired = make_key("user", "acct_a", "", "2001-01-01T00:00:00Z");
  std::string future = make_key("user", "acct_a", "", "2999-01-01T00:00:00Z");
  std::string other = make_key("user", "acct_b");
  std::string admin = make_key("admin");
  auto cli_owner = store::create_api_key_blocking(pg_->conninfo(), store::ApiKeySpec{"owner", "", "", "", "cli", ""});
  ASSERT_TRUE(cli_owner) << cli_owner.error();
  std::string owner = cli_owner->token;
  std::string narrow = make_key("user", "acct_a", "suppressions:read");
  run([&](int port) {
    Client c(port);
    const std::string path = "/v1/accounts/acct_a/suppressions";
    EXPECT_EQ(c.request("GET", path).status, 401);
    auto www = c.request("GET", path);
    EXPECT_TRUE(www.has_header("WWW-Authenticate: Bearer"));
    EXPECT_EQ(c.request("GET", path, "", "", "Authorization: Basic YWxhZGRpbjpvcGVu\r\n").status, 401);
    EXPECT_EQ(c.request("GET", path, "not-a-key").status, 401);
    EXPECT_EQ(c.request("GET", path, good.substr(0, good.size() - 1)).status, 401);
    std::string wrong_secret = good;
    wrong_secret.back() = wrong_secret.back() == '0' ? '1' : '0';
    EXPECT_EQ(c.request("GET", path, wrong_secret).status, 401);
    auto r = c.request("GET", path, revoked);
    EXPECT_EQ(r.status, 401);
    EXPECT_NE(r.body.find("key_revoked"), std::string::npos);
    r = c.request("GET", path, expired);
    EXPECT_EQ(r.status, 401);
    EXPECT_NE(r.body.find("key_expired"), std::string::npos);
    EXPECT_EQ(c.request("GET", path, future).status, 200);
    EXPECT_EQ(c.request("GET", path, good).status, 200);

    // Bound to another account.
    EXPECT_EQ(c.request("GET", path, other).status, 403);
    EXPECT_EQ(c.request("POST", path, other, R"({"address": "x@example.org"})").status, 403);
    EXPECT_EQ(c.request("GET", "/v1/accounts/acct_a/export", other).status, 403);

    // Scopes narrower than the role.
    EXPECT_EQ(c.request("GET", path, narrow).status, 200);
    EXPECT_EQ(c.request("POST", path, narrow, R"({"address": "x@example.org"})").status, 403);
    EXPECT_EQ(c.request("GET", "/v1/mailboxes", narrow).status, 403);

    // Role boundaries for keys.
    EXPECT_EQ(c.request("POST", "/v1/keys", admin, R"({"role": "owner"})").status, 403);
    EXPECT_EQ(c.request("POST", "/v1/keys", good, R"({"role": "user", "account": "acct_a"})").status, 403);
    EXPECT_EQ(c.request("POST", "/v1/keys", admin, R"({"role": "user"})").status, 400);  // needs an account
    EXPECT_EQ(
        c.request("POST", "/v1/keys", admin, R"({"role": "readonly", "account": "a", "scopes": "keys:write"})").status,
        400);  // wider than readonly
    EXPECT_EQ(c.request("POST", "/v1/keys", admin,
                        R"({"role": "user", "account": "a", "expires_at": "2001-01-01T00:00:00Z"})")
                  .status,
              400);
    auto made = c.request("POST", "/v1/keys", owner, R"({"role": "owner", "name": "second owner"})");
    ASSERT_EQ(made.status, 201) << made.body;
    std::string owner2_id = made.body.substr(made.body.find("\"id\":\"") + 6, 16);
    EXPECT_EQ(c.request("DELETE", "/v1/keys/" + owner2_id, admin).status, 403);
    EXPECT_EQ(c.request("DELETE", "/v1/keys/" + owner2_id, owner).status, 204);

    // A key created through the API works, is shown once and is listed without its secret.
    made = c.request("POST", "/v1/keys", admin,
                     R"({"role": "user", "account": "acct_a", "scopes": ["suppressions:read"]})");
    ASSERT_EQ(made.status, 201) << made.body;
    size_t k = made.body.find("\"key\":\"");
    ASSERT_NE(k, std::string::npos);
    std::string token = made.body.substr(k + 7, store::kApiKeyLength);
    EXPECT_EQ(c.request("GET", path, token).status, 200);
    auto listed = c.request("GET", "/v1/keys", admin);
    EXPECT_EQ(listed.status, 200);
    EXPECT_EQ(listed.body.find(token), std::string::npos);
    EXPECT_EQ(listed.body.find("\"key\":"), std::string::npos);
  });
  EXPECT_NE(
      scalar("SELECT last_used_at FROM api_keys WHERE created_by = 'test' AND scopes IS NULL AND account = 'acct_a'"
             " AND revoked_at IS NULL AND expires_at IS NULL LIMIT 1"),
      "");
  EXPECT_EQ(scalar("SELECT count(*) FROM api_keys WHERE token_sha256 IS NULL OR length(token_sha256) <> 32"), "0");
}

TEST_F(ApiTest, BruteForceIsThrottledPerAddressWhileOthersAreServed) {
  std::string good = make_key("readonly", "acct_a");
  double throttled_before = counter_value("throttled");
  run([&](int port) {
    Client attacker(port, "127.0.0.2");
    ASSERT_TRUE(attacker.connected());
    int unauthorized = 0, throttled = 0, other = 0;
    std::string retry_after;
    for (int i = 0; i < 1000; ++i) {
      char prefix[13];
      std::snprintf(prefix, sizeof prefix, "%012x", i);
      std::string bad = std::string("dlv_") + prefix + "_" + std::string(64, 'a');
      HttpReply r = attacker.request("GET", "/v1/accounts/acct_a/suppressions", bad);
      if (r.status == 401)
        ++unauthorized;
      else if (r.status == 429) {
        ++throttled;
        retry_after = r.header("Retry-After");
      } else {
        ++other;
      }
    }
    EXPECT_EQ(other, 0);
    EXPECT_LE(unauthorized, 25);  // the burst (20), plus what trickles back in while the loop runs
    EXPECT_GE(throttled, 975);
    EXPECT_FALSE(retry_after.empty());
    EXPECT_GE(std::stoi(retry_after.empty() ? "0" : retry_after), 1);
    // Even the right key is refused from the throttled address: it must not learn which keys work.
    EXPECT_EQ(attacker.request("GET", "/v1/accounts/acct_a/suppressions", good).status, 429);

    Client user(port, "127.0.0.1");
    for (int i = 0; i < 20; ++i) EXPECT_EQ(user.request("GET", "/v1/accounts/acct_a/suppressions", good).status, 200);
  });
  EXPECT_GE(counter_value("throttled") - throttled_before, 975);
}

// A key's prefix is in every request that carries it, so failures never count per prefix alone:
// wrong secrets from many addresses throttle those addresses, never the key.
TEST_F(ApiTest, FailuresOnOneKeyPrefixFromManyAddressesNeverLockTheKeyOut) {
  deps_.auth.failure_burst = 5;
  std::string good = make_key("readonly", "acct_a");
  std::string wrong = good;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  run([&](int port) {
    for (int i = 0; i < 12; ++i) {
      Client c(port, "127.0.1." + std::to_string(i + 1));  // a new address each time
      EXPECT_EQ(c.request("GET", "/v1/mailboxes", wrong).status, 401) << i;
    }
    Client owner(port, "127.0.0.1");
    EXPECT_EQ(owner.request("GET", "/v1/mailboxes", good).status, 200);
  });
}

// 200 wrong secrets at an owner key's prefix: the address they came from is throttled, the key is
// not; behind a trusted proxy, each forwarded client counts on its own.
TEST_F(ApiTest, WrongSecretsAtAKeysPrefixNeverLockOutTheRealKey) {
  trusted_proxies_ = {"127.0.0.3"};
  std::string owner = make_key("owner");
  std::string wrong = owner;
  wrong.back() = wrong.back() == '0' ? '1' : '0';
  const std::string path = "/v1/accounts/acct_a/suppressions";
  auto via_proxy = [](const std::string& client) { return "X-Forwarded-For: " + client + "\r\n"; };
  run([&](int port) {
    Client attacker(port, "127.0.0.2");
    int unauthorized = 0, throttled = 0;
    for (int i = 0; i < 200; ++i) {
      int s = attacker.request("GET", path, wrong).status;
      unauthorized += s == 401;
      throttled += s == 429;
    }
    EXPECT_EQ(unauthorized + throttled, 200);
    EXPECT_LE(unauthorized, 10);
    // The attacker cannot pick another address for itself: it is not a trusted proxy.
    EXPECT_EQ(attacker.request("GET", path, wrong, "", via_proxy("198.51.100.99")).status, 429);
    Client owner_client(port, "127.0.0.1");
    for (int i = 0; i < 5; ++i) EXPECT_EQ(owner_client.request("GET", path, owner).status, 200);

    // Behind the proxy: one forwarded client guesses, the others are served.
    Client proxy(port, "127.0.0.3");
    int proxied_throttled = 0;
    for (int i = 0; i < 200; ++i)
      proxied_throttled += proxy.request("GET", path, wrong, "", via_proxy("198.51.100.7")).status == 429;
    EXPECT_GE(proxied_throttled, 190);
    EXPECT_EQ(proxy.request("GET", path, owner, "", via_proxy("198.51.100.8")).status, 200);
    // A forged hop to the left of the one the proxy wrote changes nothing.
    EXPECT_EQ(proxy.request("GET", path, owner, "", via_proxy("198.51.100.7, 198.51.100.8")).status, 200);
    EXPECT_EQ(proxy.request("GET", path, wrong, "", via_proxy("198.51.100.9")).status, 401) << "not locked out";
    EXPECT_EQ(proxy.request("POST", path, owner, R"({"address": "via-proxy@example.org"})", via_proxy("198.51.100.8"))
                  .status,
              201);
  });
  EXPECT_EQ(scalar("SELECT peer_ip FROM audit_log WHERE action = 'suppression.add'"), "198.51.100.8");
}

TEST_F(ApiTest, SuppressionsArePagedAndChecked) {
  std::string key = make_key("user", "acct_a");
  run([&](int port) {
    Client c(port);
    for (int i = 0; i < 25; ++i)
      ASSERT_EQ(c.request("POST", "/v1/accounts/acct_a/suppressions", key,
                          R"({"address": "u)" + std::to_string(i) + R"(@Example.ORG"})")
                    .status,
                201);
    EXPECT_EQ(c.request("POST", "/v1/accounts/acct_a/suppressions", key, R"({"address": "u1@example.org"})").status,
              200);
    EXPECT_EQ(c.request("POST", "/v1/accounts/acct_a/suppressions", key, R"({"address": "nope"})").status, 400);
    EXPECT_EQ(c.request("POST", "/v1/accounts/acct_a/suppressions", key, R"({"address": 5})").status, 400);
    EXPECT_EQ(c.request("POST", "/v1/accounts/acct_a/suppressions", key, "{not json").status, 400);
    std::set<std::string> seen;
    std::string after;
    for (int page = 0; page < 10; ++page) {
      auto r =
          c.request("GET", "/v1/accounts/acct_a/suppressions?limit=10" + (after.empty() ? "" : "&after=" + after), key);
      ASSERT_EQ(r.status, 200);
      simdjson::dom::parser p;
      simdjson::padded_string ps(r.body);
      simdjson::dom::element doc;
      ASSERT_EQ(p.parse(ps).get(doc), simdjson::SUCCESS) << r.body;
      simdjson::dom::array items;
      ASSERT_EQ(doc["items"].get(items), simdjson::SUCCESS) << r.body;
      for (simdjson::dom::element item : items) {
        std::string_view a;
        ASSERT_EQ(item["address"].get(a), simdjson::SUCCESS) << r.body;
        seen.insert(std::string(a));
      }
      std::string_view next;
      if (doc["next"].get(next) != simdjson::SUCCESS) break;
      after = std::string(next);
    }
    EXPECT_EQ(seen.size(), 25u);
    EXPECT_TRUE(seen.count("u7@example.org"));
    auto chk = c.request("GET", "/v1/accounts/acct_a/suppressions/u7@EXAMPLE.org", key);
    EXPECT_NE(chk.body.find("\"suppressed\":true"), std::string::npos);
    EXPECT_EQ(c.request("DELETE", "/v1/accounts/acct_a/suppressions/u7%40example.org", key).status, 204);
    EXPECT_EQ(c.request("DELETE", "/v1/accounts/acct_a/suppressions/u7@example.org", key).status, 404);
    chk = c.request("GET", "/v1/accounts/acct_a/suppressions/u7@example.org", key);
    EXPECT_NE(chk.body.find("\"suppressed\":false"), std::string::npos);
  });
}

TEST_F(ApiTest, MessagesAreValidatedLikeTheStreamAndOutcomesAreReadBack) {
  std::string key = make_key("user", "acct_a");
  seed_account_a();
  rows(
      "INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port) VALUES"
      " ('mbx_b', 'acct_b', 'b@b.example', 'smtp.b.example', 587) RETURNING 1");
  run([&](int port) {
    Client c(port);
    auto r = c.request("POST", "/v1/messages", key, replace(kJob, "%N%", "7"));
    EXPECT_EQ(r.status, 202) << r.body;
    EXPECT_NE(r.body.find("\"id\":\"job-7\""), std::string::npos);
    r = c.request("POST", "/v1/messages", key, R"({"v": 1, "id": "j", "account": "acct_a", "mailbox": "mbx_a"})");
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("\"field\":\"to"), std::string::npos) << r.body;
    r = c.request("POST", "/v1/messages", key, replace(replace(kJob, "%N%", "8"), "\"mbx_a\"", "\"mbx_b\""));
    EXPECT_EQ(r.status, 422);  // another account's mailbox
    r = c.request("POST", "/v1/messages", key, replace(replace(kJob, "%N%", "9"), "\"acct_a\"", "\"acct_b\""));
    EXPECT_EQ(r.status, 403);
    r = c.request("GET", "/v1/messages/job-1", key);
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("\"status\":\"delivered\""), std::string::npos);
    EXPECT_EQ(c.request("GET", "/v1/messages/job-unknown", key).status, 404);
    EXPECT_EQ(c.request("GET", "/v1/messages/job-1", make_key("user", "acct_b")).status, 404);
  });
  ASSERT_EQ(injected_.size(), 1u);
  EXPECT_NE(injected_[0].find("job-7"), std::string::npos);
}

TEST_F(ApiTest, AMessageWhoseOutcomeAgedOutSaysSoWithItsLastStatus) {
  std::string key = make_key("user", "acct_a");
  // What retention leaves behind once a job's rows are gone (store/delivery_events.h).
  rows(
      "INSERT INTO delivery_event_tombstones (job_id, account, last_status, last_event_at, aged_at) VALUES"
      " ('job-old', 'acct_a', 'bounced', '2026-01-02T03:04:05Z', '2026-04-02T00:00:00Z') RETURNING 1");
  run([&](int port) {
    Client c(port);
    auto r = c.request("GET", "/v1/messages/job-old", key);
    EXPECT_EQ(r.status, 410) << r.body;
    EXPECT_NE(r.body.find("\"code\":\"aged_out\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\"last_status\":\"bounced\""), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("\"last_event_at\":\"2026-01-02T03:04:05.000Z\""), std::string::npos) << r.body;
    // Another account's key learns nothing, not even that the job existed.
    EXPECT_EQ(c.request("GET", "/v1/messages/job-old", make_key("user", "acct_b")).status, 404);
    EXPECT_EQ(c.request("GET", "/v1/messages/job-never", key).status, 404);
  });
}

TEST_F(ApiTest, InjectedJobsReachTheRedisStream) {
  deliverd::testing::RedisServer redis;
  auto cfg = queue::parse_redis_url(redis.url());
  ASSERT_TRUE(cfg) << cfg.error();
  queue::RedisClient* rc = queue::RedisClient::create(&loop_, *cfg);
  rc->connect([](bool, const std::string&) {});
  // What daemon/app.cpp wires: one XADD per validated job.
  deps_.inject = [rc](const std::string& json, std::function<void(core::Result<std::string, std::string>)> cb) {
    rc->command({"XADD", "deliverd:jobs", "*", "job", json}, [cb](const queue::RedisReply& r) {
      if (r.is_error()) return cb(core::Err(r.str));
      cb(r.str);
    });
  };
  on_stop_ = [rc] { rc->close(); };
  std::string key = make_key("user", "acct_a");
  seed_account_a();
  std::string job = replace(kJob, "%N%", "redis");
  run([&](int port) {
    Client c(port);
    auto r = c.request("POST", "/v1/messages", key, job);
    EXPECT_EQ(r.status, 202) << r.body;
    EXPECT_NE(r.body.find("\"stream_id\":\""), std::string::npos);
    EXPECT_EQ(c.request("POST", "/v1/messages", key, "{\"v\": 2}").status, 422);
  });
  auto entries = redis.xrange("deliverd:jobs");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].fields["job"], job);
}

TEST_F(ApiTest, MailboxSecretsAreSealedAndNeverReturned) {
  std::string key = make_key("user", "acct_a");
  run([&](int port) {
    Client c(port);
    auto r =
        c.request("POST", "/v1/mailboxes", key,
                  R"({"id": "mbx_s", "email": "s@acme.example", "smtp_host": "smtp.acme.example", "smtp_port": 587,)"
                  R"( "username": "s", "password": "Sup3r-Secret", "imap": {"host": "imap.acme.example",)"
                  R"( "port": 993, "username": "s", "password": "Imap-Secret"}})");
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.body.find("Secret"), std::string::npos);
    EXPECT_NE(r.body.find("\"account\":\"acct_a\""), std::string::npos);
    auto g = c.request("GET", "/v1/mailboxes/mbx_s", key);
    EXPECT_EQ(g.status, 200);
    EXPECT_EQ(g.body.find("Secret"), std::string::npos);
    EXPECT_NE(g.body.find("\"breaker\":\"closed\""), std::string::npos);
    EXPECT_EQ(
        c.request("POST", "/v1/mailboxes", key,
                  R"({"id": "mbx_s", "email": "s@acme.example", "smtp_host": "smtp.acme.example", "smtp_port": 587})")
            .status,
        409);
    r = c.request("POST", "/v1/mailboxes", key,
                  R"({"id": "mbx_w", "email": "w@acme.example", "smtp_host": "smtp.acme.example", "smtp_port": 587,)"
                  R"( "username": "w", "password": "wrong"})");
    EXPECT_EQ(r.status, 422);
    EXPECT_NE(r.body.find("\"step\":\"auth\""), std::string::npos);
    EXPECT_EQ(
        c.request("POST", "/v1/mailboxes", key,
                  R"({"id": "mbx_p", "email": "p@acme.example", "smtp_host": "smtp.acme.example", "smtp_port": 8025})")
            .status,
        422);
    // A password change is tested again before it is saved.
    EXPECT_EQ(c.request("PATCH", "/v1/mailboxes/mbx_s", key, R"({"password": "wrong"})").status, 422);
    EXPECT_EQ(c.request("PATCH", "/v1/mailboxes/mbx_s", key, R"({"password": "N3w-Secret"})").status, 200);
    auto t = c.request("POST", "/v1/mailboxes/mbx_s/test", key);
    EXPECT_NE(t.body.find("\"ok\":true"), std::string::npos) << t.body;
  });
  EXPECT_EQ(scalar("SELECT count(*) FROM mailboxes WHERE id = 'mbx_w'"), "0");
  auto enc = rows("SELECT password_enc::text, imap_password_enc::text FROM mailboxes WHERE id = 'mbx_s'");
  ASSERT_EQ(enc.size(), 1u);
  EXPECT_EQ(enc[0][0].find(store::encode_bytea("N3w-Secret").substr(2)), std::string::npos);
  auto opened = store::open_mailbox_secret(*box_, *store::decode_bytea(enc[0][0]), "acct_a", "mbx_s",
                                           store::MailboxSecret::Password);
  ASSERT_TRUE(opened);
  EXPECT_EQ(*opened, "N3w-Secret");
  auto imap = store::open_mailbox_secret(*box_, *store::decode_bytea(enc[0][1]), "acct_a", "mbx_s",
                                         store::MailboxSecret::ImapPassword);
  ASSERT_TRUE(imap);
  EXPECT_EQ(*imap, "Imap-Secret");
}

TEST_F(ApiTest, AnOAuthGrantIsShownWithoutItsTokenAndStaysWithItsServer) {
  store::Mailbox m;
  m.account = "acct_a";
  m.id = "mbx_o";
  m.email = "o@acme.example";
  m.smtp_host = "smtp.acme.example";
  m.username = "o@acme.example";
  m.oauth_provider = "google";
  m.oauth_refresh_token = "1//Refresh-Secret";
  ASSERT_TRUE(store::add_mailbox(pg_->conninfo(), m, *box_).ok());
  std::string key = make_key("user", "acct_a");
  run([&](int port) {
    Client c(port);
    auto g = c.request("GET", "/v1/mailboxes/mbx_o", key);
    ASSERT_EQ(g.status, 200) << g.body;
    EXPECT_EQ(g.body.find("Secret"), std::string::npos) << g.body;
    EXPECT_NE(g.body.find(R"("oauth":{"provider":"google","user":"o@acme.example","access_token_expires_at":null,)"
                          R"("last_refresh_at":null,"last_refresh_result":null})"),
              std::string::npos)
        << g.body;
    EXPECT_NE(g.body.find(R"("disabled":false,"disabled_reason":null)"), std::string::npos) << g.body;
    // Access tokens of this grant go to the server it was given for, nowhere else.
    auto p = c.request("PATCH", "/v1/mailboxes/mbx_o", key, R"({"smtp_host": "smtp.elsewhere.example"})");
    EXPECT_EQ(p.status, 422) << p.body;
    EXPECT_NE(p.body.find(R"("code":"credentials_required")"), std::string::npos) << p.body;
    EXPECT_NE(p.body.find(R"("field":"oauth")"), std::string::npos) << p.body;
  });
  EXPECT_EQ(scalar("SELECT smtp_host FROM mailboxes WHERE id = 'mbx_o'"), "smtp.acme.example");
  scalar("UPDATE mailboxes SET disabled = true, disabled_reason = 'oauth_revoked', oauth_refresh_result ="
         " 'oauth_revoked', oauth_refreshed_at = '2026-12-02T10:00:00Z' WHERE id = 'mbx_o' RETURNING 1");
  run([&](int port) {
    Client c(port);
    auto g = c.request("GET", "/v1/mailboxes/mbx_o", key);
    ASSERT_EQ(g.status, 200) << g.body;
    EXPECT_NE(g.body.find(R"("disabled":true,"disabled_reason":"oauth_revoked")"), std::string::npos) << g.body;
    EXPECT_NE(g.body.find(R"("last_refresh_at":"2026-12-02T10:00:00Z","last_refresh_result":"oauth_revoked")"),
              std::string::npos)
        << g.body;
  });
}

// "oauth" in a create or PATCH: sealed, never shown; the refresh token the connection test
// rotated to is the one stored; a password instead, or null, removes the grant; a provider the
// config lacks is refused before any test.
TEST_F(ApiTest, AnOAuthGrantIsGivenThroughTheApiAndReplacedWhole) {
  deps_.oauth_provider_known = [](const std::string& name) { return name == "google"; };
  deps_.test_mailbox = [this](const MailboxProbeRequest& r, std::function<void(MailboxTestResult)> done) {
    ++probes_;
    MailboxTestResult t;
    t.ok = true;
    if (r.mailbox.oauth_refresh_token == "rt-given") t.rotated_refresh_token = "rt-rotated";
    done(t);
  };
  std::string key = make_key("user", "acct_a");
  auto stored_refresh = [this]() -> std::string {
    std::string hex = scalar("SELECT coalesce(encode(oauth_refresh_enc, 'hex'), '') FROM mailboxes WHERE id = 'mbx_g'");
    if (hex.empty()) return "";
    auto sealed = core::from_hex(hex);
    auto plain = store::open_mailbox_secret(*box_, *sealed, "acct_a", "mbx_g", store::MailboxSecret::OAuthRefresh);
    return plain ? *plain : "unreadable: " + plain.error();
  };
  const std::string base = R"({"id":"mbx_g","email":"g@acme.example","smtp_host":"smtp.gmail.example",)"
                           R"("smtp_port":587,"security":"starttls",)";
  run([&](int port) {
    Client c(port);
    auto unknown = c.request("POST", "/v1/mailboxes", key,
                             base + R"("oauth":{"provider":"yahoo","refresh_token":"rt-given"}})");
    EXPECT_EQ(unknown.status, 422) << unknown.body;
    EXPECT_NE(unknown.body.find(R"("code":"unknown_provider")"), std::string::npos) << unknown.body;
    EXPECT_EQ(probes_.load(), 0);
    auto half = c.request("POST", "/v1/mailboxes", key, base + R"("oauth":{"provider":"google"}})");
    EXPECT_EQ(half.status, 400) << half.body;
    EXPECT_NE(half.body.find("oauth.refresh_token: required"), std::string::npos) << half.body;

    auto created = c.request("POST", "/v1/mailboxes", key, base + R"("oauth":{"provider":"google","refresh_token":"rt-given"}})");
    ASSERT_EQ(created.status, 201) << created.body;
    EXPECT_EQ(created.body.find("rt-"), std::string::npos) << created.body;
    EXPECT_NE(created.body.find(R"("username":"g@acme.example")"), std::string::npos) << "user defaults to the email";
    EXPECT_EQ(stored_refresh(), "rt-rotated");
    EXPECT_EQ(scalar("SELECT oauth_provider FROM mailboxes WHERE id = 'mbx_g'"), "google");

    auto pw = c.request("PATCH", "/v1/mailboxes/mbx_g", key, R"({"username":"g@acme.example","password":"app-pass"})");
    ASSERT_EQ(pw.status, 200) << pw.body;
    EXPECT_NE(pw.body.find(R"("has_password":true)"), std::string::npos) << pw.body;
    EXPECT_NE(pw.body.find(R"("oauth":null)"), std::string::npos) << pw.body;
    EXPECT_EQ(stored_refresh(), "");

    auto again = c.request("PATCH", "/v1/mailboxes/mbx_g", key,
                           R"({"oauth":{"provider":"google","user":"g2@acme.example","refresh_token":"rt-second"}})");
    ASSERT_EQ(again.status, 200) << again.body;
    EXPECT_NE(again.body.find(R"("has_password":false)"), std::string::npos) << again.body;
    EXPECT_NE(again.body.find(R"("oauth":{"provider":"google","user":"g2@acme.example")"), std::string::npos) << again.body;
    EXPECT_EQ(stored_refresh(), "rt-second");
    scalar("UPDATE mailboxes SET disabled = true, disabled_reason = 'oauth_revoked' WHERE id = 'mbx_g' RETURNING 1");
    auto reconnect = c.request("PATCH", "/v1/mailboxes/mbx_g", key,
                               R"({"oauth":{"provider":"google","user":"g2@acme.example","refresh_token":"rt-third"}})");
    ASSERT_EQ(reconnect.status, 200) << reconnect.body;
    EXPECT_NE(reconnect.body.find(R"("disabled":false,"disabled_reason":null)"), std::string::npos) << reconnect.body;

    auto both = c.request("PATCH", "/v1/mailboxes/mbx_g", key,
                          R"({"password":"x","oauth":{"provider":"google","refresh_token":"rt-4"}})");
    EXPECT_EQ(both.status, 400) << both.body;
    auto none = c.request("PATCH", "/v1/mailboxes/mbx_g", key, R"({"oauth":null})");
    ASSERT_EQ(none.status, 200) << none.body;
    EXPECT_NE(none.body.find(R"("oauth":null)"), std::string::npos) << none.body;
  });
  EXPECT_EQ(stored_refresh(), "");
  EXPECT_EQ(scalar("SELECT coalesce(oauth_provider, '-') FROM mailboxes WHERE id = 'mbx_g'"), "-");
}

TEST_F(ApiTest, PolicyOverridesAreSetShownAndClearedWithoutAConnectionTest) {
  // An operator's key: a warm-up start in the past and a faster ramp loosen [policy], which
  // account-bound keys may not (TenantBoundaryTest covers that).
  std::string key = make_key("admin", "acct_a");
  run([&](int port) {
    Client c(port);
    auto r = c.request("POST", "/v1/mailboxes", key,
                       R"({"id": "mbx_r", "email": "r@acme.example", "smtp_host": "smtp.acme.example",)"
                       R"( "smtp_port": 587, "username": "r", "password": "Sup3r-Secret",)"
                       R"( "policy": {"ramp_start": 5, "ramp_step": 3, "warmup_start": "2026-11-01"}})");
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_NE(r.body.find(R"("policy":{"ramp_start":5,"ramp_step":3,"ramp_max":null,)"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find(R"("warmup_start":"2026-11-01","timezone":null})"), std::string::npos) << r.body;
    const int probes_after_create = probes_;

    r = c.request("PATCH", "/v1/mailboxes/mbx_r", key,
                  R"({"policy": {"ramp_start": null, "ramp_max": 40, "min_gap_s": 90, "timezone": "Europe/Berlin",)"
                  R"( "window_days": 31, "window_start_hour": 8, "window_end_hour": 18}})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(probes_, probes_after_create) << "a policy change needs no connection test";
    auto g = c.request("GET", "/v1/mailboxes/mbx_r", key);
    EXPECT_NE(g.body.find(R"("policy":{"ramp_start":null,"ramp_step":3,"ramp_max":40,"min_gap_s":90,)"),
              std::string::npos)
        << g.body;
    EXPECT_NE(g.body.find(R"("window_days":31,"window_start_hour":8,"window_end_hour":18,)"), std::string::npos);
    EXPECT_NE(g.body.find(R"("timezone":"Europe/Berlin"})"), std::string::npos);

    // Bad values are refused with the field's name, and nothing changes.
    const std::pair<const char*, const char*> bad[] = {
        {R"({"policy": {"ramp_max": -1}})", "ramp_max"},
        {R"({"policy": {"ramp_max": "ten"}})", "policy.ramp_max"},
        {R"({"policy": {"warmup_start": "2026-02-30"}})", "warmup_start"},
        {R"({"policy": {"timezone": "../etc/passwd"}})", "timezone"},
        {R"({"policy": {"timezone": ""}})", "policy.timezone"},
        {R"({"policy": {"window_end_hour": 25}})", "window_end_hour"},
        {R"({"policy": {"daily_limit": 10}})", "policy.daily_limit: not a policy setting"},
        {R"({"policy": 5})", "policy: must be an object"}};
    for (const auto& [body, field] : bad) {
      auto b = c.request("PATCH", "/v1/mailboxes/mbx_r", key, body);
      EXPECT_EQ(b.status, 400) << body << " " << b.body;
      EXPECT_NE(b.body.find(field), std::string::npos) << body << " " << b.body;
    }
  });
  auto row = rows("SELECT coalesce(ramp_start::text, 'null'), ramp_step, ramp_max, min_gap_s, timezone, warmup_start,"
                  " window_days FROM mailboxes WHERE id = 'mbx_r'");
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0], (std::vector<std::string>{"null", "3", "40", "90", "Europe/Berlin", "2026-11-01", "31"}));
}

TEST_F(ApiTest, ExportThenEraseLeavesOnlySuppressionHashes) {
  std::string admin = make_key("admin");
  std::string own_key_id;
  std::string own = make_key("user", "acct_gdpr", "", "", &own_key_id);
  make_key("user", "acct_keep");
  rows(
      "INSERT INTO delivery_events (job_id, account, mailbox, recipient, recipient_sha256, status, reply_code, "
      "reply_text)"
      " VALUES ('gj1', 'acct_gdpr', 'mbx_g', 'dora@example.net', sha256('dora@example.net'), 'delivered', 250, 'ok'),"
      " ('gj2', 'acct_gdpr', 'mbx_g', 'erin@example.net', sha256('erin@example.net'), 'bounced', 550,"
      " '5.1.1 <erin@example.net> unknown'),"
      " ('kj1', 'acct_keep', 'mbx_k', 'erin@example.net', sha256('erin@example.net'), 'delivered', 250, 'ok')"
      " RETURNING 1");
  run([&](int port) {
    Client c(port);
    ASSERT_EQ(c.request("POST", "/v1/mailboxes", own,
                        R"({"id": "mbx_g", "email": "gina@gdpr.example", "smtp_host": "smtp.gdpr.example",)"
                        R"( "smtp_port": 465, "security": "tls", "username": "gina-login", "password": "G-Secret"})")
                  .status,
              201);
    ASSERT_EQ(
        c.request("POST", "/v1/accounts/acct_gdpr/suppressions", own, R"({"address": "fred@example.net"})").status,
        201);
    ASSERT_EQ(
        c.request("POST", "/v1/accounts/acct_gdpr/suppressions", own, R"({"address": "erin@example.net"})").status,
        201);

    // Erasing one address first: its events are scrubbed in this account only.
    auto ea = c.request("POST", "/v1/accounts/acct_gdpr/erase-address", own, R"({"address": "dora@example.net"})");
    EXPECT_EQ(ea.status, 200) << ea.body;
    EXPECT_NE(ea.body.find("\"delivery_events_scrubbed\":1"), std::string::npos);

    auto ex = c.request("GET", "/v1/accounts/acct_gdpr/export", own);
    ASSERT_EQ(ex.status, 200);
    simdjson::dom::parser p;
    simdjson::padded_string ps(ex.body);
    simdjson::dom::element doc;
    ASSERT_EQ(p.parse(ps).get(doc), simdjson::SUCCESS) << ex.body;
    EXPECT_EQ(doc["account"].get_string().value(), "acct_gdpr");
    EXPECT_EQ(doc["mailboxes"].get_array().value().size(), 1u);
    EXPECT_EQ(doc["mailboxes"].at(0)["email"].get_string().value(), "gina@gdpr.example");
    EXPECT_EQ(doc["suppressions"].get_array().value().size(), 3u);  // fred, erin, dora (hash only)
    EXPECT_EQ(doc["delivery_events"].get_array().value().size(), 2u);
    EXPECT_EQ(doc["api_keys"].get_array().value().size(), 1u);
    EXPECT_EQ(ex.body.find("G-Secret"), std::string::npos);
    EXPECT_EQ(ex.body.find("dora@"), std::string::npos);
    EXPECT_NE(ex.body.find("fred@example.net"), std::string::npos);
    EXPECT_NE(ex.body.find("5.1.1 <erin@example.net>"), std::string::npos);

    auto er = c.request("DELETE", "/v1/accounts/acct_gdpr", admin);
    EXPECT_EQ(er.status, 200) << er.body;
    EXPECT_EQ(c.request("GET", "/v1/accounts/acct_gdpr/export", own).status, 401);  // its key is gone
    auto after = c.request("GET", "/v1/accounts/acct_gdpr/export", admin);
    EXPECT_NE(after.body.find("\"mailboxes\":[]"), std::string::npos) << after.body;
    EXPECT_NE(after.body.find("\"delivery_events\":[]"), std::string::npos);
  });
  // No row of any table holds the account's data, except suppression hashes.
  const std::vector<std::string> personal = {"gina",  "gdpr.example", "mbx_g",    "dora@",
                                             "erin@", "fred@",        own_key_id, "G-Secret"};
  auto tables = rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
  ASSERT_GE(tables.size(), 5u);
  for (const auto& t : tables) {
    auto all = rows("SELECT t::text FROM \"" + t[0] + "\" t");
    for (const auto& row : all) {
      if (row[0].find("acct_keep") != std::string::npos) continue;  // the other account keeps its data
      for (const auto& needle : personal) EXPECT_EQ(row[0].find(needle), std::string::npos) << t[0] << ": " << row[0];
    }
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE account = 'acct_gdpr' AND address IS NULL"), "3");
  EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE account = 'acct_gdpr' AND address IS NOT NULL"), "0");
  EXPECT_EQ(
      scalar("SELECT count(*) FROM delivery_events WHERE account = 'acct_keep' AND recipient = 'erin@example.net'"),
      "1");  // another account's data is untouched
  EXPECT_EQ(scalar("SELECT count(*) FROM api_keys WHERE account = 'acct_keep'"), "1");
  EXPECT_EQ(scalar("SELECT count(*) FROM audit_log WHERE action = 'account.erase'"), "1");
}

}  // namespace
}  // namespace deliverd::admin::testing
