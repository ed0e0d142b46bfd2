// A real Postfix accepts a message for a user its Dovecot does not know, fails it over LMTP after
// the 250, and writes its own RFC 3464 bounce into the sender's mailbox: the classifier reads that
// DSN, not one written by hand, as the bounce of the message it returns.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "inbound/classifier.h"
#include "inbound/mime.h"
#include "tests/integration/fixtures/dovecot_server.h"
#include "tests/integration/fixtures/postfix_server.h"
#include "tests/integration/fixtures/process.h"

namespace deliverd::inbound {
namespace {

using deliverd::testing::DovecotServer;
using deliverd::testing::now_ms;
using deliverd::testing::PostfixServer;

// Just enough blocking SMTP to hand Postfix one message; a failed step fails the test with the
// reply. The daemon's own client is event-driven and needs a mailbox, a job and a loop for this.
class SmtpSession {
 public:
  SmtpSession(const std::string& host, int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~SmtpSession() { ::close(fd_); }
  SmtpSession(const SmtpSession&) = delete;
  SmtpSession& operator=(const SmtpSession&) = delete;

  bool connected() const { return connected_; }

  // Sends cmd (nothing when empty) and returns the last line of the reply, "" when none came.
  std::string step(const std::string& cmd) {
    if (!cmd.empty() && ::send(fd_, cmd.data(), cmd.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(cmd.size()))
      return "";
    std::string line;
    do {
      line = read_line();
    } while (line.size() > 3 && line[3] == '-');
    return line;
  }

 private:
  std::string read_line() {
    for (;;) {
      size_t eol = buf_.find("\r\n");
      if (eol != std::string::npos) {
        std::string line = buf_.substr(0, eol);
        buf_.erase(0, eol + 2);
        return line;
      }
      char tmp[4096];
      ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) return "";
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

// One message through one SMTP session; the body has no line starting with a dot.
void send_mail(const PostfixServer& pf, const std::string& from, const std::string& to, const std::string& message) {
  SmtpSession s(pf.host(), pf.port());
  ASSERT_TRUE(s.connected()) << pf.log();
  ASSERT_EQ(s.step("").substr(0, 3), "220") << pf.log();
  ASSERT_EQ(s.step("EHLO client.deliverd.test\r\n").substr(0, 3), "250");
  ASSERT_EQ(s.step("MAIL FROM:<" + from + ">\r\n").substr(0, 3), "250");
  ASSERT_EQ(s.step("RCPT TO:<" + to + ">\r\n").substr(0, 3), "250") << "an unknown user must be accepted here";
  ASSERT_EQ(s.step("DATA\r\n").substr(0, 3), "354");
  ASSERT_EQ(s.step(message + ".\r\n").substr(0, 3), "250") << pf.log();
  s.step("QUIT\r\n");
}

std::string probe(const std::string& to, const std::string& message_id) {
  return "From: Alice <alice@inbound.test>\r\n"
         "To: <" +
         to +
         ">\r\n"
         "Subject: bounce probe\r\n"
         "Message-ID: <" +
         message_id +
         ">\r\n"
         "Date: Thu, 03 Dec 2026 08:00:00 +0000\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=us-ascii\r\n"
         "\r\n"
         "Is anybody there?\r\n";
}

// The one message in a user's INBOX, as Dovecot stored it. doveadm prints "text:" and then the
// message on the lines that follow.
std::string only_message(DovecotServer& dovecot, const std::string& user) {
  std::string out;
  EXPECT_EQ(dovecot.doveadm({"fetch", "-u", user, "text", "mailbox", "INBOX", "all"}, &out), 0) << out;
  const std::string field = "text:\n";
  size_t at = out.find(field);
  return at == std::string::npos ? out : out.substr(at + field.size());
}

class PostfixBounce : public ::testing::Test {
 protected:
  static DovecotServer::Options dovecot_options() {
    DovecotServer::Options o;
    o.extra_config = PostfixServer::kDovecotConfig;  // Postfix delivers "alice@inbound.test"
    return o;
  }
  static PostfixServer::Options postfix_options(const DovecotServer& d) {
    PostfixServer::Options o;
    o.lmtp_socket = d.lmtp_socket();
    return o;
  }

  bool wait_for(const std::string& user, size_t n, int timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline) {
      if (dovecot_.count(user) >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  DovecotServer dovecot_{dovecot_options()};
  PostfixServer postfix_{postfix_options(dovecot_)};
};

TEST_F(PostfixBounce, AnUnknownLocalUserComesBackToTheSenderAsARfc3464Report) {
  send_mail(postfix_, "alice@inbound.test", "nobody@inbound.test",
            probe("nobody@inbound.test", "bounce-probe@deliverd.test"));
  send_mail(postfix_, "alice@inbound.test", "bob@inbound.test", probe("bob@inbound.test", "bob-probe@deliverd.test"));
  ASSERT_TRUE(wait_for("bob", 1, 30000)) << postfix_.log() << "\n--- dovecot\n" << dovecot_.log();
  ASSERT_TRUE(wait_for("alice", 1, 30000)) << postfix_.log() << "\n--- dovecot\n" << dovecot_.log();
  EXPECT_EQ(dovecot_.count("bob"), 1u);
  EXPECT_EQ(dovecot_.count("alice"), 1u) << "only the bounce goes to the sender";

  const std::string dsn = only_message(dovecot_, "alice");
  // A bounce goes out with the null sender (RFC 5321 4.5.5), so nothing ever bounces it back.
  EXPECT_EQ(dsn.rfind("Return-Path: <>\n", 0), 0u) << dsn;
  EXPECT_NE(dsn.find("multipart/report"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("report-type=delivery-status"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("message/delivery-status"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Final-Recipient: rfc822; nobody@inbound.test"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Action: failed"), std::string::npos) << dsn;
  // Dovecot's LMTP answers an unknown user with 550 5.1.1; Postfix reports that status as it is.
  EXPECT_NE(dsn.find("Status: 5.1.1"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Message-ID: <bounce-probe@deliverd.test>"), std::string::npos) << dsn;

  const Signal s = classify(parse_message(dsn));
  EXPECT_EQ(s.kind, SignalKind::Bounce) << dsn;
  EXPECT_EQ(s.rule, "rfc3464");
  ASSERT_EQ(s.recipients.size(), 1u) << dsn;
  EXPECT_EQ(s.recipients[0].address, "nobody@inbound.test");
  EXPECT_EQ(s.recipients[0].action, DsnAction::Failed);
  EXPECT_EQ(s.recipients[0].status, "5.1.1");
  EXPECT_NE(s.recipients[0].diagnostic.find("550"), std::string::npos) << s.recipients[0].diagnostic;
  EXPECT_NE(std::find(s.referenced_ids.begin(), s.referenced_ids.end(), "bounce-probe@deliverd.test"),
            s.referenced_ids.end())
      << dsn;
}

}  // namespace
}  // namespace deliverd::inbound
