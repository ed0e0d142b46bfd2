#include "daemon/config.h"

#include <gtest/gtest.h>

#include "tests/integration/fixtures/process.h"

using deliverd::daemon::load_config;
using deliverd::testing::TempDir;
using deliverd::testing::write_file;

namespace {
std::string load_error(const std::string& toml) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), toml);
  auto r = load_config(dir.file("d.toml"));
  if (r) return "";
  // Strip the temp dir so expectations read cleanly.
  std::string e = r.error();
  return e.substr(e.find("d.toml"));
}
const std::string kMinimal = "[security]\nsecret_key_file = \"/k\"\n";
}  // namespace

TEST(Config, MinimalFileLoadsWithDefaults) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal);
  auto r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->stream, "deliverd:jobs");
  EXPECT_EQ(r->group, "deliverd");
  EXPECT_EQ(r->admin_listen, "127.0.0.1:8025");
  EXPECT_TRUE(r->allow_private_targets.empty());
  EXPECT_EQ(r->consumer, r->hostname);
}

TEST(Config, ExampleConfigInTreeIsValid) {
  const char* src = std::getenv("DELIVERD_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  auto r = load_config(std::string(src) + "/conf/deliverd.toml");
  EXPECT_TRUE(r) << r.error();
}

TEST(Config, WrongTypeNamesFileLineTableAndKey) {
  EXPECT_EQ(load_error(kMinimal + "[redis]\nstream = \"s\"\nmax_inflight = \"many\"\n"),
            "d.toml:5: [redis] max_inflight: must be an integer");
}

TEST(Config, OutOfRangeValueSaysTheRange) {
  EXPECT_EQ(load_error(kMinimal + "[redis]\nmax_inflight = 0\n"),
            "d.toml:4: [redis] max_inflight: must be between 1 and 100000");
}

TEST(Config, UnknownKeyIsAnError) {
  EXPECT_EQ(load_error(kMinimal + "[admin]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n"), "d.toml:5: [admin] lisen: unknown key");
}

TEST(Config, UnknownTableIsAnError) {
  EXPECT_EQ(load_error(kMinimal + "[redsi]\nurl = \"redis://x\"\n"), "d.toml:3: [redsi]: unknown table");
}

TEST(Config, SyntaxErrorNamesTheLine) {
  std::string e = load_error(kMinimal + "[redis\n");
  EXPECT_EQ(e.rfind("d.toml:3: ", 0), 0u) << e;
}

TEST(Config, MissingSecretKeyFileIsRequired) {
  std::string e = load_error("[daemon]\nlog_level = \"info\"\n");
  EXPECT_NE(e.find("[security] secret_key_file: is required"), std::string::npos) << e;
}

TEST(Config, BadLogLevelIsRefused) {
  EXPECT_EQ(load_error(kMinimal + "[daemon]\nlog_level = \"loud\"\n"),
            "d.toml:4: [daemon] log_level: must be debug, info, warn or error");
}

TEST(Config, AllowListMustBeStrings) {
  EXPECT_EQ(load_error("[security]\nsecret_key_file = \"/k\"\nallow_private_targets = [1]\n"),
            "d.toml:3: [security] allow_private_targets: must be a list of strings");
}

TEST(Config, TrustedProxiesAreCidrsNamedWithTheirLine) {
  EXPECT_EQ(load_error(kMinimal + "[admin]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.1/8\"]\n"),
            "d.toml:4: [admin] trusted_proxies: bad CIDR '10.0.0.1/8': host bits set");
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal + "[admin]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
  auto r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->trusted_proxies, (std::vector<std::string>{"10.0.0.0/8", "::1"}));
}

TEST(Config, PlaintextAuthIsOffUnlessSaidAndMustBeABoolean) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal);
  auto r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_FALSE(r->smtp_allow_plaintext_auth);
  EXPECT_EQ(load_error(kMinimal + "[smtp]\nallow_plaintext_auth = \"yes\"\n"),
            "d.toml:4: [smtp] allow_plaintext_auth: must be true or false");
}

