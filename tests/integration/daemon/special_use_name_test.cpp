// Special-use names never become targets: a mailbox pointed at one is refused when it is
// registered (API and command line), and a job whose recipient domain is one ends rejected at
// send time without a single DNS query.
#include <gtest/gtest.h>
#include <signal.h>

#include <string>
#include <vector>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/dns_server.h"

using namespace deliverd::testing;

namespace {

std::string mailbox_json(const std::string& id, const std::string& smtp_host, const std::string& imap = "") {
  return R"({"id":")" + id + R"(","account":"acct_1","email":"alice@acme.example","smtp_host":")" + smtp_host +
         R"(","smtp_port":587,"security":"starttls","username":"alice","password":"pw")" + imap + "}";
}

}  // namespace

TEST(SpecialUseNames, AreRefusedAtRegistrationAndNeverResolvedAtSendTime) {
  DnsServer::Options dso;
  dso.records = {DnsServer::host_record("real.test", "192.0.2.10")};
  DnsServer dns(dso);
  DaemonStack stack([&](DeliverdProcess::Options& o) {
    o.extra_toml = "mx_port = 2525\n\n[dns]\nservers = [\"" + dns.address() + "\"]\n";
  });
  DeliverdProcess& d = stack.daemon();
  std::string out;
  // The command line refuses it and says which rule.
  EXPECT_NE(d.cli({"mailbox", "add", "--id", "mbx_lh", "--account", "acct_1", "--email", "alice@acme.example",
                   "--smtp-host", "mail.localhost", "--smtp-port", "587", "--security", "starttls"},
                  &out),
            0);
  EXPECT_NE(out.find("smtp_host: 'mail.localhost' is never a target: 'localhost' names are the host itself (RFC 6761)"),
            std::string::npos)
      << out;
  ASSERT_EQ(d.cli({"mailbox", "add", "--id", "mbx_mx", "--account", "acct_1", "--email", "alice@acme.example",
                   "--smtp-host", "unused.example", "--smtp-port", "25", "--mode", "mx"},
                  &out),
            0)
      << out;
  ASSERT_EQ(d.cli({"key", "create", "--role", "owner"}, &out), 0) << out;
  const auto pos = out.find("dlv_");
  ASSERT_NE(pos, std::string::npos) << out;
  const std::string token = out.substr(pos, out.find_first_of(" \n", pos) - pos);
  d.start();
  const std::string base = "http://127.0.0.1:" + std::to_string(d.admin_port());

  // The API answers as a failed connection test would, naming the field and the rule.
  std::string smtp = curl("POST", base + "/v1/mailboxes", token, mailbox_json("mbx_api", "MAIL.localhost"));
  EXPECT_NE(smtp.find("\"code\":\"mailbox_test_failed\""), std::string::npos) << smtp;
  EXPECT_NE(smtp.find("\"step\":\"ssrf\""), std::string::npos) << smtp;
  EXPECT_NE(smtp.find("smtp_host 'mail.localhost' is never a target"), std::string::npos) << smtp;
  std::string single = curl("POST", base + "/v1/mailboxes", token, mailbox_json("mbx_api", "smtp"));
  EXPECT_NE(single.find("single-label names"), std::string::npos) << single;
  std::string imap = curl("POST", base + "/v1/mailboxes", token,
                          mailbox_json("mbx_api", "real.test",
                                       R"(,"imap":{"host":"nas.home.arpa","port":993,"username":"a","password":"b"})"));
  EXPECT_NE(imap.find("\"step\":\"imap_ssrf\""), std::string::npos) << imap;
  EXPECT_NE(imap.find("imap.host 'nas.home.arpa' is never a target"), std::string::npos) << imap;
  EXPECT_NE(imap.find("RFC 8375"), std::string::npos) << imap;
  EXPECT_NE(curl("GET", base + "/v1/mailboxes/mbx_api", token).find("not_found"), std::string::npos);

  // A recipient under .localhost in MX mode: rejected like a refused address, and DNS never asked.
  stack.redis.xadd_job("deliverd:jobs", make_job("lh-1", "acct_1", "mbx_mx", "bob@x.localhost"));
  ResultEvent e = wait_for_final_events(stack.redis, {"lh-1"}, 30000)["lh-1"];
  EXPECT_EQ(e.status, "rejected") << e.reason << " " << e.detail << "\n" << d.log();
  EXPECT_EQ(e.reason, "ssrf_refused");
  EXPECT_EQ(e.phase, "resolve");
  EXPECT_NE(e.detail.find("x.localhost is refused: 'localhost' names are the host itself (RFC 6761)"), std::string::npos)
      << e.detail;
  EXPECT_EQ(dns.query_count("x.localhost"), 0u) << dns.log();
  EXPECT_NE(d.log().find("dns_target_refused"), std::string::npos);
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}
