// The hostile-tenant suite: two accounts, acct_a and acct_b, that share mailbox and job ids; every
// /v1 route tried by every role against its own account and the other one. Each request starts
// from the same seeded database; the answer's status and body and the database afterwards are
// checked, and for a key bound to acct_a two rules hold on every route: no answer names anything
// of acct_b's, and nothing of acct_b's changes.
#include <functional>
#include <map>
#include <set>

#include "core/metrics.h"
#include "store/mailboxes.h"
#include "tests/integration/admin/api_fixture.h"

namespace deliverd::admin::testing {
namespace {

struct Actor {
  std::string name, role, account;  // account "" = unbound
  bool bound_to_a() const { return account == "acct_a"; }
  bool is_operator() const { return role == "owner" || role == "admin"; }
};

const std::vector<Actor> kActors = {{"owner", "owner", ""},
                                    {"admin", "admin", ""},
                                    {"admin_a", "admin", "acct_a"},
                                    {"user_a", "user", "acct_a"},
                                    {"readonly_a", "readonly", "acct_a"}};

// What only acct_b has: a bound acct_a key must never see any of it.
const std::vector<std::string> kOnlyB = {"acct_b", "bee.example", "mbx_only_b", "job-only-b", "key_b_victim0"};

std::string seed_sql(const std::map<std::string, store::CreatedApiKey>& keys) {
  std::string sql =
      "TRUNCATE api_keys, audit_log, delivery_events, suppressions, inbound_watch, mailboxes;"
      "INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port, security, username, paused, paused_by) VALUES"
      " ('mbx_1', 'acct_a', 'a1@aaa.example', 'smtp.aaa.example', 587, 'starttls', 'a1', true, 'daemon'),"
      " ('mbx_1', 'acct_b', 'b1@bee.example', 'smtp.bee.example', 587, 'starttls', 'b1', true, 'daemon'),"
      " ('mbx_only_b', 'acct_b', 'b2@bee.example', 'smtp.bee.example', 587, 'starttls', 'b2', false, NULL);"
      "INSERT INTO suppressions (account, address, address_sha256, reason, source) VALUES"
      " ('acct_a', 'bob@x.example', sha256('bob@x.example'), 'manual', 'api'),"
      " ('acct_a', 'carol@x.example', sha256('carol@x.example'), 'unsubscribed', 'one_click'),"
      " ('acct_a', NULL, sha256('dave@x.example'), 'erased', 'erasure'),"
      " ('acct_b', 'bob@x.example', sha256('bob@x.example'), 'manual', 'api'),"
      " ('acct_b', 'carol@x.example', sha256('carol@x.example'), 'unsubscribed', 'one_click'),"
      " ('acct_b', NULL, sha256('dave@x.example'), 'erased', 'erasure');"
      "INSERT INTO delivery_events (job_id, account, mailbox, recipient, recipient_sha256, status) VALUES"
      " ('job-1', 'acct_a', 'mbx_1', 'erin@x.example', sha256('erin@x.example'), 'delivered'),"
      " ('job-1', 'acct_b', 'mbx_1', 'erin@x.example', sha256('erin@x.example'), 'bounced'),"
      " ('job-only-b', 'acct_b', 'mbx_only_b', 'erin@x.example', sha256('erin@x.example'), 'delivered');";
  for (const auto& [name, k] : keys) {
    std::string role = name.rfind("owner", 0) == 0 ? "owner"
                       : name.rfind("admin", 0) == 0 ? "admin"
                       : name.rfind("readonly", 0) == 0 ? "readonly"
                                                        : "user";
    std::string account = name == "owner" || name == "admin" ? "NULL"
                          : name.find("_b") != std::string::npos ? "'acct_b'"
                                                                 : "'acct_a'";
    sql += "INSERT INTO api_keys (id, prefix, token_sha256, role, account, created_by) VALUES ('" + k.key.id + "', '" +
           k.key.prefix + "', '" + store::encode_bytea(k.key.token_sha256) + "'::bytea, '" + role + "', " + account +
           ", 'test');";
  }
  return sql;
}

// Everything stored for acct_b, as text: what a key bound to acct_a must never change.
std::string fingerprint_b() {
  std::string out;
  for (const char* q :
       {"SELECT string_agg(t::text, '|' ORDER BY t::text) FROM (SELECT id, email, smtp_host, smtp_port, security,"
        " paused, paused_by, disabled, password_enc, ramp_max FROM mailboxes WHERE account = 'acct_b') t",
        "SELECT string_agg(t::text, '|' ORDER BY t::text) FROM (SELECT address, address_sha256, reason, source"
        " FROM suppressions WHERE account = 'acct_b') t",
        "SELECT string_agg(t::text, '|' ORDER BY t::text) FROM (SELECT job_id, recipient, status"
        " FROM delivery_events WHERE account = 'acct_b') t",
        "SELECT string_agg(t::text, '|' ORDER BY t::text) FROM (SELECT id, role, revoked_at IS NULL"
        " FROM api_keys WHERE account = 'acct_b') t"})
    out += ApiTest::scalar(q) + "\n";
  return out;
}

struct Request {
  std::string method, path, body;
};

// One route: the request that targets an account, and what each actor gets. `expect` answers the
// status; `check` asserts the body and the database after a request that was let through.
struct Route {
  std::string name;
  std::function<Request(const std::string& target)> make;
  std::function<int(const Actor&, bool own)> expect;
  std::function<void(const Actor&, const std::string& target, const HttpReply&)> check;
};

bool sees(const Actor& a, bool own) { return a.account.empty() || own; }

// Status for a read of the target's data by any role.
int read_status(const Actor& a, bool own) { return sees(a, own) ? 200 : 403; }
// Status for a write: readonly keys never write; others where they see.
int write_status(const Actor& a, bool own, int ok) {
  if (a.role == "readonly") return 403;
  return sees(a, own) ? ok : 403;
}

std::string job_for(const std::string& target, const std::string& mailbox) {
  return R"({"v": 1, "id": "job-new", "account": ")" + target + R"(", "mailbox": ")" + mailbox +
         R"(", "to": {"email": "frank@x.example"}, "subject": "Hi", "text": "Hello"})";
}

