// The one-click flow end to end, as a mailbox provider sees it: the real deliverd binary sends a
// campaign message to smtp-sink; the List-Unsubscribe URL is taken from the captured message and
// POSTed to like Gmail or Yahoo would; the next job for that recipient ends `suppressed` and is
// never sent. The captured message also carries a DKIM signature python3-dkim verifies.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <regex>
#include <thread>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/fixtures/smtp_sink.h"

namespace deliverd::testing {
namespace {

constexpr int kMailPort = 2525;

// POST like a mailbox provider (RFC 8058 3.2): no cookies, no redirects followed.
int one_click_post(const std::string& url, std::string* response = nullptr) {
  std::smatch m;
  std::regex re(R"(^http://127\.0\.0\.1:(\d+)(/.*)$)");
  if (!std::regex_match(url, m, re)) return -1;
  int port = std::stoi(m[1]);
  std::string body = "List-Unsubscribe=One-Click";
  std::string req = "POST " + m[2].str() +
                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\n\r\n" + body;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return 0;
  }
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string buf;
  char tmp[4096];
  ssize_t n;
  while ((n = ::recv(fd, tmp, sizeof tmp, 0)) > 0) buf.append(tmp, static_cast<size_t>(n));
  ::close(fd);
  if (response) *response = buf;
  return buf.rfind("HTTP/1.1 ", 0) == 0 ? std::stoi(buf.substr(9, 3)) : 0;
}

// The captured message holding `needle`, "" if none.
std::string captured_with(const SmtpSink& sink, const std::string& needle) {
  for (const auto& m : sink.messages())
    if (m.find(needle) != std::string::npos) return m;
  return "";
}

TEST(OneClickUnsubscribe, ProviderPostSuppressesTheNextJobForThatRecipient) {
  SmtpSink sink(SmtpSink::Options::at_mail_port(kMailPort));

  TempDir keys("deliverd-compliance");
  std::string out;
  ASSERT_EQ(run_command({"openssl", "genpkey", "-algorithm", "ED25519", "-out", keys.file("dkim.pem")}, &out), 0)
      << out;
  ASSERT_EQ(run_command({"openssl", "pkey", "-in", keys.file("dkim.pem"), "-pubout", "-outform", "DER", "-out",
                         keys.file("dkim.der")},
                        &out),
            0)
      << out;
  write_secret_file(keys.file("unsub.key"), "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\n");
  int unsub_port = free_port();
  std::string base = "http://127.0.0.1:" + std::to_string(unsub_port);

  DaemonStack stack([&](DeliverdProcess::Options& o) {
    o.extra_toml =
        "\n[unsubscribe]\nlisten = \"127.0.0.1:" + std::to_string(unsub_port) + "\"\nbase_url = \"" + base +
        "/\"\nkey_file = \"" + keys.file("unsub.key") +
        "\"\nmailto = \"unsubscribe@acme.example\"\n\n[[dkim]]\ndomain = \"acme.example\"\nselector = \"e2e\"\n"
        "key_file = \"" +
        keys.file("dkim.pem") +
        "\"\nalgorithm = \"ed25519-sha256\"\naccounts = [\"acct_1\"]\n\n[compliance]\npostal_address = \"Default Postal 1\"\n\n"
        "[compliance.accounts]\nacct_1 = \"Acme Inc., 1 Main St, Springfield\"\n";
  });
  RedisServer& redis = stack.redis;
  DeliverdProcess& d = stack.daemon();
  ASSERT_EQ(d.cli({"check-config"}, &out), 0) << out;
  d.add_mailbox("mbx_1", "acct_1", "alice@acme.example", sink.host(), kMailPort);
  d.add_mailbox("mbx_2", "acct_2", "carol@other.example", sink.host(), kMailPort);
  d.start();

  const std::string campaign = R"(,"campaign":"cmp_1","html":"<html><body><p>Hi Bob</p></body></html>")";
  redis.xadd_job("deliverd:jobs", make_job("camp-1", "acct_1", "mbx_1", "bob@example.org", campaign));
  ResultEvent first = wait_for_event(redis, "camp-1");
  ASSERT_EQ(first.status, "delivered") << first.detail << "\n" << d.log();
  ASSERT_TRUE(sink.wait_for_messages(1, 10000));

  std::string msg = captured_with(sink, "Subject: Hello camp-1");
  ASSERT_FALSE(msg.empty());
  std::smatch m;
  std::regex lu(R"(List-Unsubscribe: <mailto:unsubscribe@acme\.example\?subject=unsubscribe>,\r?\n? <(http://[^>]+)>)");
  ASSERT_TRUE(std::regex_search(msg, m, lu)) << msg;
  std::string url = m[1];
  EXPECT_EQ(url.rfind(base + "/u/", 0), 0u) << url;
  EXPECT_NE(msg.find("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), std::string::npos);
  EXPECT_NE(msg.find("DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=acme.example; s=e2e;"),
            std::string::npos);
  EXPECT_NE(msg.find("Acme Inc., 1 Main St, Springfield"), std::string::npos);  // the account's own address
  EXPECT_EQ(msg.find("Default Postal 1"), std::string::npos);

  // The message as delivered verifies with an independent DKIM implementation.
  size_t start = msg.find("DKIM-Signature:");
  ASSERT_NE(start, std::string::npos);
  write_file(keys.file("captured.eml"), msg.substr(start));
  std::string verdict;
  run_command({"/usr/bin/python3",
               std::string(getenv("DELIVERD_SOURCE_DIR")) + "/tests/integration/compliance/verify_message.py",
               keys.file("captured.eml"), "ed25519", keys.file("dkim.der"), "acme.example", "e2e"},
              &verdict);
  EXPECT_NE(verdict.find("\"dkim\": true"), std::string::npos) << verdict;
  EXPECT_NE(verdict.find("\"defects\": []"), std::string::npos) << verdict;

  std::string response;
  ASSERT_EQ(one_click_post(url, &response), 200) << response;
  EXPECT_EQ(response.find("Set-Cookie"), std::string::npos);
  EXPECT_EQ(response.find("Location:"), std::string::npos);
  EXPECT_EQ(one_click_post(url), 200);  // a provider's retry is harmless

  size_t sent_before = sink.message_count();
  redis.xadd_job("deliverd:jobs", make_job("camp-2", "acct_1", "mbx_1", "bob@example.org", campaign));
  ResultEvent second = wait_for_event(redis, "camp-2");
  EXPECT_EQ(second.status, "suppressed") << second.detail;
  EXPECT_EQ(second.phase, "policy");
  EXPECT_EQ(second.reason, "suppressed");

  // The list is the account's: another account may still mail Bob, and acct_1 may mail others.
  redis.xadd_job("deliverd:jobs", make_job("other-acct", "acct_2", "mbx_2", "bob@example.org", campaign));
  redis.xadd_job("deliverd:jobs", make_job("other-rcpt", "acct_1", "mbx_1", "dave@example.org"));
  EXPECT_EQ(wait_for_event(redis, "other-acct").status, "delivered");
  EXPECT_EQ(wait_for_event(redis, "other-rcpt").status, "delivered");
  EXPECT_TRUE(sink.wait_for_messages(sent_before + 2, 10000));
  EXPECT_EQ(sink.message_count(), sent_before + 2);
  std::string other = captured_with(sink, "Subject: Hello other-acct");
  EXPECT_NE(other.find("Default Postal 1"), std::string::npos);  // the default postal address
  EXPECT_EQ(other.find("DKIM-Signature:"), std::string::npos);   // no key for other.example

  // A tampered URL is refused and changes nothing.
  EXPECT_EQ(one_click_post(url.substr(0, url.size() - 3) + "AAA"), 404);
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

TEST(OneClickUnsubscribe, CampaignJobWithoutAnyUnsubscribeRouteIsRejected) {
  SmtpSink sink(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  RedisServer& redis = stack.redis;
  DeliverdProcess& d = stack.daemon();
  d.add_mailbox("mbx_1", "acct_1", "alice@acme.example", sink.host(), kMailPort);
  d.start();
  redis.xadd_job("deliverd:jobs", make_job("no-route", "acct_1", "mbx_1", "bob@example.org", R"(,"campaign":"cmp_1")"));
  ResultEvent e = wait_for_event(redis, "no-route");
  EXPECT_EQ(e.status, "rejected");
  EXPECT_EQ(e.reason, "invalid_message");
  EXPECT_NE(e.detail.find("unsubscribe"), std::string::npos) << e.detail;
  EXPECT_EQ(sink.message_count(), 0u);
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

}  // namespace
}  // namespace deliverd::testing
