// What comes back to a sending mailbox, end to end: real daemons deliver through a relay
// (smtp-sink), a real Dovecot holds the sending mailbox's inbox (993, test CA, its name from
// dnsmasq), and bounces, complaints, automatic replies and replies put into that inbox over LMTP
// come out as events on deliverd:results naming the job they are about, with their effects
// (suppression, the bounce guard). The inbox is never changed; a restart reads nothing twice; a
// second daemon takes the watch over when the first is killed. A real Postfix bounces a message
// deliverd sent, and the bounce names the job.
#include <gtest/gtest.h>
#include <signal.h>
#include <simdjson.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/dovecot_server.h"
#include "tests/integration/fixtures/postfix_server.h"
#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/fixtures/smtp_sink.h"
#include "tests/integration/fixtures/test_ca.h"

using namespace deliverd::testing;

namespace {

constexpr int kMailPort = 2525;

struct SignalEvent {
  std::string event, job_id, recipient, matched_by, status, message_id, json;
};

std::string dsn(const std::string& rcpt, const std::string& original_id, int n) {
  return "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n"
         "To: alice@acme.example\r\n"
         "Subject: Undelivered Mail Returned to Sender\r\n"
         "Message-ID: <dsn-" + std::to_string(n) + "@mx.example.org>\r\n"
         "Date: Thu, 03 Dec 2026 10:00:00 +0000\r\n"
         "Auto-Submitted: auto-replied\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n"
         "\r\n"
         "--B\r\nContent-Type: text/plain\r\n\r\nThe mail system could not deliver your message.\r\n"
         "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
         "Reporting-MTA: dns; mx.example.org\r\n\r\n"
         "Final-Recipient: rfc822; " + rcpt + "\r\nAction: failed\r\nStatus: 5.1.1\r\n"
         "Diagnostic-Code: smtp; 550 5.1.1 <" + rcpt + ">: user unknown\r\n\r\n"
         "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
         "From: alice@acme.example\r\nTo: " + rcpt + "\r\nMessage-ID: <" + original_id + ">\r\nSubject: hello\r\n\r\n"
         "--B--\r\n";
}

std::string arf(const std::string& rcpt, const std::string& original_id) {
  return "From: feedback@fbl.example.org\r\nTo: alice@acme.example\r\nSubject: Abuse report\r\n"
         "Message-ID: <arf-1@fbl.example.org>\r\nDate: Thu, 03 Dec 2026 10:01:00 +0000\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n"
         "--A\r\nContent-Type: text/plain\r\n\r\nA complaint about a message from your mailbox.\r\n"
         "--A\r\nContent-Type: message/feedback-report\r\n\r\n"
         "Feedback-Type: abuse\r\nUser-Agent: fbl/1.0\r\nVersion: 1\r\nOriginal-Rcpt-To: <" + rcpt + ">\r\n\r\n"
         "--A\r\nContent-Type: message/rfc822\r\n\r\n"
         "From: alice@acme.example\r\nTo: " + rcpt + "\r\nMessage-ID: <" + original_id + ">\r\nSubject: hello\r\n\r\nhi\r\n"
         "--A--\r\n";
}

std::string reply(const std::string& from, const std::string& original_id, const std::string& own_id, bool automatic) {
  return "From: " + from + "\r\nTo: alice@acme.example\r\n" +
         (automatic ? "Subject: Out of office\r\nAuto-Submitted: auto-replied\r\n" : "Subject: Re: hello\r\n") +
         "Message-ID: <" + own_id + ">\r\nDate: Thu, 03 Dec 2026 10:02:00 +0000\r\n"
         "In-Reply-To: <" + original_id + ">\r\nReferences: <" + original_id + ">\r\n\r\n"
         "Thanks, sounds good. A private sentence that must never leave the inbox.\r\n";
}

// IMAP APPEND into a user's INBOX, as a mail client (or a test) puts a message there: Python's
// imaplib over TLS with the test CA, a client of its own rather than deliverd's.
void imap_append(const std::string& host, const std::string& ca_file, const std::string& user,
                 const std::string& password, const std::string& message, const TempDir& dir) {
  write_file(dir.file("append.eml"), message);
  const std::string script =
      "import imaplib, ssl, sys\n"
      "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
      "ctx.check_hostname = False\n"
      "c = imaplib.IMAP4_SSL(sys.argv[1], 993, ssl_context=ctx)\n"
      "c.login(sys.argv[3], sys.argv[4])\n"
      "typ, _ = c.append('INBOX', None, None, open(sys.argv[5], 'rb').read())\n"
      "assert typ == 'OK', typ\n"
      "c.logout()\n";
  std::string out;
  const int rc = run_command({"/usr/bin/python3", "-c", script, host, ca_file, user, password, dir.file("append.eml")},
                             &out, 20000);
  if (rc != 0) throw std::runtime_error("IMAP APPEND failed: " + out);
}

class InboundDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DovecotServer::Options dov;
    dov.ca = &ca_;
    dov.cert_name = "imap.test";
    dov.extra_config = PostfixServer::kDovecotConfig;  // Postfix delivers "alice@inbound.test"
    dovecot_ = std::make_unique<DovecotServer>(dov);
    sink_ = std::make_unique<SmtpSink>(SmtpSink::Options::at_mail_port(kMailPort));
    DnsServer::Options dso;
    dso.records = {DnsServer::host_record("imap.test", dovecot_->host())};
    dns_ = std::make_unique<DnsServer>(dso);
    write_secret_file(dir_.file("imap-password"), "imap-pass\n");
    write_secret_file(dir_.file("bob-password"), "bob-pass\n");
  }

  DeliverdProcess::Options options(const std::string& consumer) {
    DeliverdProcess::Options o;
    o.redis_port = redis_.port();
    o.pg_conninfo = pg_.conninfo();
    o.consumer = consumer;
    o.shutdown_grace_s = 5;
    o.policy_toml += extra_policy_;
    o.extra_toml = "ca_file = \"" + ca_.ca_file() + "\"\n\n[dns]\nservers = [\"" + dns_->address() +
                   "\"]\n\n[inbound]\nlease = \"3s\"\npoll_interval = \"2s\"\n";
    return o;
  }

  DeliverdProcess& daemon(const std::string& consumer = "daemon-1") {
    daemons_.push_back(std::make_unique<DeliverdProcess>(options(consumer)));
    DeliverdProcess& d = *daemons_.back();
    if (daemons_.size() == 1) {
      std::string out;
      if (d.cli({"migrate"}, &out) != 0) ADD_FAILURE() << out;
      if (d.cli({"mailbox", "add", "--id", "mbx_in", "--account", "acct_1", "--email", "alice@acme.example",
                 "--smtp-host", sink_->host(), "--smtp-port", std::to_string(kMailPort), "--security", "none",
                 "--imap-host", "imap.test", "--imap-port", "993", "--imap-user", "alice", "--imap-password-file",
                 dir_.file("imap-password")},
                &out) != 0)
        ADD_FAILURE() << out;
    }
    return d;
  }

  // Sends one job per recipient and waits for its delivery; the Message-IDs sent, by job.
  std::map<std::string, std::string> send(const std::string& prefix, int n) {
    std::vector<std::string> ids, jobs;
    for (int i = 0; i < n; ++i) {
      ids.push_back(prefix + std::to_string(i));
      jobs.push_back(make_job(ids.back(), "acct_1", "mbx_in", recipient(prefix, i)));
    }
    redis_.xadd_jobs("deliverd:jobs", jobs);
    auto events = wait_for_final_events(redis_, ids, 60000);
    std::map<std::string, std::string> out;
    for (const auto& id : ids) {
      EXPECT_EQ(events[id].status, "delivered") << id << "\n" << logs();
      // The row follows the result by up to the writer's gather time: the signals sent next are
      // matched against it.
      const std::string where = " FROM delivery_events WHERE job_id = '" + id + "' AND status = 'delivered'";
      for (int tries = 0; tries < 200 && pg_.scalar("SELECT count(*)" + where) == "0"; ++tries)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      out[id] = pg_.scalar("SELECT coalesce(max(message_id), '')" + where);
      EXPECT_NE(out[id], "") << id;
    }
    return out;
  }
  static std::string recipient(const std::string& prefix, int i) {
    return prefix + std::to_string(i) + "@example.org";
  }

  std::vector<SignalEvent> signals() {
    std::vector<SignalEvent> out;
    simdjson::dom::parser parser;
    for (const std::string& json : mailbox_events(redis_)) {
      simdjson::dom::element e = parser.parse(json);
      if (e["job_id"].error()) continue;  // mailbox_disabled and the like
      SignalEvent s;
      s.json = json;
      s.event = std::string(e["event"].get_string().value());
      s.job_id = std::string(e["job_id"].get_string().value());
      s.recipient = std::string(e["recipient"].get_string().value());
      s.matched_by = std::string(e["matched_by"].get_string().value());
      if (auto st = e["status"].get_string(); !st.error()) s.status = std::string(st.value());
      s.message_id = std::string(e["message_id"].get_string().value());
      out.push_back(std::move(s));
    }
    return out;
  }
  bool wait_signals(size_t n, int timeout_ms = 20000) {
    return wait_until([&] { return signals().size() >= n; }, timeout_ms);
  }
  std::string watch_state() { return pg_.scalar("SELECT coalesce((SELECT state FROM inbound_watch), '')"); }
  bool wait_idle(int timeout_ms = 20000) {
    return wait_until([&] { return watch_state() == "idle"; }, timeout_ms);
  }

  std::string logs() {
    std::string s;
    for (auto& d : daemons_) s += "\n--- daemon\n" + d->log();
    return s + "\n--- dovecot\n" + dovecot_->log();
  }

  std::string extra_policy_;
  TestCa ca_;
  TempDir dir_{"deliverd-inbound-test"};
  RedisServer redis_;
  PostgresServer pg_;
  std::unique_ptr<DovecotServer> dovecot_;
  std::unique_ptr<SmtpSink> sink_;
  std::unique_ptr<DnsServer> dns_;
  std::vector<std::unique_ptr<DeliverdProcess>> daemons_;
};