const std::string kNewMailbox =
    R"(, "email": "new@%D%", "smtp_host": "smtp.%D%", "smtp_port": 587, "security": "starttls",)"
    R"( "username": "new", "password": "pw-new"})";

std::string domain_of(const std::string& target) { return target == "acct_a" ? "aaa.example" : "bee.example"; }

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p; (p = s.find(from)) != std::string::npos;) s.replace(p, from.size(), to);
  return s;
}

class TenantBoundaryTest : public ApiTest {
 protected:
  void SetUp() override {
    ApiTest::SetUp();
    for (const char* name : {"owner", "admin", "admin_a", "user_a", "readonly_a", "owner_b", "user_a_victim",
                             "user_b_victim"})
      keys_[name] = store::generate_api_key();
    // A fixed id for acct_b's victim key, so "it never appears in an acct_a answer" can be checked.
    keys_["user_b_victim"].key.id = "key_b_victim0";
    // A per-tenant series, as the policy gate registers it.
    core::Registry::global()
        .gauge("deliverd_policy_breaker_state", "breaker", {"account", "mailbox"})
        .with({"acct_b", "mbx_only_b"})
        .set(2);
  }

  std::string token(const Actor& a) { return keys_.at(a.name).token; }
  std::string key_id(const std::string& name) { return keys_.at(name).key.id; }

  std::map<std::string, store::CreatedApiKey> keys_;
};

