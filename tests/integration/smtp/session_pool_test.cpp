// SessionPool and MX mode against real servers: connection reuse with RSET, per-connection message
// cap, idle QUIT, global cap with fair queueing, stale idle connections, shutdown; MX preference
// order, implicit MX, null MX and NXDOMAIN through dnsmasq.
#include "smtp/session_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "dns/resolver.h"
#include "smtp/mx_delivery.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"
#include "tests/integration/fixtures/smtp_sink.h"

namespace deliverd::smtp {
namespace {

using deliverd::testing::DnsServer;
using deliverd::testing::now_ms;
using deliverd::testing::ScriptedSmtpServer;

SessionConfig fast_config() {
  SessionConfig cfg;
  cfg.helo_name = "client.test";
  for (auto& ms : cfg.timeouts.ms) ms = 5000;
  cfg.total_ms = 30000;
  return cfg;
}

Route route_to(const std::string& key, const std::string& ip, int port) {
  Route r;
  r.key = key;
  r.cfg = fast_config();
  r.host = "relay.test";
  uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in*>(&r.addr));
  return r;
}

Envelope envelope(const std::string& tag) {
  return Envelope{"alice@acme.example", "bob@example.org", "Subject: " + tag + "\r\n\r\nbody " + tag + "\r\n"};
}

size_t count(const std::vector<std::string>& cmds, const std::string& prefix) {
  return static_cast<size_t>(
      std::count_if(cmds.begin(), cmds.end(), [&](const std::string& c) { return c.rfind(prefix, 0) == 0; }));
}

struct Loop {
  uv_loop_t loop;
  Loop() { uv_loop_init(&loop); }
  void run() { uv_run(&loop, UV_RUN_DEFAULT); }
  ~Loop() { EXPECT_EQ(uv_loop_close(&loop), 0); }
};

// While held, nothing new is sent: neither on a new connection nor on an idle one; the
// messages wait and go when the hold ends.
TEST(SessionPool, AHeldPoolStartsNoTransactionUntilReleased) {
  ScriptedSmtpServer srv;
  Loop l;
  PoolConfig pc;
  pc.idle_timeout_ms = 2000;
  std::vector<core::Outcome> outs;
  {
    SessionPool pool(&l.loop, pc);
    pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("first"),
                [&](const core::Outcome& o) { outs.push_back(o); });
    while (outs.empty()) uv_run(&l.loop, UV_RUN_ONCE);  // delivered; its connection is idle now
    pool.hold(true);
    for (int i = 0; i < 3; ++i)
      pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("held" + std::to_string(i)),
                  [&](const core::Outcome& o) { outs.push_back(o); });
    pool.submit(route_to("mbx:2", "127.0.0.1", srv.port()), envelope("held-other"),
                [&](const core::Outcome& o) { outs.push_back(o); });
    EXPECT_EQ(pool.queued(), 4u);
    EXPECT_EQ(pool.open_sessions(), 1u) << "no new connection while held";
    const long long until = now_ms() + 300;
    while (now_ms() < until) uv_run(&l.loop, UV_RUN_NOWAIT);
    EXPECT_EQ(outs.size(), 1u);
    EXPECT_EQ(srv.message_count(), 1u);
    pool.hold(false);
    while (outs.size() < 5) uv_run(&l.loop, UV_RUN_ONCE);
    pool.shutdown();
    l.run();
  }
  for (const auto& o : outs) EXPECT_EQ(o.status, core::Status::Delivered) << o.phase << "/" << o.reason;
  EXPECT_EQ(srv.message_count(), 5u);
}