TEST_F(InboundDaemonTest, SignalsFromTheInboxNameTheirJobsTakeEffectAndNeverChangeTheInbox) {
  // Mail that was there before the mailbox was first watched is not read.
  dovecot_->deliver("alice", dsn("old@example.org", "old@acme.example", 0));
  DeliverdProcess& d = daemon();
  d.start();
  ASSERT_TRUE(wait_idle()) << watch_state() << logs();
  auto sent = send("j", 4);

  dovecot_->deliver("alice", dsn(recipient("j", 0), sent["j0"], 1));
  // The bounce comes as an MTA delivers it (LMTP); the others are put in with IMAP APPEND.
  auto append = [&](const std::string& m) { imap_append(dovecot_->host(), ca_.ca_file(), "alice", "imap-pass", m, dir_); };
  append(arf(recipient("j", 1), sent["j1"]));
  append(reply(recipient("j", 2), sent["j2"], "ooo-1@example.org", true));
  append(reply(recipient("j", 3), sent["j3"], "reply-1@example.org", false));
  // Nothing deliverd sent: counted, not published.
  dovecot_->deliver("alice", reply("stranger@example.net", "unknown@elsewhere.example", "reply-2@example.net", false));
  // IDLE: each is picked up within seconds, not at a poll.
  ASSERT_TRUE(wait_signals(4, 15000)) << logs();
  auto got = signals();
  ASSERT_EQ(got.size(), 4u) << logs();
  std::map<std::string, SignalEvent> by_job;
  for (auto& s : got) by_job[s.job_id] = s;
  EXPECT_EQ(by_job["j0"].event, "bounce") << by_job["j0"].json;
  EXPECT_EQ(by_job["j0"].status, "5.1.1");
  EXPECT_EQ(by_job["j0"].matched_by, "message_id");
  EXPECT_EQ(by_job["j0"].recipient, recipient("j", 0));
  EXPECT_EQ(by_job["j1"].event, "complaint") << by_job["j1"].json;
  EXPECT_NE(by_job["j1"].json.find(R"("feedback_type":"abuse")"), std::string::npos);
  EXPECT_EQ(by_job["j2"].event, "auto_reply") << by_job["j2"].json;
  EXPECT_EQ(by_job["j3"].event, "reply") << by_job["j3"].json;
  EXPECT_EQ(by_job["j3"].message_id, "reply-1@example.org");
  EXPECT_NE(by_job["j3"].json.find(R"("date":"Thu, 03 Dec 2026 10:02:00 +0000")"), std::string::npos);
  for (auto& s : got) EXPECT_EQ(s.json.find("private sentence"), std::string::npos) << "a body left the inbox";

  // Effects: the hard bounce and the complaint suppress; the replies do not (suppress_on_reply off).
  EXPECT_TRUE(wait_until([&] {
    return pg_.scalar("SELECT count(*) FROM suppressions WHERE account = 'acct_1' AND source = 'bounce_async'") == "1" &&
           pg_.scalar("SELECT count(*) FROM suppressions WHERE account = 'acct_1' AND source = 'complaint'") == "1";
  }, 10000)) << logs();
  EXPECT_EQ(pg_.scalar("SELECT count(*) FROM suppressions"), "2");
  // The next job to the bounced address is refused at admission.
  redis_.xadd_job("deliverd:jobs", make_job("again", "acct_1", "mbx_in", recipient("j", 0)));
  EXPECT_EQ(wait_for_final_events(redis_, {"again"}, 30000)["again"].status, "suppressed");

  EXPECT_NE(d.http_get("/metrics").find(R"(deliverd_inbound_signals_total{event="reply",matched="no"} 1)"),
            std::string::npos);
  // Read with BODY.PEEK from a folder opened read-only: no flag set, nothing moved.
  EXPECT_EQ(dovecot_->count("alice"), 6u);
  for (uint32_t uid = 1; uid <= 6; ++uid) EXPECT_EQ(dovecot_->flags("alice", uid).find("\\Seen"), std::string::npos) << uid;

  // The API shows the watcher.
  std::string out;
  ASSERT_EQ(d.cli({"key", "create", "--role", "owner"}, &out), 0) << out;
  const std::string token = out.substr(out.find("dlv_"), out.find_first_of(" \n", out.find("dlv_")) - out.find("dlv_"));
  const std::string mbx =
      curl("GET", "http://127.0.0.1:" + std::to_string(d.admin_port()) + "/v1/mailboxes/mbx_in", token);
  EXPECT_NE(mbx.find(R"("watcher":{"state":"idle","last_uid":6,"uid_validity":)"), std::string::npos) << mbx;
  EXPECT_NE(mbx.find(R"("last_error":null})"), std::string::npos) << mbx;
  EXPECT_NE(mbx.find(R"("owner":"daemon-1")"), std::string::npos) << mbx;

  // A restart reads on from where it stopped: the message that came while it was down, and
  // nothing twice.
  ASSERT_EQ(d.stop(), 0);
  dovecot_->deliver("alice", reply(recipient("j", 0), sent["j0"], "reply-3@example.org", false));
  d.start();
  ASSERT_TRUE(wait_signals(5)) << logs();
  EXPECT_TRUE(wait_idle()) << logs();
  EXPECT_EQ(signals().size(), 5u) << logs();
  EXPECT_EQ(signals().back().message_id, "reply-3@example.org");
}