TEST_F(TenantBoundaryTest, EveryRouteByEveryRoleAgainstItsOwnAndTheOtherAccount) {
  const std::vector<Route> routes = {
      {"list mailboxes", [](const std::string& t) { return Request{"GET", "/v1/mailboxes?account=" + t, ""}; },
       read_status,
       [](const Actor&, const std::string& t, const HttpReply& r) {
         EXPECT_NE(r.body.find("\"account\":\"" + t + "\""), std::string::npos) << r.body;
         EXPECT_EQ(r.body.find(t == "acct_a" ? "acct_b" : "acct_a"), std::string::npos) << r.body;
         EXPECT_NE(r.body.find("\"breaker\":\"closed\""), std::string::npos) << "own figures: " << r.body;
       }},
      {"create mailbox",
       [](const std::string& t) {
         return Request{"POST", "/v1/mailboxes",
                        R"({"id": "mbx_new", "account": ")" + t + "\"" + replace_all(kNewMailbox, "%D%", domain_of(t))};
       },
       [](const Actor& a, bool own) { return write_status(a, own, 201); },
       [](const Actor&, const std::string& t, const HttpReply& r) {
         EXPECT_EQ(scalar("SELECT account FROM mailboxes WHERE id = 'mbx_new'"), t);
         EXPECT_EQ(r.body.find("pw-new"), std::string::npos);
       }},
      {"create a mailbox with an id the account already has",
       [](const std::string& t) {
         return Request{"POST", "/v1/mailboxes",
                        R"({"id": "mbx_1", "account": ")" + t + "\"" + replace_all(kNewMailbox, "%D%", domain_of(t))};
       },
       [](const Actor& a, bool own) { return write_status(a, own, 409); },
       [](const Actor&, const std::string& t, const HttpReply& r) {
         EXPECT_NE(r.body.find("\"conflict\""), std::string::npos);
         EXPECT_EQ(scalar("SELECT email FROM mailboxes WHERE id = 'mbx_1' AND account = '" + t + "'"),
                   t == "acct_a" ? "a1@aaa.example" : "b1@bee.example");
       }},
      {"get mailbox", [](const std::string& t) { return Request{"GET", "/v1/mailboxes/mbx_1?account=" + t, ""}; },
       read_status,
       [](const Actor&, const std::string& t, const HttpReply& r) {
         EXPECT_NE(r.body.find("\"account\":\"" + t + "\""), std::string::npos) << r.body;
         EXPECT_NE(r.body.find("\"paused_by\":\"daemon\""), std::string::npos) << r.body;
       }},
      {"change mailbox",
       [](const std::string& t) {
         return Request{"PATCH", "/v1/mailboxes/mbx_1?account=" + t, R"({"email": "renamed@)" + domain_of(t) + "\"}"};
       },
       [](const Actor& a, bool own) { return write_status(a, own, 200); },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT email FROM mailboxes WHERE id = 'mbx_1' AND account = '" + t + "'"),
                   "renamed@" + domain_of(t));
       }},
      {"delete mailbox", [](const std::string& t) { return Request{"DELETE", "/v1/mailboxes/mbx_1?account=" + t, ""}; },
       [](const Actor& a, bool own) { return write_status(a, own, 204); },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT count(*) FROM mailboxes WHERE id = 'mbx_1' AND account = '" + t + "'"), "0");
         EXPECT_EQ(scalar("SELECT count(*) FROM mailboxes WHERE id = 'mbx_1'"), "1") << "the other account's stays";
       }},
      {"pause mailbox",
       [](const std::string& t) { return Request{"POST", "/v1/mailboxes/mbx_only_b/pause?account=" + t, ""}; },
       [](const Actor& a, bool own) {
         if (a.role == "readonly" || (!a.account.empty() && !own)) return 403;
         return own ? 404 : 200;  // only acct_b has mbx_only_b
       },
       [](const Actor& a, const std::string&, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT paused_by FROM mailboxes WHERE id = 'mbx_only_b'"),
                   a.is_operator() ? "operator" : "tenant");
       }},
      {"resume a mailbox the daemon paused",
       [](const std::string& t) { return Request{"POST", "/v1/mailboxes/mbx_1/resume?account=" + t, ""}; },
       [](const Actor& a, bool own) {
         if (!a.is_operator()) return 403;  // the daemon's pause: operators only
         return sees(a, own) ? 200 : 403;
       },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT paused FROM mailboxes WHERE id = 'mbx_1' AND account = '" + t + "'"), "f");
       }},
      {"breaker reset",
       [](const std::string& t) { return Request{"POST", "/v1/mailboxes/mbx_1/breaker-reset?account=" + t, ""}; },
       [](const Actor& a, bool own) { return a.is_operator() && sees(a, own) ? 200 : 403; },
       [](const Actor&, const std::string&, const HttpReply& r) {
         EXPECT_NE(r.body.find("\"breaker\":\"closed\""), std::string::npos);
       }},
      {"connection test", [](const std::string& t) { return Request{"POST", "/v1/mailboxes/mbx_1/test?account=" + t, ""}; },
       [](const Actor& a, bool own) { return write_status(a, own, 200); },
       [](const Actor&, const std::string&, const HttpReply& r) {
         EXPECT_NE(r.body.find("\"ok\":true"), std::string::npos) << r.body;
       }},
      {"list suppressions", [](const std::string& t) { return Request{"GET", "/v1/accounts/" + t + "/suppressions", ""}; },
       read_status,
       [](const Actor&, const std::string&, const HttpReply& r) {
         EXPECT_NE(r.body.find("carol@x.example"), std::string::npos) << r.body;
       }},
      {"add suppression",
       [](const std::string& t) {
         return Request{"POST", "/v1/accounts/" + t + "/suppressions", R"({"address": "gina@x.example"})"};
       },
       [](const Actor& a, bool own) { return write_status(a, own, 201); },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT account FROM suppressions WHERE address = 'gina@x.example'"), t);
       }},
      {"check suppression",
       [](const std::string& t) { return Request{"GET", "/v1/accounts/" + t + "/suppressions/carol@x.example", ""}; },
       read_status,
       [](const Actor&, const std::string&, const HttpReply& r) {
         EXPECT_NE(r.body.find("\"suppressed\":true"), std::string::npos);
       }},
      {"remove a suppression the account added",
       [](const std::string& t) { return Request{"DELETE", "/v1/accounts/" + t + "/suppressions/bob@x.example", ""}; },
       [](const Actor& a, bool own) { return write_status(a, own, 204); },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE account = '" + t + "' AND address = 'bob@x.example'"),
                   "0");
       }},
      {"remove a one-click unsubscribe",
       [](const std::string& t) { return Request{"DELETE", "/v1/accounts/" + t + "/suppressions/carol@x.example", ""}; },
       [](const Actor& a, bool own) {
         if (a.role == "readonly" || !sees(a, own)) return 403;
         return a.is_operator() ? 204 : 403;
       },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE account = '" + t + "' AND source = 'one_click'"), "0");
         EXPECT_NE(scalar("SELECT target FROM audit_log WHERE action = 'suppression.remove'").find("one_click"),
                   std::string::npos);
       }},
      {"remove an erasure suppression",
       [](const std::string& t) { return Request{"DELETE", "/v1/accounts/" + t + "/suppressions/dave@x.example", ""}; },
       [](const Actor& a, bool own) {
         if (a.role == "readonly" || !sees(a, own)) return 403;
         return a.is_operator() ? 204 : 403;
       },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT count(*) FROM suppressions WHERE account = '" + t + "' AND source = 'erasure'"), "0");
         // The audit row names the erased address by its hash only.
         std::string target = scalar("SELECT target FROM audit_log WHERE action = 'suppression.remove'");
         EXPECT_EQ(target.find("dave"), std::string::npos) << target;
         EXPECT_EQ(target.rfind("sha256:", 0), 0u) << target;
       }},
      {"inject message", [](const std::string& t) { return Request{"POST", "/v1/messages", job_for(t, "mbx_1")}; },
       [](const Actor& a, bool own) { return write_status(a, own, 202); }, nullptr},
      {"inject through a mailbox only the other account has",
       [](const std::string& t) { return Request{"POST", "/v1/messages", job_for(t, "mbx_only_b")}; },
       [](const Actor& a, bool own) {
         if (a.role == "readonly" || !sees(a, own)) return 403;
         return own ? 422 : 202;  // acct_a has no mbx_only_b: its name resolves in acct_a only
       },
       nullptr},
      {"get message", [](const std::string& t) { return Request{"GET", "/v1/messages/job-1?account=" + t, ""}; },
       read_status,
       [](const Actor&, const std::string& t, const HttpReply& r) {
         EXPECT_NE(r.body.find("\"account\":\"" + t + "\""), std::string::npos) << r.body;
         EXPECT_NE(r.body.find(t == "acct_a" ? "\"status\":\"delivered\"" : "\"status\":\"bounced\""), std::string::npos);
       }},
      {"export account", [](const std::string& t) { return Request{"GET", "/v1/accounts/" + t + "/export", ""}; },
       read_status,
       [](const Actor&, const std::string& t, const HttpReply& r) {
         EXPECT_NE(r.body.find("\"account\":\"" + t + "\""), std::string::npos);
         EXPECT_EQ(r.body.find(t == "acct_a" ? "bee.example" : "aaa.example"), std::string::npos) << r.body;
       }},
      {"erase address",
       [](const std::string& t) {
         return Request{"POST", "/v1/accounts/" + t + "/erase-address", R"({"address": "erin@x.example"})"};
       },
       [](const Actor& a, bool own) { return write_status(a, own, 200); },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT count(*) FROM delivery_events WHERE account = '" + t + "' AND recipient IS NOT NULL"),
                   "0");
         EXPECT_NE(scalar("SELECT count(*) FROM delivery_events WHERE account <> '" + t + "' AND recipient IS NOT NULL"),
                   "0");
       }},
      {"erase account", [](const std::string& t) { return Request{"DELETE", "/v1/accounts/" + t, ""}; },
       [](const Actor& a, bool own) {
         if (!a.is_operator() || !sees(a, own)) return 403;
         // acct_b has an owner key: only an owner erases it.
         return !own && a.role != "owner" ? 403 : 200;
       },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT count(*) FROM mailboxes WHERE account = '" + t + "'"), "0");
         EXPECT_EQ(scalar("SELECT count(*) FROM mailboxes WHERE account <> '" + t + "'"), t == "acct_a" ? "2" : "1");
       }},
      {"list keys", [](const std::string& t) { return Request{"GET", "/v1/keys?account=" + t, ""}; },
       [](const Actor& a, bool own) { return a.is_operator() && sees(a, own) ? 200 : 403; },
       [](const Actor&, const std::string& t, const HttpReply& r) {
         EXPECT_NE(r.body.find("\"account\":\"" + t + "\""), std::string::npos);
         EXPECT_EQ(r.body.find(t == "acct_a" ? "acct_b" : "acct_a"), std::string::npos) << r.body;
       }},
      {"create key",
       [](const std::string& t) { return Request{"POST", "/v1/keys", R"({"role": "readonly", "account": ")" + t + "\"}"}; },
       [](const Actor& a, bool own) { return a.is_operator() && sees(a, own) ? 201 : 403; },
       [](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_EQ(scalar("SELECT count(*) FROM api_keys WHERE role = 'readonly' AND account = '" + t + "'"),
                   t == "acct_a" ? "2" : "1");
       }},
      {"revoke key",
       [this](const std::string& t) {
         return Request{"DELETE", "/v1/keys/" + key_id(t == "acct_a" ? "user_a_victim" : "user_b_victim"), ""};
       },
       [](const Actor& a, bool own) {
         if (!a.is_operator()) return 403;
         return sees(a, own) ? 204 : 404;  // another account's key is not there for a bound key
       },
       [this](const Actor&, const std::string& t, const HttpReply&) {
         EXPECT_NE(scalar("SELECT revoked_at FROM api_keys WHERE id = '" +
                          key_id(t == "acct_a" ? "user_a_victim" : "user_b_victim") + "'"),
                   "");
       }},
      {"metrics", [](const std::string&) { return Request{"GET", "/v1/metrics", ""}; },
       [](const Actor&, bool) { return 200; },
       [](const Actor& a, const std::string&, const HttpReply& r) {
         EXPECT_EQ(r.body.find("deliverd_policy_breaker_state{") != std::string::npos,
                   a.is_operator() && a.account.empty())
             << a.name;
       }},
      {"open metrics with a key", [](const std::string&) { return Request{"GET", "/metrics", ""}; },
       [](const Actor&, bool) { return 200; },
       [](const Actor& a, const std::string&, const HttpReply& r) {
         EXPECT_EQ(r.body.find("deliverd_policy_breaker_state{") != std::string::npos,
                   a.is_operator() && a.account.empty())
             << a.name;
       }},
  };
  const std::string seed = seed_sql(keys_);
  size_t checked = 0;
  run([&](int port) {
    Client c(port);
    for (const auto& route : routes)
      for (const auto& actor : kActors)
        for (const std::string target : {"acct_a", "acct_b"}) {
          rows(seed + "SELECT 1");
          const bool own = actor.account.empty() ? target == "acct_a" : actor.account == target;
          const Request req = route.make(target);
          const std::string before_b = fingerprint_b();
          HttpReply r = c.request(req.method, req.path, token(actor), req.body);
          const int want = route.expect(actor, own);
          SCOPED_TRACE(route.name + " by " + actor.name + " on " + target + ": " + req.method + " " + req.path + " -> " +
                       std::to_string(r.status) + " " + r.body);
          ASSERT_NE(r.status, 0);
          EXPECT_EQ(r.status, want);
          if (r.status == 403) {
            EXPECT_NE(r.body.find("\"forbidden\""), std::string::npos);
          }
          if (r.status < 300 && route.check) route.check(actor, target, r);
          if (actor.bound_to_a()) {
            for (const auto& secret : kOnlyB) EXPECT_EQ(r.body.find(secret), std::string::npos) << secret;
            EXPECT_EQ(fingerprint_b(), before_b) << "a key of acct_a changed acct_b";
          }
          ++checked;
        }
  });
  EXPECT_EQ(checked, routes.size() * kActors.size() * 2);
}