TEST(SessionPool, ReusesOneConnectionWithRsetBetweenMessages) {
  ScriptedSmtpServer srv;
  Loop l;
  PoolConfig pc;
  pc.max_sessions = 1;
  pc.idle_timeout_ms = 100;
  std::vector<core::Outcome> outs;
  {
    SessionPool pool(&l.loop, pc);
    for (int i = 0; i < 3; ++i)
      pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("m" + std::to_string(i)),
                  [&](const core::Outcome& o) { outs.push_back(o); });
    EXPECT_EQ(pool.open_sessions(), 1u);
    EXPECT_EQ(pool.queued(), 2u);
    l.run();  // the idle timeout QUITs the connection, after which nothing is left on the loop
    EXPECT_EQ(pool.open_sessions(), 0u);
  }
  ASSERT_EQ(outs.size(), 3u);
  for (const auto& o : outs) EXPECT_EQ(o.status, core::Status::Delivered) << o.phase << "/" << o.reason;
  auto cmds = srv.commands();
  EXPECT_EQ(count(cmds, "CONNECT"), 1u);
  EXPECT_EQ(count(cmds, "RSET"), 2u);
  EXPECT_EQ(count(cmds, "."), 3u);
  EXPECT_EQ(count(cmds, "QUIT"), 1u);
  EXPECT_EQ(cmds.back(), "QUIT");
}

TEST(SessionPool, ARaisedCapFromAReloadOpensSessionsForQueuedMessages) {
  ScriptedSmtpServer srv;
  Loop l;
  PoolConfig pc;
  pc.max_sessions = 1;
  pc.max_sessions_per_key = 1;
  pc.idle_timeout_ms = 100;
  int delivered = 0;
  {
    SessionPool pool(&l.loop, pc);
    for (int i = 0; i < 4; ++i)
      pool.submit(route_to("mbx:" + std::to_string(i), "127.0.0.1", srv.port()), envelope("m"),
                  [&](const core::Outcome& o) { delivered += o.status == core::Status::Delivered; });
    EXPECT_EQ(pool.open_sessions(), 1u);
    EXPECT_EQ(pool.queued(), 3u);
    pc.max_sessions = 4;
    pool.reconfigure(pc);
    EXPECT_EQ(pool.open_sessions(), 4u);
    EXPECT_EQ(pool.queued(), 0u);
    l.run();
  }
  EXPECT_EQ(delivered, 4);
  EXPECT_EQ(count(srv.commands(), "CONNECT"), 4u);
}

TEST(SessionPool, CapsMessagesPerConnection) {
  ScriptedSmtpServer srv;
  Loop l;
  PoolConfig pc;
  pc.max_sessions = 1;
  pc.max_messages_per_connection = 2;
  pc.idle_timeout_ms = 100;
  int delivered = 0;
  {
    SessionPool pool(&l.loop, pc);
    for (int i = 0; i < 5; ++i)
      pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("m"), [&](const core::Outcome& o) {
        if (o.status == core::Status::Delivered) ++delivered;
      });
    l.run();
  }
  EXPECT_EQ(delivered, 5);
  EXPECT_EQ(count(srv.commands(), "CONNECT"), 3u);
}

TEST(SessionPool, IdleConnectionQuitsAfterTheIdleTimeout) {
  ScriptedSmtpServer srv;
  Loop l;
  PoolConfig pc;
  pc.idle_timeout_ms = 300;
  long long start = now_ms(), done_at = 0;
  {
    SessionPool pool(&l.loop, pc);
    pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("m"),
                [&](const core::Outcome&) { done_at = now_ms(); });
    l.run();
  }
  long long end = now_ms();
  EXPECT_GT(done_at, 0);
  EXPECT_GE(end - done_at, 250);  // it stayed open for the idle period …
  EXPECT_LT(end - start, 10000);  // … and then went away by itself
  EXPECT_EQ(srv.commands().back(), "QUIT");
}