TEST_F(InboundDaemonTest, ASecondDaemonTakesTheWatchOverWhenTheFirstIsKilled) {
  DeliverdProcess& d1 = daemon("daemon-1");
  DeliverdProcess& d2 = daemon("daemon-2");
  d1.start();
  d2.start();
  ASSERT_TRUE(wait_idle()) << logs();
  auto sent = send("t", 1);
  const std::string owner = pg_.scalar("SELECT owner FROM inbound_watch");
  ASSERT_TRUE(owner == "daemon-1" || owner == "daemon-2") << owner;
  DeliverdProcess& holder = owner == "daemon-1" ? d1 : d2;
  const std::string other = owner == "daemon-1" ? "daemon-2" : "daemon-1";
  // Only one watches: one IMAP login so far.
  holder.stop(SIGKILL);
  dovecot_->deliver("alice", reply(recipient("t", 0), sent["t0"], "reply-t@example.org", false));
  // Within a lease (3 s) and a scan the other daemon holds the watch and reads the reply.
  ASSERT_TRUE(wait_signals(1, 20000)) << logs();
  EXPECT_EQ(signals()[0].job_id, "t0");
  EXPECT_TRUE(wait_until([&] { return pg_.scalar("SELECT owner FROM inbound_watch") == other; }, 10000))
      << pg_.scalar("SELECT owner FROM inbound_watch");
  EXPECT_EQ(signals().size(), 1u);
}