TEST_F(TenantBoundaryTest, IdsAreOnlyEverResolvedWithinAnAccount) {
  const std::string seed = seed_sql(keys_);
  run([&](int port) {
    Client c(port);
    rows(seed + "SELECT 1");
    // A bound key names its own account's mbx_1 without saying so.
    auto r = c.request("GET", "/v1/mailboxes/mbx_1", keys_["user_a"].token);
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("\"account\":\"acct_a\""), std::string::npos) << r.body;
    // acct_b's mbx_only_b is not found, with no hint that it exists elsewhere.
    auto missing = c.request("GET", "/v1/mailboxes/mbx_only_b", keys_["user_a"].token);
    EXPECT_EQ(missing.status, 404);
    EXPECT_EQ(missing.body, c.request("GET", "/v1/mailboxes/mbx_never", keys_["user_a"].token).body);
    // acct_a may take that id for itself: ids conflict only within an account.
    auto created = c.request("POST", "/v1/mailboxes", keys_["user_a"].token,
                             R"({"id": "mbx_only_b")" + replace_all(kNewMailbox, "%D%", "aaa.example"));
    EXPECT_EQ(created.status, 201) << created.body;
    EXPECT_EQ(scalar("SELECT count(*) FROM mailboxes WHERE id = 'mbx_only_b'"), "2");
    // An unbound key must say which account's mbx_1 it means.
    auto ambiguous = c.request("GET", "/v1/mailboxes/mbx_1", keys_["admin"].token);
    EXPECT_EQ(ambiguous.status, 400);
    EXPECT_NE(ambiguous.body.find("account_required"), std::string::npos);
    EXPECT_EQ(c.request("GET", "/v1/messages/job-1", keys_["admin"].token).status, 400);
    auto only = c.request("GET", "/v1/messages/job-only-b", keys_["admin"].token);
    EXPECT_EQ(only.status, 200);
    EXPECT_NE(only.body.find("\"account\":\"acct_b\""), std::string::npos);
    // A bound key's job-1 is its own account's.
    auto own_job = c.request("GET", "/v1/messages/job-1", keys_["readonly_a"].token);
    EXPECT_NE(own_job.body.find("\"status\":\"delivered\""), std::string::npos) << own_job.body;
    // An unbound key lists every account, paged with a cursor that names the account.
    auto page1 = c.request("GET", "/v1/mailboxes?limit=2", keys_["admin"].token);
    ASSERT_EQ(page1.status, 200) << page1.body;
    size_t at = page1.body.find("\"next\":\"");
    ASSERT_NE(at, std::string::npos) << page1.body;
    std::string next = page1.body.substr(at + 8, page1.body.find('"', at + 8) - at - 8);
    auto page2 = c.request("GET", "/v1/mailboxes?limit=2&after=" + next, keys_["admin"].token);
    ASSERT_EQ(page2.status, 200) << page2.body;
    EXPECT_NE(page2.body.find("\"next\":null"), std::string::npos) << page2.body;
    std::set<std::string> seen;
    for (const auto* body : {&page1.body, &page2.body})
      for (size_t p = 0; (p = body->find("\"email\":\"", p)) != std::string::npos; p += 9)
        seen.insert(body->substr(p + 9, body->find('"', p + 9) - p - 9));
    EXPECT_EQ(seen.size(), 4u);
  });
}

