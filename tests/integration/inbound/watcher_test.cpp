// The watcher against a real Dovecot: where a fresh watch starts, what it reads through IDLE and
// how it classifies it, that it changes nothing it was not asked to, and how it backs off.
#include "inbound/watcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/fixtures/dovecot_server.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/fixtures/test_loop.h"

namespace deliverd::inbound {
namespace {

using deliverd::testing::DovecotServer;
using Loop = deliverd::testing::TestLoop;

deliverd::testing::TestCa& test_ca() {
  static deliverd::testing::TestCa ca;  // one key generation for the whole binary
  return ca;
}

DovecotServer::Options shared_ca() {
  DovecotServer::Options o;
  o.ca = &test_ca();
  return o;
}

// The daemon's side, kept in memory: a vetted address, alice's password, the cursor, the signals.
struct TestHost final : WatcherHost {
  sockaddr_storage addr{};
  std::string password = "imap-pass";
  Cursor stored;
  int saves = 0;
  int refuse_signals = 0;  // answer done(false) this many times first
  struct Seen {
    uint32_t uid;
    Signal signal;
    bool accepted;
  };
  std::vector<Seen> signals;
  std::vector<WatchState> states;
  std::string backoff_error;

  TestHost(const std::string& ip, int port) { uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr)); }

  void resolve(std::function<void(core::Result<sockaddr_storage, std::string>)> done) override { done(addr); }
  void credentials(std::function<void(core::Result<ImapCredentials, std::string>)> done) override {
    done(ImapCredentials::with_password("alice", password));
  }
  void load_cursor(std::function<void(core::Result<Cursor, std::string>)> done) override { done(stored); }
  void save_cursor(Cursor c, std::function<void(bool)> done) override {
    stored = c;
    ++saves;
    done(true);
  }
  void signal(const Signal& s, uint32_t uid, std::function<void(bool)> done) override {
    bool ok = refuse_signals == 0;
    if (!ok) --refuse_signals;
    signals.push_back({uid, s, ok});
    done(ok);
  }
  void state_changed(WatchState s, std::string_view error) override {
    states.push_back(s);
    if (s == WatchState::Backoff) backoff_error = std::string(error);
  }

  std::vector<Seen> accepted() const {
    std::vector<Seen> out;
    for (const auto& s : signals)
      if (s.accepted) out.push_back(s);
    return out;
  }
  bool was(WatchState s) const { return std::find(states.begin(), states.end(), s) != states.end(); }
};

WatcherConfig config_for(const DovecotServer& d, core::Security security) {
  WatcherConfig cfg;
  cfg.host = d.cert_name();
  cfg.port = security == core::Security::Tls ? DovecotServer::kImapsPort : DovecotServer::kImapPort;
  cfg.imap.security = security;
  core::TlsClientOptions o;
  o.ca_file = d.ca_file();
  o.use_system_roots = false;
  auto tls = core::TlsContext::client(o);
  EXPECT_TRUE(tls) << tls.error();
  if (tls) cfg.imap.tls = *tls;
  for (auto& ms : cfg.imap.timeouts.ms) ms = 15000;
  cfg.backoff_min_ms = 50;
  cfg.backoff_max_ms = 400;
  cfg.backoff_limit_ms = 400;
  return cfg;
}

int port_of(const WatcherConfig& cfg) { return cfg.port; }

const std::string kOld =
    "From: Carol <carol@example.org>\r\nTo: alice@deliverd.test\r\nSubject: old news\r\n"
    "Message-ID: <old-1@example.org>\r\n\r\nFrom before the watch.\r\n";

const std::string kDsn =
    "From: MAILER-DAEMON@mx.example.org\r\nTo: alice@deliverd.test\r\nSubject: Undelivered Mail Returned to Sender\r\n"
    "Message-ID: <dsn-1@mx.example.org>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"r1\"\r\n\r\n"
    "--r1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
    "--r1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
    "Final-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n"
    "--r1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: alice@deliverd.test\r\nTo: nobody@example.org\r\n"
    "Message-ID: <x@deliverd.test>\r\nSubject: hi\r\n\r\n"
    "--r1--\r\n";

const std::string kArf =
    "From: <abuse@provider.example>\r\nTo: <alice@deliverd.test>\r\nSubject: FW: hi\r\n"
    "Message-ID: <arf-1@provider.example>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=feedback-report; boundary=\"a1\"\r\n\r\n"
    "--a1\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
    "--a1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: Test/1.0\r\n"
    "Version: 1\r\nOriginal-Rcpt-To: <grace@provider.example>\r\n\r\n"
    "--a1\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
    "From: <alice@deliverd.test>\r\nTo: <grace@provider.example>\r\nSubject: hi\r\n"
    "Message-ID: <arf-orig@deliverd.test>\r\n\r\nHello.\r\n"
    "--a1--\r\n";