// A mailbox whose settings changed (or that was paused, disabled or removed) keeps no idle
// session: the daemon closes its idle ones by key prefix, and only its.
TEST(SessionPool, IdleConnectionsOfOneMailboxCloseByKeyPrefix) {
  ScriptedSmtpServer srv;
  Loop l;
  PoolConfig pc;
  pc.idle_timeout_ms = 60000;  // nothing closes by itself within the test
  int delivered = 0;
  size_t idle_before = 0, idle_after = 0;
  uv_timer_t later;
  uv_timer_init(&l.loop, &later);
  {
    SessionPool pool(&l.loop, pc);
    struct Step {
      SessionPool* pool;
      size_t* before;
      size_t* after;
    } step{&pool, &idle_before, &idle_after};
    later.data = &step;
    auto sent = [&](const core::Outcome& o) {
      EXPECT_EQ(o.status, core::Status::Delivered) << o.phase << "/" << o.reason;
      if (++delivered < 2) return;
      // Both sessions go idle once their message is done; look a moment later.
      uv_timer_start(&later, [](uv_timer_t* t) {
        auto* st = static_cast<Step*>(t->data);
        *st->before = st->pool->idle_sessions();
        st->pool->close_idle("mbx:6:acct_1:a#");
        *st->after = st->pool->idle_sessions();
        st->pool->close_idle();
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
      }, 200, 0);
    };
    pool.submit(route_to("mbx:6:acct_1:a#1", "127.0.0.1", srv.port()), envelope("a"), sent);
    pool.submit(route_to("mbx:6:acct_1:b#1", "127.0.0.1", srv.port()), envelope("b"), sent);
    l.run();
    EXPECT_EQ(pool.open_sessions(), 0u);
  }
  EXPECT_EQ(delivered, 2);
  EXPECT_EQ(idle_before, 2u);
  EXPECT_EQ(idle_after, 1u) << "only mailbox a's idle session closed";
  auto cmds = srv.commands();
  EXPECT_EQ(count(cmds, "CONNECT"), 2u);
  EXPECT_EQ(count(cmds, "QUIT"), 2u);
}

TEST(SessionPool, GlobalCapServesWaitingKeysInTurn) {
  ScriptedSmtpServer srv;
  Loop l;
  PoolConfig pc;
  pc.max_sessions = 1;
  pc.idle_timeout_ms = 100;
  std::vector<std::string> order;
  {
    SessionPool pool(&l.loop, pc);
    for (int i = 0; i < 4; ++i)
      pool.submit(route_to("mbx:A", "127.0.0.1", srv.port()), envelope("a"),
                  [&](const core::Outcome& o) { order.push_back(o.status == core::Status::Delivered ? "A" : "a!"); });
    for (int i = 0; i < 2; ++i)
      pool.submit(route_to("mbx:B", "127.0.0.1", srv.port()), envelope("b"),
                  [&](const core::Outcome& o) { order.push_back(o.status == core::Status::Delivered ? "B" : "b!"); });
    EXPECT_LE(pool.open_sessions(), 1u);
    l.run();
  }
  ASSERT_EQ(order.size(), 6u);
  // B's first message does not wait for all of A's.
  auto first_b = std::find(order.begin(), order.end(), "B") - order.begin();
  EXPECT_LT(first_b, 4) << ::testing::PrintToString(order);
  EXPECT_EQ(std::count(order.begin(), order.end(), "B"), 2);
  EXPECT_EQ(std::count(order.begin(), order.end(), "A"), 4);
}

TEST(SessionPool, ConnectionClosedWhileIdleIsReplacedTransparently) {
  ScriptedSmtpServer srv(R"({"steps": {"DOT": {"reply": "250 2.0.0 ok", "close_after": true}}})");
  Loop l;
  PoolConfig pc;
  pc.max_sessions = 1;
  pc.idle_timeout_ms = 200;
  std::vector<core::Outcome> outs;
  {
    SessionPool pool(&l.loop, pc);
    for (int i = 0; i < 3; ++i)
      pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("m"),
                  [&](const core::Outcome& o) { outs.push_back(o); });
    l.run();
  }
  ASSERT_EQ(outs.size(), 3u);
  for (const auto& o : outs) EXPECT_EQ(o.status, core::Status::Delivered) << o.phase << "/" << o.reason;
  EXPECT_EQ(srv.message_count(), 3u);
}

TEST(SessionPool, RecipientRejectionKeepsTheConnectionForTheNextMessage) {
  ScriptedSmtpServer srv(
      R"({"steps": {"EHLO": ["250-x", "250 8BITMIME"], "RCPT": [{"times": 1, "reply": "550 5.1.1 no such user"}, {"reply": "250 ok"}]}})");
  Loop l;
  PoolConfig pc;
  pc.max_sessions = 1;
  pc.idle_timeout_ms = 100;
  std::vector<core::Status> st;
  {
    SessionPool pool(&l.loop, pc);
    for (int i = 0; i < 2; ++i)
      pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("m"),
                  [&](const core::Outcome& o) { st.push_back(o.status); });
    l.run();
  }
  EXPECT_EQ(st, (std::vector<core::Status>{core::Status::Bounced, core::Status::Delivered}));
  EXPECT_EQ(count(srv.commands(), "CONNECT"), 1u);
}