TEST_F(TenantBoundaryTest, ATenantLiftsOnlyItsOwnPause) {
  const std::string seed = seed_sql(keys_);
  run([&](int port) {
    Client c(port);
    rows(seed + "UPDATE mailboxes SET paused = false, paused_by = NULL WHERE account = 'acct_a'; SELECT 1");
    const std::string user = keys_["user_a"].token;
    ASSERT_EQ(c.request("POST", "/v1/mailboxes/mbx_1/pause", user).status, 200);
    EXPECT_EQ(scalar("SELECT paused_by FROM mailboxes WHERE account = 'acct_a'"), "tenant");
    EXPECT_EQ(c.request("POST", "/v1/mailboxes/mbx_1/resume", user).status, 200);
    EXPECT_EQ(scalar("SELECT paused FROM mailboxes WHERE account = 'acct_a'"), "f");
    // The daemon's pause is not turned into the tenant's by pausing again.
    rows("UPDATE mailboxes SET paused = true, paused_by = 'daemon' WHERE account = 'acct_a' RETURNING 1");
    EXPECT_EQ(c.request("POST", "/v1/mailboxes/mbx_1/pause", user).status, 200);
    EXPECT_EQ(scalar("SELECT paused_by FROM mailboxes WHERE account = 'acct_a'"), "daemon");
    auto refused = c.request("POST", "/v1/mailboxes/mbx_1/resume", user);
    EXPECT_EQ(refused.status, 403);
    EXPECT_NE(refused.body.find("the daemon"), std::string::npos) << refused.body;
    // Nor a mailbox the daemon disabled after repeated AUTH failures.
    rows("UPDATE mailboxes SET paused = false, paused_by = NULL, disabled = true WHERE account = 'acct_a' RETURNING 1");
    EXPECT_EQ(c.request("POST", "/v1/mailboxes/mbx_1/resume", user).status, 403);
    EXPECT_EQ(scalar("SELECT disabled FROM mailboxes WHERE account = 'acct_a'"), "t");
    EXPECT_EQ(c.request("POST", "/v1/mailboxes/mbx_1/resume?account=acct_a", keys_["admin"].token).status, 200);
    EXPECT_EQ(scalar("SELECT disabled FROM mailboxes WHERE account = 'acct_a'"), "f");
  });
}