const std::string kAutoReply =
    "From: Dan <dan@example.org>\r\nTo: alice@deliverd.test\r\nSubject: Out of office\r\n"
    "Message-ID: <ooo-1@example.org>\r\nAuto-Submitted: auto-replied\r\nIn-Reply-To: <y@deliverd.test>\r\n\r\n"
    "I am away until Monday.\r\n";

std::string reply_to(const std::string& id, const std::string& own) {
  return "From: Bob <bob@example.org>\r\nTo: alice@deliverd.test\r\nSubject: Re: hi\r\n"
         "Message-ID: <" +
         own + ">\r\nIn-Reply-To: <" + id + ">\r\nReferences: <" + id +
         ">\r\n\r\n"
         "Sounds good.\r\n";
}

bool has_id(const Signal& s, const std::string& id) {
  return std::find(s.referenced_ids.begin(), s.referenced_ids.end(), id) != s.referenced_ids.end();
}

// Starts a watcher and waits until it has read what was there and waits for more.
std::unique_ptr<Watcher> watching(Loop& loop, WatcherConfig cfg, TestHost& host) {
  auto w = std::make_unique<Watcher>(loop.get(), std::move(cfg), host);
  w->start();
  EXPECT_TRUE(loop.run_until([&] { return w->state() == WatchState::Idle; })) << w->last_error();
  return w;
}

TEST(Watcher, AFreshWatchStartsAfterTheMailAlreadyThereAndSavesTheCursor) {
  DovecotServer dovecot(shared_ca());
  dovecot.deliver("alice", kOld);
  dovecot.deliver("alice", kDsn);
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::Tls);
  TestHost host(dovecot.host(), port_of(cfg));
  auto w = watching(loop, cfg, host);
  EXPECT_TRUE(host.signals.empty());
  EXPECT_GT(host.stored.uid_validity, 0u);
  EXPECT_EQ(host.stored.last_uid, 2u);
  EXPECT_EQ(host.saves, 1);
  EXPECT_EQ(w->cursor().last_uid, 2u);
  EXPECT_EQ(w->cursor().uid_validity, host.stored.uid_validity);
  EXPECT_EQ(host.states, (std::vector<WatchState>{WatchState::Connecting, WatchState::Reading, WatchState::Idle}));
  w->stop();
  EXPECT_EQ(w->state(), WatchState::Stopped);
  EXPECT_EQ(host.states.back(), WatchState::Stopped);
}

TEST(Watcher, NewMailIsPickedUpByIdleClassifiedAndLeftUnseen) {
  DovecotServer dovecot(shared_ca());
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::Tls);
  TestHost host(dovecot.host(), port_of(cfg));
  auto w = watching(loop, cfg, host);
  dovecot.deliver("alice", kDsn);
  dovecot.deliver("alice", kArf);
  dovecot.deliver("alice", kAutoReply);
  dovecot.deliver("alice", reply_to("z@deliverd.test", "r-1@example.org"));
  // IDLE brings it within moments; the bound only keeps a broken watcher from hanging the test.
  ASSERT_TRUE(loop.run_until([&] { return host.signals.size() == 4 && w->state() == WatchState::Idle; }, 10000))
      << host.signals.size() << " " << to_string(w->state()) << " " << w->last_error();
  const auto& s = host.signals;
  EXPECT_EQ(s[0].uid, 1u);
  EXPECT_EQ(s[0].signal.kind, SignalKind::Bounce);
  EXPECT_TRUE(has_id(s[0].signal, "x@deliverd.test"));
  ASSERT_EQ(s[0].signal.recipients.size(), 1u);
  EXPECT_EQ(s[0].signal.recipients[0].status, "5.1.1");
  EXPECT_EQ(s[1].signal.kind, SignalKind::Complaint);
  EXPECT_EQ(s[1].signal.feedback_type, "abuse");
  EXPECT_TRUE(has_id(s[1].signal, "arf-orig@deliverd.test"));
  EXPECT_EQ(s[2].signal.kind, SignalKind::AutoReply);
  EXPECT_TRUE(has_id(s[2].signal, "y@deliverd.test"));
  EXPECT_EQ(s[3].signal.kind, SignalKind::Reply);
  EXPECT_TRUE(has_id(s[3].signal, "z@deliverd.test"));
  EXPECT_EQ(s[3].uid, 4u);
  EXPECT_EQ(w->messages_read(), 4u);
  EXPECT_EQ(host.stored.last_uid, 4u);
  EXPECT_FALSE(host.was(WatchState::Backoff)) << host.backoff_error;
  w->stop();
  for (uint32_t uid = 1; uid <= 4; ++uid) EXPECT_EQ(dovecot.flags("alice", uid).find("\\Seen"), std::string::npos);
  EXPECT_EQ(dovecot.count("alice"), 4u);
}