TEST(Config, OldKeyFilesAreLists) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), "[security]\nsecret_key_file = \"/k2\"\nold_secret_key_files = [\"/k1\"]\n"
                                 "[unsubscribe]\nkey_file = \"/u2\"\nold_key_files = [\"/u1\", \"/u0\"]\n");
  auto r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->old_secret_key_files, std::vector<std::string>{"/k1"});
  EXPECT_EQ(r->unsubscribe_old_key_files, (std::vector<std::string>{"/u1", "/u0"}));
}

TEST(Config, OAuthProvidersAreNamedAndTheirTokenUrlsAreHttps) {
  const std::string google =
      "[[oauth]]\nname = \"google\"\ntoken_url = \"https://oauth2.googleapis.com/token\"\n"
      "client_id = \"id.apps.googleusercontent.com\"\nclient_secret_file = \"/etc/deliverd/google\"\n";
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal + google +
                                     "[[oauth]]\nname = \"microsoft\"\n"
                                     "token_url = \"https://login.microsoftonline.com/common/oauth2/v2.0/token\"\n"
                                     "client_id = \"app\"\nscope = \"offline_access\"\n");
  auto r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->oauth.size(), 2u);
  ASSERT_NE(r->oauth_provider("google"), nullptr);
  EXPECT_EQ(r->oauth_provider("google")->client_secret_file, "/etc/deliverd/google");
  EXPECT_EQ(r->oauth_provider("microsoft")->scope, "offline_access");
  EXPECT_EQ(r->oauth_provider("yahoo"), nullptr);

  EXPECT_NE(load_error(kMinimal + google + google).find("[[oauth]] name: google is given twice"), std::string::npos);
  std::string e = load_error(kMinimal + "[[oauth]]\nname = \"x\"\ntoken_url = \"http://t.example/token\"\n"
                                        "client_id = \"c\"\n");
  EXPECT_NE(e.find("[[oauth]] token_url: "), std::string::npos) << e;
  e = load_error(kMinimal + "[[oauth]]\nname = \"x\"\n");
  EXPECT_NE(e.find("[[oauth]] name, token_url and client_id are required"), std::string::npos) << e;
  e = load_error(kMinimal + google + "client_secret = \"inline\"\n");
  EXPECT_NE(e.find("[[oauth]] client_secret: unknown key"), std::string::npos) << e;
}

TEST(Config, DkimKeysNameTheAccountsThatMaySendFromTheirDomain) {
  const std::string key = "[[dkim]]\ndomain = \"Acme.Example\"\nselector = \"s\"\nkey_file = \"/d.pem\"\n";
  std::string e = load_error(kMinimal + key);
  EXPECT_NE(e.find("[[dkim]] accounts: required"), std::string::npos) << e;
  EXPECT_NE(e.find("acme.example"), std::string::npos) << e;
  EXPECT_NE(load_error(kMinimal + key + "accounts = []\n").find("accounts: must be a non-empty list"),
            std::string::npos);
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal + key + "accounts = [\"acct_1\", \"acct_2\"]\n" +
                                     "[[dkim]]\ndomain = \"shared.example\"\nselector = \"s\"\nkey_file = \"/e.pem\"\n"
                                     "accounts = [\"*\"]\n");
  auto r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  const auto* acme = r->dkim_for_address("alice@ACME.example");
  ASSERT_NE(acme, nullptr);
  EXPECT_EQ(acme->domain, "acme.example");
  EXPECT_TRUE(acme->allows("acct_2"));
  EXPECT_FALSE(acme->allows("acct_3"));
  // A subdomain belongs to its domain's accounts; a look-alike does not.
  ASSERT_NE(r->dkim_for_address("bob@mail.acme.example"), nullptr);
  EXPECT_EQ(r->dkim_for_address("eve@evilacme.example"), nullptr);
  EXPECT_TRUE(r->dkim_for_address("x@shared.example")->allows("anyone"));
  EXPECT_EQ(r->dkim_for_address("no-at-sign"), nullptr);
}