TEST_F(TenantBoundaryTest, AUserKeyMayOnlyTightenTheOperatorsLimits) {
  deps_.operator_limits = [] { return OperatorLimits{5, 2, 40, 10, 2, 60}; };
  const std::string seed = seed_sql(keys_);
  run([&](int port) {
    Client c(port);
    rows(seed + "SELECT 1");
    const std::string user = keys_["user_a"].token;
    const std::pair<const char*, const char*> looser[] = {
        {R"({"policy": {"ramp_max": 1000000}})", "policy.ramp_max"},
        {R"({"policy": {"ramp_start": 6}})", "policy.ramp_start"},
        {R"({"policy": {"ramp_step": 3}})", "policy.ramp_step"},
        {R"({"policy": {"per_hour": 0}})", "policy.per_hour"},
        {R"({"policy": {"per_hour": 11}})", "policy.per_hour"},
        {R"({"policy": {"per_minute": 3}})", "policy.per_minute"},
        {R"({"policy": {"min_gap_s": 59}})", "policy.min_gap_s"},
        {R"({"policy": {"warmup_start": "2001-01-01"}})", "policy.warmup_start"},
        {R"({"mode": "mx"})", "mode"}};
    for (const auto& [body, field] : looser) {
      auto r = c.request("PATCH", "/v1/mailboxes/mbx_1", user, body);
      EXPECT_EQ(r.status, 403) << body << " " << r.body;
      EXPECT_NE(r.body.find(std::string("\"field\":\"") + field + "\""), std::string::npos) << body << " " << r.body;
    }
    EXPECT_EQ(scalar("SELECT coalesce(ramp_max::text, 'null') || mode FROM mailboxes WHERE account = 'acct_a'"),
              "nullrelay");
    auto tighter = c.request("PATCH", "/v1/mailboxes/mbx_1", user,
                             R"({"policy": {"ramp_max": 20, "per_hour": 5, "per_minute": 1, "min_gap_s": 120}})");
    EXPECT_EQ(tighter.status, 200) << tighter.body;
    EXPECT_EQ(scalar("SELECT ramp_max || '/' || per_hour || '/' || per_minute || '/' || min_gap_s FROM mailboxes"
                     " WHERE account = 'acct_a'"),
              "20/5/1/120");
    EXPECT_EQ(c.request("PATCH", "/v1/mailboxes/mbx_1", user, R"({"policy": {"ramp_max": null}})").status, 200);
    // An operator may loosen, and may set mode "mx".
    auto admin = c.request("PATCH", "/v1/mailboxes/mbx_1?account=acct_a", keys_["admin"].token,
                           R"({"mode": "mx", "policy": {"ramp_max": 1000}})");
    EXPECT_EQ(admin.status, 200) << admin.body;
    EXPECT_EQ(scalar("SELECT ramp_max || mode FROM mailboxes WHERE account = 'acct_a'"), "1000mx");
  });
}