TEST(Watcher, ARestartedWatcherReadsNothingTwice) {
  DovecotServer dovecot(shared_ca());
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::StartTls);
  TestHost host(dovecot.host(), port_of(cfg));
  {
    auto w = watching(loop, cfg, host);
    dovecot.deliver("alice", reply_to("a@deliverd.test", "r-1@example.org"));
    ASSERT_TRUE(loop.run_until([&] { return host.signals.size() == 1; }, 10000)) << w->last_error();
    w->stop();
  }
  dovecot.deliver("alice", reply_to("b@deliverd.test", "r-2@example.org"));  // while nobody watched
  auto again = watching(loop, cfg, host);
  ASSERT_TRUE(loop.run_until([&] { return host.signals.size() == 2; }, 10000)) << again->last_error();
  dovecot.deliver("alice", reply_to("c@deliverd.test", "r-3@example.org"));
  ASSERT_TRUE(loop.run_until([&] { return host.signals.size() == 3 && again->state() == WatchState::Idle; }, 10000));
  EXPECT_EQ(host.signals[0].uid, 1u);
  EXPECT_EQ(host.signals[1].uid, 2u);
  EXPECT_TRUE(has_id(host.signals[1].signal, "b@deliverd.test"));
  EXPECT_EQ(host.signals[2].uid, 3u);
  EXPECT_EQ(host.stored.last_uid, 3u);
}

TEST(Watcher, ACursorFromAnotherUidValidityStartsOverFromNow) {
  DovecotServer dovecot(shared_ca());
  dovecot.deliver("alice", kOld);
  dovecot.deliver("alice", kDsn);
  dovecot.deliver("alice", kArf);
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::Tls);
  TestHost host(dovecot.host(), port_of(cfg));
  host.stored = Cursor{1, 1};  // Dovecot's UIDVALIDITY is a time stamp, never 1
  auto w = watching(loop, cfg, host);
  EXPECT_TRUE(host.signals.empty());
  EXPECT_NE(host.stored.uid_validity, 1u);
  EXPECT_EQ(host.stored.last_uid, 3u);
  dovecot.deliver("alice", kAutoReply);
  ASSERT_TRUE(loop.run_until([&] { return host.signals.size() == 1; }, 10000));
  EXPECT_EQ(host.signals[0].uid, 4u);
}

TEST(Watcher, ASignalTheHostCannotTakeBacksOffAndIsReadAgain) {
  DovecotServer dovecot(shared_ca());
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::Tls);
  TestHost host(dovecot.host(), port_of(cfg));
  auto w = watching(loop, cfg, host);
  host.refuse_signals = 2;
  dovecot.deliver("alice", kDsn);
  ASSERT_TRUE(loop.run_until([&] { return host.accepted().size() == 1 && w->state() == WatchState::Idle; }, 10000))
      << w->last_error();
  ASSERT_EQ(host.signals.size(), 3u);
  for (const auto& s : host.signals) EXPECT_EQ(s.uid, 1u);
  EXPECT_TRUE(host.was(WatchState::Backoff));
  EXPECT_EQ(host.backoff_error.rfind("signal:", 0), 0u) << host.backoff_error;
  EXPECT_EQ(host.stored.last_uid, 1u);
  EXPECT_EQ(w->messages_read(), 1u);
}

TEST(Watcher, MoveToTakesTheBounceAwayAndLeavesTheReply) {
  DovecotServer dovecot(shared_ca());
  ASSERT_EQ(dovecot.doveadm({"mailbox", "create", "-u", "alice", "Bounces"}), 0);
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::Tls);
  cfg.move_to = "Bounces";
  TestHost host(dovecot.host(), port_of(cfg));
  auto w = watching(loop, cfg, host);
  dovecot.deliver("alice", kDsn);
  dovecot.deliver("alice", reply_to("z@deliverd.test", "r-1@example.org"));
  ASSERT_TRUE(loop.run_until([&] { return host.stored.last_uid == 2 && w->state() == WatchState::Idle; }, 10000))
      << w->last_error();
  ASSERT_EQ(host.signals.size(), 2u);
  EXPECT_EQ(host.signals[0].signal.kind, SignalKind::Bounce);
  EXPECT_EQ(host.signals[1].signal.kind, SignalKind::Reply);
  w->stop();
  EXPECT_EQ(dovecot.count("alice", "INBOX"), 1u);
  EXPECT_EQ(dovecot.count("alice", "Bounces"), 1u);
}