TEST(SessionPool, ShutdownEndsQueuedAndOpenMessages) {
  ScriptedSmtpServer srv(R"({"steps": {"BANNER": {"action": "silent"}}})");
  Loop l;
  PoolConfig pc;
  pc.max_sessions = 1;
  std::vector<std::string> reasons;
  SessionPool pool(&l.loop, pc);
  for (int i = 0; i < 3; ++i)
    pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("m"),
                [&](const core::Outcome& o) { reasons.push_back(std::string(core::to_string(o.reason))); });
  core::Timer* t = core::Timer::create(&l.loop);
  t->start(100, [&] {
    pool.shutdown();
    t->close();
  });
  l.run();
  ASSERT_EQ(reasons.size(), 3u);
  EXPECT_EQ(std::count(reasons.begin(), reasons.end(), "shutting_down"), 2);
  EXPECT_EQ(std::count(reasons.begin(), reasons.end(), "aborted"), 1);
  bool refused = false;
  pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("m"),
              [&](const core::Outcome& o) { refused = to_string(o.reason) == "shutting_down"; });
  EXPECT_TRUE(refused);
}

TEST(SessionPool, CapsConnectionsPerKey) {
  ScriptedSmtpServer srv;
  Loop l;
  PoolConfig pc;
  pc.max_sessions = 10;
  pc.max_sessions_per_key = 2;
  pc.idle_timeout_ms = 100;
  int delivered = 0;
  {
    SessionPool pool(&l.loop, pc);
    for (int i = 0; i < 8; ++i)
      pool.submit(route_to("mbx:1", "127.0.0.1", srv.port()), envelope("m"), [&](const core::Outcome& o) {
        if (o.status == core::Status::Delivered) ++delivered;
      });
    pool.submit(route_to("mbx:2", "127.0.0.1", srv.port()), envelope("other"), [&](const core::Outcome& o) {
      if (o.status == core::Status::Delivered) ++delivered;
    });
    EXPECT_EQ(pool.open_sessions(), 3u);  // two for mbx:1, one for mbx:2
    EXPECT_EQ(pool.queued(), 6u);
    l.run();
  }
  EXPECT_EQ(delivered, 9);
  EXPECT_EQ(count(srv.commands(), "CONNECT"), 3u);
}

TEST(SessionPool, VolumeThroughSmtpSinkWithReuseAndACap) {
  deliverd::testing::SmtpSink sink;
  Loop l;
  PoolConfig pc;
  pc.max_sessions = 20;
  pc.max_messages_per_connection = 50;
  pc.idle_timeout_ms = 100;
  constexpr int kMessages = 1000;
  int delivered = 0;
  size_t peak = 0;
  std::string first_problem;
  {
    SessionPool pool(&l.loop, pc);
    for (int i = 0; i < kMessages; ++i)
      pool.submit(route_to(i % 2 ? "mbx:odd" : "mbx:even", "127.0.0.1", sink.port()), envelope(std::to_string(i)),
                  [&](const core::Outcome& o) {
                    peak = std::max(peak, pool.open_sessions());
                    if (o.status == core::Status::Delivered)
                      ++delivered;
                    else if (first_problem.empty())
                      first_problem = std::string(core::to_string(o.phase)) + "/" +
                                      std::string(core::to_string(o.reason)) + " " + o.detail;
                  });
    EXPECT_EQ(pool.open_sessions(), 20u);
    l.run();
  }
  EXPECT_EQ(delivered, kMessages) << first_problem;
  EXPECT_LE(peak, 20u);
  EXPECT_TRUE(sink.wait_for_messages(kMessages, 20000)) << sink.message_count();
}

