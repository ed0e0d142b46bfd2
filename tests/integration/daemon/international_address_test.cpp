// Internationalised addresses through the real daemon: an IDN recipient domain goes out as
// A-labels (no SMTPUTF8 needed); a UTF-8 local part goes out with SMTPUTF8 where the server offers
// it, and bounces clearly, without a MAIL command, where it does not.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/aiosmtpd_server.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"

using namespace deliverd::testing;

namespace {

constexpr int kMailPort = 2525;
const std::string kJose = "j\xc3\xb6s\xc3\xa9@example.org";  // jösé@example.org
const std::string kBob = "bob@b\xc3\xbc" "cher.example";     // bob@bücher.example

bool has(const std::vector<std::string>& lines, const std::string& line) {
  return std::find(lines.begin(), lines.end(), line) != lines.end();
}

bool has_prefix(const std::vector<std::string>& lines, const std::string& prefix) {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
}

std::string distinct_ip(const std::vector<std::string>& taken) {
  std::string ip = free_loopback_ip(kMailPort);
  while (std::find(taken.begin(), taken.end(), ip) != taken.end()) ip = free_loopback_ip(kMailPort);
  return ip;
}

}  // namespace

TEST(InternationalAddresses, IdnGoesOutAsALabelsAndUtf8LocalPartsNeedSmtpUtf8) {
  // The recipient domain's MX, served by dnsmasq under its A-label, and a scripted MX that does
  // not offer SMTPUTF8.
  const std::string mx_ip = distinct_ip({});
  ScriptedSmtpServer::Options so;
  so.host = mx_ip;
  so.port = kMailPort;
  ScriptedSmtpServer mx("{}", so);
  // A submission server that offers SMTPUTF8, and one that does not.
  AiosmtpdServer::Options ao;
  ao.host = distinct_ip({mx_ip});
  ao.port = kMailPort;
  ao.smtputf8 = true;
  AiosmtpdServer utf8_relay(ao);
  ScriptedSmtpServer::Options po;
  po.host = distinct_ip({mx_ip, ao.host});
  po.port = kMailPort;
  ScriptedSmtpServer plain_relay("{}", po);
  DnsServer::Options dso;
  dso.records = {DnsServer::mx("xn--bcher-kva.example", "mail.xn--bcher-kva.example", 10),
                 DnsServer::host_record("mail.xn--bcher-kva.example", mx_ip)};
  DnsServer dns(dso);
  DaemonStack stack([&](DeliverdProcess::Options& o) {
    o.extra_toml = "mx_port = " + std::to_string(kMailPort) + "\n\n[dns]\nservers = [\"" + dns.address() + "\"]\n";
  });
  RedisServer& redis = stack.redis;
  DeliverdProcess& d = stack.daemon();
  std::string out;
  ASSERT_EQ(d.cli({"mailbox", "add", "--id", "mbx_mx", "--account", "acct_1", "--email", "alice@acme.example",
                   "--smtp-host", "unused.example", "--smtp-port", "25", "--mode", "mx"},
                  &out),
            0)
      << out;
  d.add_mailbox("mbx_utf8", "acct_1", "alice@acme.example", ao.host, kMailPort);
  d.add_mailbox("mbx_plain", "acct_1", "alice@acme.example", po.host, kMailPort);
  d.start();

  redis.xadd_job("deliverd:jobs", make_job("idn-1", "acct_1", "mbx_mx", kBob));
  redis.xadd_job("deliverd:jobs", make_job("utf8-offered", "acct_1", "mbx_utf8", kJose));
  redis.xadd_job("deliverd:jobs", make_job("utf8-not-offered", "acct_1", "mbx_plain", kJose));
  auto all = wait_for_final_events(redis, {"idn-1", "utf8-offered", "utf8-not-offered"}, 60000);
  ASSERT_EQ(all.size(), 3u) << d.log();

  // bob@bücher.example: the MX of the A-label, RCPT in A-labels, no SMTPUTF8 anywhere.
  EXPECT_EQ(all["idn-1"].status, "delivered") << all["idn-1"].reason << " " << all["idn-1"].detail;
  ASSERT_TRUE(mx.wait_for_messages(1, 5000));
  EXPECT_TRUE(has(mx.commands(), "RCPT TO:<bob@xn--bcher-kva.example>"));
  EXPECT_TRUE(has_prefix(mx.commands(), "MAIL FROM:<alice@acme.example>"));
  for (const auto& c : mx.commands()) EXPECT_EQ(c.find("SMTPUTF8"), std::string::npos) << c;
  EXPECT_NE(mx.messages().back().find("To: Bob <bob@xn--bcher-kva.example>\r\n"), std::string::npos)
      << mx.messages().back();

  // jösé@example.org where SMTPUTF8 is offered: the envelope and the To field carry raw UTF-8.
  EXPECT_EQ(all["utf8-offered"].status, "delivered")
      << all["utf8-offered"].reason << " " << all["utf8-offered"].detail << "\n" << utf8_relay.log();
  ASSERT_TRUE(utf8_relay.wait_for_messages(1, 5000));
  EXPECT_TRUE(has(utf8_relay.envelope_log(), "alice@acme.example " + kJose + " tls=no"));
  EXPECT_NE(utf8_relay.messages().back().find("To: Bob <" + kJose + ">\r\n"), std::string::npos)
      << utf8_relay.messages().back();

  // jösé@example.org where it is not: bounced before MAIL, a recipient fault named clearly.
  const ResultEvent& e = all["utf8-not-offered"];
  EXPECT_EQ(e.status, "bounced");
  EXPECT_EQ(e.reason, "smtputf8_unsupported");
  EXPECT_EQ(e.phase, "mail");
  EXPECT_NE(e.detail.find(kJose + " needs SMTPUTF8 (RFC 6531) and " + po.host + " does not offer it"), std::string::npos)
      << e.detail;
  EXPECT_FALSE(has_prefix(plain_relay.commands(), "MAIL"));
  EXPECT_TRUE(plain_relay.messages().empty());
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}