TEST(Watcher, AnAttachmentIsNeverFetched) {
  DovecotServer dovecot(shared_ca());
  std::string pdf;
  for (size_t i = 0; i < (2u << 20) / 57; ++i) pdf += std::string(76, 'Q') + "\r\n";  // ~2.6 MiB of base64
  std::string mail =
      "From: Bob <bob@example.org>\r\nTo: alice@deliverd.test\r\nSubject: Re: hi\r\n"
      "Message-ID: <big@example.org>\r\nIn-Reply-To: <z@deliverd.test>\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=\"m1\"\r\n\r\n"
      "--m1\r\nContent-Type: text/plain\r\n\r\nThe file you asked for.\r\n"
      "--m1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
      "Content-Disposition: attachment; filename=\"a.pdf\"\r\n\r\n" +
      pdf + "--m1--\r\n";
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::Tls);
  // Reading the attachment would break these bounds and end the connection.
  cfg.imap.limits.max_literal = 128 * 1024;
  cfg.imap.max_command_bytes = 512 * 1024;
  TestHost host(dovecot.host(), port_of(cfg));
  auto w = watching(loop, cfg, host);
  dovecot.deliver("alice", mail);
  ASSERT_TRUE(loop.run_until([&] { return host.signals.size() == 1 && w->state() == WatchState::Idle; }, 10000))
      << w->last_error();
  EXPECT_EQ(host.signals[0].signal.kind, SignalKind::Reply);
  EXPECT_TRUE(has_id(host.signals[0].signal, "z@deliverd.test"));
  EXPECT_FALSE(host.was(WatchState::Backoff)) << host.backoff_error;
}

TEST(Watcher, WithoutIdleItPollsWithNoop) {
  DovecotServer::Options o = shared_ca();
  o.extra_config = "imap_capability = IMAP4rev1 SASL-IR LITERAL+ UIDPLUS MOVE\n";  // no IDLE
  DovecotServer dovecot(o);
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::Tls);
  cfg.poll_interval_ms = 100;
  TestHost host(dovecot.host(), port_of(cfg));
  Watcher w(loop.get(), cfg, host);
  w.start();
  ASSERT_TRUE(loop.run_until([&] { return w.state() == WatchState::Polling; })) << w.last_error();
  dovecot.deliver("alice", kAutoReply);
  ASSERT_TRUE(loop.run_until([&] { return host.signals.size() == 1 && w.state() == WatchState::Polling; }, 10000))
      << w.last_error();
  EXPECT_EQ(host.signals[0].signal.kind, SignalKind::AutoReply);
  EXPECT_FALSE(host.was(WatchState::Idle));
  EXPECT_FALSE(host.was(WatchState::Backoff)) << host.backoff_error;
  w.stop();
}

TEST(Watcher, AWrongPasswordBacksOffWithTheLoginError) {
  DovecotServer dovecot(shared_ca());
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::Tls);
  TestHost host(dovecot.host(), port_of(cfg));
  host.password = "not-it";
  Watcher w(loop.get(), cfg, host);
  w.start();
  ASSERT_TRUE(loop.run_until([&] { return w.state() == WatchState::Backoff; }));
  EXPECT_EQ(w.last_error().rfind("login: login_failed", 0), 0u) << w.last_error();
  EXPECT_EQ(w.last_error().find("not-it"), std::string::npos);
  EXPECT_EQ(host.backoff_error, w.last_error());
  EXPECT_EQ(host.saves, 0);
  w.stop();
}

TEST(Watcher, AnUnreachablePortBacksOffWithTheConnectErrorAndTriesAgain) {
  DovecotServer dovecot(shared_ca());
  Loop loop;
  auto cfg = config_for(dovecot, core::Security::Tls);
  TestHost host(dovecot.host(), 1);  // nothing listens there
  Watcher w(loop.get(), cfg, host);
  w.start();
  ASSERT_TRUE(loop.run_until([&] { return w.state() == WatchState::Backoff; }));
  EXPECT_EQ(w.last_error().rfind("connect: connect", 0), 0u) << w.last_error();
  // It keeps trying, with the wait growing from backoff_min_ms.
  ASSERT_TRUE(
      loop.run_until([&] { return std::count(host.states.begin(), host.states.end(), WatchState::Backoff) >= 3; }));
  w.stop();
  EXPECT_EQ(w.state(), WatchState::Stopped);
}

}  // namespace
}  // namespace deliverd::inbound