// MX mode: dnsmasq serves the zone; mail servers listen on loopback addresses on one port.
class MxDeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = deliverd::testing::free_port();
    good_ip_ = deliverd::testing::free_loopback_ip(port_);
    dead_ip_ = deliverd::testing::free_loopback_ip(port_);
    while (dead_ip_ == good_ip_) dead_ip_ = deliverd::testing::free_loopback_ip(port_);
    ScriptedSmtpServer::Options so;
    so.host = good_ip_;
    so.port = port_;
    srv_ = std::make_unique<ScriptedSmtpServer>("{}", so);
    DnsServer::Options d;
    d.records = {DnsServer::mx("pref.test", "dead.pref.test", 10),   DnsServer::mx("pref.test", "good.pref.test", 20),
                 DnsServer::host_record("dead.pref.test", dead_ip_), DnsServer::host_record("good.pref.test", good_ip_),
                 DnsServer::host_record("implicit.test", good_ip_),  "mx-host=nullmx.test,.,0",
                 // one host, a dead address and a good one (in whatever order dnsmasq gives them)
                 DnsServer::mx("multi.test", "mx.multi.test", 10),
                 "host-record=mx.multi.test," + dead_ip_, "host-record=mx.multi.test," + good_ip_,
                 // three MX names that do not resolve before the good one
                 DnsServer::mx("lookups.test", "gone1.lookups.test", 10), DnsServer::mx("lookups.test", "gone2.lookups.test", 20),
                 DnsServer::mx("lookups.test", "gone3.lookups.test", 30), DnsServer::mx("lookups.test", "good.pref.test", 40),
                 // two MX names on a name server that never answers, then the good one
                 DnsServer::mx("slowmx.test", "mx1.slow.test", 10), DnsServer::mx("slowmx.test", "mx2.slow.test", 20),
                 DnsServer::mx("slowmx.test", "good.pref.test", 30)};
    d.black_holed_domains = {"slow.test"};
    dns_ = std::make_unique<DnsServer>(d);
    uv_loop_init(&loop_);
    auto policy = dns::AddressPolicy::create({"127.0.0.0/8"});
    ASSERT_TRUE(policy);
    policy_ = std::make_unique<dns::AddressPolicy>(*policy);
    dns::ResolverConfig rc;
    rc.servers = {dns_->address()};
    rc.timeout_ms = 300;  // the black-holed names time out quickly
    rc.tries = 1;
    resolver_ = dns::Resolver::create(&loop_, rc, policy_.get());
  }
  void TearDown() override {
    resolver_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  core::Outcome deliver(const std::string& domain, size_t max_attempts = 5, uint64_t deadline_ms = 5 * 60 * 1000) {
    PoolConfig pc;
    pc.idle_timeout_ms = 50;
    SessionPool pool(&loop_, pc);
    MxConfig mc;
    mc.port = port_;
    mc.max_attempts = max_attempts;
    mc.deadline_ms = deadline_ms;
    mc.session = fast_config();
    MxDelivery mx(*resolver_, pool, mc);
    core::Outcome out;
    int calls = 0;
    mx.deliver(domain, Envelope{"alice@acme.example", "bob@" + domain, "Subject: x\r\n\r\ny\r\n"},
               [&](const core::Outcome& o) {
                 out = o;
                 ++calls;
                 resolver_->clear_cache();
               });
    // Run until the message is decided and the idle connection has QUIT (the resolver's handles
    // keep the loop alive, so a ticking timer bounds each turn).
    core::Timer* tick = core::Timer::create(&loop_);
    tick->start_repeating(10, [] {});
    long long deadline = now_ms() + 20000;
    while ((calls == 0 || pool.open_sessions() > 0) && now_ms() < deadline) uv_run(&loop_, UV_RUN_ONCE);
    tick->close();
    EXPECT_EQ(calls, 1);
    return out;
  }
  int port_ = 0;
  std::string good_ip_, dead_ip_;
  std::unique_ptr<ScriptedSmtpServer> srv_;
  std::unique_ptr<DnsServer> dns_;
  std::unique_ptr<dns::AddressPolicy> policy_;
  uv_loop_t loop_{};
  dns::Resolver* resolver_ = nullptr;
};