TEST(Config, InboundDefaultsAndBounds) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal);
  auto r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_TRUE(r->inbound.enabled);
  EXPECT_EQ(r->inbound.max_watchers, 1000);
  EXPECT_EQ(r->inbound.poll_interval_ms, 60'000);
  EXPECT_EQ(r->inbound.move_to, "");
  EXPECT_FALSE(r->inbound.suppress_on_reply);
  EXPECT_EQ(r->inbound.correlation_window_ms, 7LL * 86'400'000);

  write_file(dir.file("d.toml"), kMinimal + "[inbound]\npoll_interval = \"30s\"\nmove_to = \"Bounces\"\n"
                                            "suppress_on_reply = true\ncorrelation_window = \"2d\"\n");
  r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->inbound.poll_interval_ms, 30'000);
  EXPECT_EQ(r->inbound.move_to, "Bounces");
  EXPECT_TRUE(r->inbound.suppress_on_reply);
  EXPECT_EQ(r->inbound.correlation_window_ms, 2LL * 86'400'000);

  EXPECT_NE(load_error(kMinimal + "[inbound]\nmove_to = \"a\\\"b\"\n").find("[inbound] move_to"), std::string::npos)
      << load_error(kMinimal + "[inbound]\nmove_to = \"a\\\"b\"\n");
  EXPECT_NE(load_error(kMinimal + "[inbound]\nfolder = \"x\"\n").find("folder"), std::string::npos);
}

TEST(Config, TheMxDeadlineIsSecondsWithinItsBounds) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal + "[smtp]\nmx_deadline_s = 90\n");
  auto r = load_config(dir.file("d.toml"));
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->smtp_mx_deadline_s, 90);
  write_file(dir.file("d.toml"), kMinimal);
  EXPECT_EQ(load_config(dir.file("d.toml"))->smtp_mx_deadline_s, 300);
  EXPECT_EQ(load_error(kMinimal + "[smtp]\nmx_deadline_s = 5\n"), "d.toml:4: [smtp] mx_deadline_s: must be between 10 and 3600");
}

TEST(Config, TlsRptIsOffByDefaultAndTakesItsKeys) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal);
  auto off = load_config(dir.file("d.toml"));
  ASSERT_TRUE(off) << off.error();
  EXPECT_FALSE(off->smtp_tls_rpt);
  write_file(dir.file("d.toml"), kMinimal + "[smtp]\ntls_rpt = true\ntls_rpt_org = \"Acme Mail\"\n"
                                            "tls_rpt_contact = \"postmaster@acme.example\"\n"
                                            "tls_rpt_from = \"tlsrpt@acme.example\"\n");
  auto on = load_config(dir.file("d.toml"));
  ASSERT_TRUE(on) << on.error();
  EXPECT_TRUE(on->smtp_tls_rpt);
  EXPECT_EQ(on->smtp_tls_rpt_org, "Acme Mail");
  EXPECT_EQ(on->smtp_tls_rpt_contact, "postmaster@acme.example");
  EXPECT_EQ(on->smtp_tls_rpt_from, "tlsrpt@acme.example");
}

TEST(Config, TlsRptNeedsAnOrgAndAFromAddress) {
  EXPECT_EQ(load_error(kMinimal + "[smtp]\ntls_rpt = true\ntls_rpt_from = \"tlsrpt@acme.example\"\n"),
            "d.toml:4: [smtp] tls_rpt: needs tls_rpt_org (the organization-name of the reports)");
  EXPECT_EQ(load_error(kMinimal + "[smtp]\ntls_rpt = true\ntls_rpt_org = \"Acme\"\n"),
            "d.toml:4: [smtp] tls_rpt: needs tls_rpt_from (the envelope and From of report mail)");
  EXPECT_NE(load_error(kMinimal + "[smtp]\ntls_rpt = true\ntls_rpt_org = \"Acme\"\ntls_rpt_from = \"nobody\"\n")
                .find("d.toml:6: [smtp] tls_rpt_from: is not a mail address"),
            std::string::npos);
}

TEST(Config, WorkersDefaultToTheCpusAndAreBounded) {
  TempDir dir("deliverd-config");
  write_file(dir.file("d.toml"), kMinimal);
  EXPECT_EQ(load_config(dir.file("d.toml"))->workers, 0);  // 0: one loop per CPU the process may use
  write_file(dir.file("d.toml"), "[daemon]\nworkers = 2\n" + kMinimal);
  EXPECT_EQ(load_config(dir.file("d.toml"))->workers, 2);
  EXPECT_EQ(load_error("[daemon]\nworkers = 65\n" + kMinimal), "d.toml:2: [daemon] workers: must be between 0 and 64");
}