TEST_F(TenantBoundaryTest, KeysNeverOutliveTheirMakerAndDieWithIt) {
  const std::string seed = seed_sql(keys_);
  run([&](int port) {
    Client c(port);
    rows(seed + "UPDATE api_keys SET expires_at = now() + interval '10 days' WHERE id = '" + key_id("admin_a") +
         "' RETURNING 1");
    const std::string admin_a = keys_["admin_a"].token;
    auto later = c.request("POST", "/v1/keys", admin_a, R"({"role": "user", "expires_at": "2999-01-01T00:00:00Z"})");
    EXPECT_EQ(later.status, 400) << later.body;
    auto child = c.request("POST", "/v1/keys", admin_a, R"({"role": "admin", "name": "child"})");
    ASSERT_EQ(child.status, 201) << child.body;
    EXPECT_EQ(scalar("SELECT k.expires_at <= p.expires_at AND k.expires_at > p.expires_at - interval '1 second'"
                     " FROM api_keys k JOIN api_keys p ON p.id = k.created_by WHERE k.name = 'child'"),
              "t");
    std::string child_token = child.body.substr(child.body.find("\"key\":\"") + 7, store::kApiKeyLength);
    auto grandchild = c.request("POST", "/v1/keys", child_token, R"({"role": "user", "name": "grandchild"})");
    ASSERT_EQ(grandchild.status, 201) << grandchild.body;
    std::string grandchild_token = grandchild.body.substr(grandchild.body.find("\"key\":\"") + 7, store::kApiKeyLength);
    EXPECT_EQ(c.request("GET", "/v1/mailboxes", grandchild_token).status, 200);
    // Revoking the maker revokes what it made, and what that made.
    EXPECT_EQ(c.request("DELETE", "/v1/keys/" + key_id("admin_a"), keys_["owner"].token).status, 204);
    EXPECT_EQ(scalar("SELECT count(*) FROM api_keys WHERE name IN ('child', 'grandchild') AND revoked_at IS NOT NULL"),
              "2");
    auto dead = c.request("GET", "/v1/mailboxes", grandchild_token);
    EXPECT_EQ(dead.status, 401);
    EXPECT_NE(dead.body.find("key_revoked"), std::string::npos);
    EXPECT_EQ(c.request("GET", "/v1/mailboxes", keys_["user_a"].token).status, 200) << "keys it did not make live on";
  });
}

}  // namespace
}  // namespace deliverd::admin::testing