TEST_F(MxDeliveryTest, TriesHostsInPreferenceOrder) {
  auto o = deliver("pref.test");
  EXPECT_EQ(o.status, core::Status::Delivered) << o.phase << "/" << o.reason << " " << o.detail;
  EXPECT_EQ(o.host, "good.pref.test");
  EXPECT_EQ(o.ip, good_ip_);
  EXPECT_EQ(srv_->message_count(), 1u);
}

// Every address of a host is tried within the host's one attempt: a dead first address does not
// end the delivery, whichever order DNS gives the two in.
TEST_F(MxDeliveryTest, EveryAddressOfAHostIsTriedWithinItsAttempt) {
  for (int round = 0; round < 3; ++round) {
    auto o = deliver("multi.test", 1);
    EXPECT_EQ(o.status, core::Status::Delivered) << o.phase << "/" << o.reason << " " << o.detail;
    EXPECT_EQ(o.ip, good_ip_);
    EXPECT_EQ(o.host, "mx.multi.test");
  }
}

// A host whose name does not resolve counts as a host tried: three dead names use up three
// attempts, so a domain on a broken name server cannot hold a delivery for many more.
TEST_F(MxDeliveryTest, FailedLookupsCountAsAttempts) {
  auto stopped = deliver("lookups.test", 3);
  EXPECT_EQ(stopped.status, core::Status::Deferred) << stopped.phase << "/" << stopped.reason << " " << stopped.detail;
  EXPECT_EQ(to_string(stopped.phase), "resolve");
  EXPECT_EQ(stopped.host, "gone3.lookups.test");
  EXPECT_EQ(srv_->message_count(), 0u);
  auto reached = deliver("lookups.test", 4);
  EXPECT_EQ(reached.status, core::Status::Delivered) << reached.phase << "/" << reached.reason << " " << reached.detail;
  EXPECT_EQ(reached.host, "good.pref.test");
}

// One deadline bounds a delivery's lookups and connects together: MX names on a dead name server
// cannot hold it for a timeout each.
TEST_F(MxDeliveryTest, TheDeliveryDeadlineStopsFurtherHosts) {
  auto stopped = deliver("slowmx.test", 5, 100);  // the first host's lookup alone takes 300 ms
  EXPECT_EQ(stopped.status, core::Status::Deferred) << stopped.phase << "/" << stopped.reason << " " << stopped.detail;
  EXPECT_EQ(stopped.host, "mx1.slow.test");
  EXPECT_EQ(to_string(stopped.reason), "timeout");
  EXPECT_NE(stopped.detail.find("the delivery's deadline passed before mx2.slow.test was tried"), std::string::npos)
      << stopped.detail;
  EXPECT_EQ(srv_->message_count(), 0u);
  auto reached = deliver("slowmx.test");  // within the default deadline both dead names are passed
  EXPECT_EQ(reached.status, core::Status::Delivered) << reached.phase << "/" << reached.reason << " " << reached.detail;
  EXPECT_EQ(reached.host, "good.pref.test");
}

TEST_F(MxDeliveryTest, DomainWithoutMxIsItsOwnMailExchanger) {
  auto o = deliver("implicit.test");
  EXPECT_EQ(o.status, core::Status::Delivered) << o.phase << "/" << o.reason << " " << o.detail;
  EXPECT_EQ(o.host, "implicit.test");
}

TEST_F(MxDeliveryTest, NullMxBounces) {
  auto o = deliver("nullmx.test");
  EXPECT_EQ(o.status, core::Status::Bounced) << o.phase << "/" << o.reason << " " << o.detail;
  EXPECT_EQ(to_string(o.reason), "null_mx");
  EXPECT_EQ(srv_->message_count(), 0u);
}

TEST_F(MxDeliveryTest, NonexistentDomainBounces) {
  auto o = deliver("nothere.test");
  EXPECT_EQ(o.status, core::Status::Bounced) << o.phase << "/" << o.reason << " " << o.detail;
  EXPECT_EQ(to_string(o.phase), "resolve");
}

}  // namespace
}  // namespace deliverd::smtp