TEST_F(InboundDaemonTest, ThreeAsyncHardBouncesOfTheLastFiftySendsPauseTheMailbox) {
  DeliverdProcess& d = daemon();
  d.start();
  ASSERT_TRUE(wait_idle()) << logs();
  auto sent = send("g", 50);
  for (int i = 0; i < 3; ++i) dovecot_->deliver("alice", dsn(recipient("g", i), sent["g" + std::to_string(i)], 10 + i));
  ASSERT_TRUE(wait_signals(3)) << logs();
  EXPECT_TRUE(wait_until([&] { return pg_.scalar("SELECT paused FROM mailboxes WHERE id = 'mbx_in'") == "t"; }, 10000))
      << logs();
  EXPECT_EQ(pg_.scalar("SELECT paused_by FROM mailboxes WHERE id = 'mbx_in'"), "daemon");
  EXPECT_EQ(pg_.scalar("SELECT count(*) FROM suppressions WHERE source = 'bounce_async'"), "3");
}

// The relay accepts (250), then the recipient's server refuses: Postfix's own DSN comes back to
// the sending mailbox, and the watcher reads it as the bounce of the job.
TEST_F(InboundDaemonTest, ARealPostfixBounceOfAMessageDeliverdSentNamesItsJob) {
  PostfixServer::Options po;
  po.lmtp_socket = dovecot_->lmtp_socket();
  PostfixServer postfix(po);
  DeliverdProcess& d = daemon();
  std::string out;
  ASSERT_EQ(d.cli({"mailbox", "add", "--id", "mbx_pf", "--account", "acct_1", "--email", "bob@inbound.test",
                   "--smtp-host", postfix.host(), "--smtp-port", std::to_string(PostfixServer::kPort), "--security",
                   "none", "--imap-host", "imap.test", "--imap-port", "993", "--imap-user", "bob",
                   "--imap-password-file", dir_.file("bob-password")},
                  &out),
            0)
      << out;
  d.start();
  ASSERT_TRUE(wait_until([&] { return pg_.scalar("SELECT count(*) FROM inbound_watch WHERE state = 'idle'") == "2"; },
                         20000))
      << logs();
  redis_.xadd_jobs("deliverd:jobs", {make_job("pf-gone", "acct_1", "mbx_pf", "nobody@inbound.test"),
                                     make_job("pf-ok", "acct_1", "mbx_pf", "alice@inbound.test")});
  auto events = wait_for_final_events(redis_, {"pf-gone", "pf-ok"}, 30000);
  ASSERT_EQ(events["pf-gone"].status, "delivered") << "the relay's 250 is all deliverd sees at send time";
  ASSERT_TRUE(wait_signals(1, 30000)) << logs() << "\n--- postfix\n" << postfix.log();
  auto got = signals();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].event, "bounce") << got[0].json;
  EXPECT_EQ(got[0].job_id, "pf-gone") << got[0].json;
  EXPECT_EQ(got[0].matched_by, "message_id") << got[0].json;
  EXPECT_EQ(got[0].recipient, "nobody@inbound.test");
  EXPECT_EQ(got[0].status.substr(0, 4), "5.1.") << got[0].json;
  EXPECT_NE(got[0].json.find(R"("rule":"rfc3464")"), std::string::npos) << got[0].json;
  EXPECT_TRUE(wait_until([&] {
    return pg_.scalar("SELECT count(*) FROM suppressions WHERE source = 'bounce_async'") == "1";
  }, 10000));
  // The delivered one reached alice's inbox, which deliverd also watches (mbx_in): it is not a
  // signal about anything sent.
  EXPECT_EQ(dovecot_->count("alice"), 1u);
  EXPECT_EQ(dovecot_->count("bob"), 1u);
}

}  // namespace
