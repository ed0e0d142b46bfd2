// policy::Gate against a real Redis and a real PostgreSQL, on a simulated clock: a month of
// warm-up, two daemons sharing one limit, the breaker's timings, the bounce guard, AUTH
// disabling, and suppressions that take effect through LISTEN/NOTIFY.
#include "policy/gate.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <memory>
#include <queue>
#include <tuple>

#include "policy/mailbox_keys.h"
#include "policy/ramp.h"
#include "queue/publisher.h"
#include "store/migrations.h"
#include "store/suppressions.h"
#include "tests/integration/fixtures/address_hashes.h"
#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/queue/test_loop.h"

namespace deliverd::policy {
namespace {

using deliverd::testing::PostgresServer;
using deliverd::testing::RedisServer;
using deliverd::testing::TestLoop;

constexpr int64_t kMinute = 60'000;
constexpr int64_t kDay = 86'400'000;

int64_t utc_ms(int y, unsigned m, unsigned d) { return days_from_civil(y, m, d) * kDay; }

store::Mailbox mailbox(const std::string& id, const std::string& account = "acct_1") {
  store::Mailbox m;
  m.id = id;
  m.account = account;
  m.email = id + "@sender.example";
  m.smtp_host = "smtp.sender.example";
  return m;
}

core::Outcome outcome(core::Status s, std::string phase, std::string fault, int code = 0, std::string enhanced = "") {
  core::Outcome o;
  o.status = s;
  o.phase = core::phase_from_name(phase).value();
  o.fault = core::fault_from_name(fault).value();
  o.reply.code = code;
  o.reply.enhanced = std::move(enhanced);
  return o;
}
const core::Outcome kDelivered = outcome(core::Status::Delivered, "body", "success", 250, "2.0.0");
const core::Outcome k421 = outcome(core::Status::Deferred, "banner", "throttled", 421, "4.7.0");
const core::Outcome kRefused = outcome(core::Status::Deferred, "connect", "mailbox");
const core::Outcome kAuth535 = outcome(core::Status::Failed, "auth", "policy_auth", 535, "5.7.8");
const core::Outcome kNoSuchUser = outcome(core::Status::Bounced, "rcpt", "recipient_permanent", 550, "5.1.1");

class GateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    redis_ = new RedisServer();
    pg_server_ = new PostgresServer();
  }
  static void TearDownTestSuite() {
    delete redis_;
    delete pg_server_;
    redis_ = nullptr;
    pg_server_ = nullptr;
  }
  void SetUp() override {
    static int n = 0;
    db_ = "policy" + std::to_string(++n);
    conninfo_ = pg_server_->create_database(db_);
    auto v = store::migrate(conninfo_);
    ASSERT_TRUE(v.ok()) << v.error();
    redis_->command({"FLUSHALL"});
  }
  void TearDown() override {
    for (auto& g : gates_) g.reset();
    for (auto* c : clients_) c->close();
    for (auto* p : pgs_) p->close();
  }

  // One "daemon": its own Redis client, PostgreSQL connection and gate.
  Gate& make_gate(PolicyConfig cfg, bool start = true,
                  store::AddressHasher addresses = deliverd::testing::test_hasher()) {
    queue::RedisConfig rc;
    rc.port = redis_->port();
    auto* client = queue::RedisClient::create(loop_.get(), rc);
    bool connected = false;
    client->connect([&](bool ok, const std::string& e) {
      EXPECT_TRUE(ok) << e;
      connected = true;
    });
    EXPECT_TRUE(loop_.run_until([&] { return connected; }));
    clients_.push_back(client);
    auto* pg = store::PgConnection::create(loop_.get(), conninfo_);
    pgs_.push_back(pg);
    gates_.push_back(
        std::make_unique<Gate>(loop_.get(), *client, *pg, std::move(cfg), [this] { return now_; }, std::move(addresses)));
    Gate& g = *gates_.back();
    if (start) {
      bool started = false;
      g.start([&](core::Result<core::Ok, std::string> r) {
        EXPECT_TRUE(r.ok()) << r.error();
        started = true;
      });
      EXPECT_TRUE(loop_.run_until([&] { return started; }));
    }
    return g;
  }

  Decision admit(Gate& g, const store::Mailbox& m, const std::string& to = "rcpt@example.org") {
    std::optional<Decision> d;
    g.admit({m.account, m, to, "", ""}, [&](const Decision& x) { d = x; });
    EXPECT_TRUE(loop_.run_until([&] { return d.has_value(); })) << "admit never answered";
    return d.value_or(Decision{});
  }

  LearnResult learn(Gate& g, const store::Mailbox& m, const core::Outcome& o,
                    const std::string& to = "rcpt@example.org") {
    std::optional<LearnResult> r;
    g.learn(m, to, o, nullptr, [&](const LearnResult& x) { r = x; });
    EXPECT_TRUE(loop_.run_until([&] { return r.has_value(); })) << "learn never finished";
    return r.value_or(LearnResult{});
  }

  std::string sql_value(const std::string& sql) {
    std::optional<std::string> out;
    store::PgConnection* pg = pgs_.empty() ? nullptr : pgs_.front();
    EXPECT_NE(pg, nullptr);
    pg->query(sql, {}, [&](const store::PgResult& r) {
      EXPECT_TRUE(r.ok) << r.error;
      out = r.ok && !r.rows.empty() ? r.rows[0][0].value_or("NULL") : std::string("(none)");
    });
    EXPECT_TRUE(loop_.run_until([&] { return out.has_value(); }));
    return out.value_or("");
  }

  static PolicyConfig no_pacing() {
    PolicyConfig c;
    c.ramp_start = 1000;
    c.ramp_max = 1000;
    c.per_hour = c.per_minute = 0;
    c.min_gap_s = c.jitter_s = 0;
    c.defer_spread_ms = 0;
    return c;
  }

  static RedisServer* redis_;
  static PostgresServer* pg_server_;
  TestLoop loop_;
  std::string db_, conninfo_;
  int64_t now_ = utc_ms(2026, 11, 2) + 9 * 3'600'000;
  std::vector<queue::RedisClient*> clients_;
  std::vector<store::PgConnection*> pgs_;
  std::vector<std::unique_ptr<Gate>> gates_;
};
RedisServer* GateTest::redis_ = nullptr;
PostgresServer* GateTest::pg_server_ = nullptr;

// ---- warm-up -------------------------------------------------------------------------------

TEST_F(GateTest, ThirtyDayWarmupOfThreeMailboxesFollowsTheScheduleExactly) {
  PolicyConfig cfg;  // defaults: 5 + 2·d up to 40, 10/h, 2/min, 60 s gap + up to 30 s jitter
  Gate& gate = make_gate(cfg);
  std::vector<store::Mailbox> boxes = {mailbox("mbx_a"), mailbox("mbx_b"), mailbox("mbx_c")};
  for (auto& b : boxes) b.warmup_start = "2026-11-02";
  // The third has its own schedule and lives in New York: its days are New York days.
  boxes[2].ramp_start = 3;
  boxes[2].ramp_step = 3;
  boxes[2].ramp_max = 30;
  boxes[2].timezone = "America/New_York";
  auto ny = TimeZone::load("/usr/share/zoneinfo", "America/New_York");
  ASSERT_TRUE(ny.ok()) << ny.error();
  std::vector<TimeZone> zones = {TimeZone::utc(), TimeZone::utc(), *ny};
  const int64_t warmup_day = *parse_date("2026-11-02");

  const int64_t start = utc_ms(2026, 11, 2);
  const int64_t end = start + 31 * kDay;
  now_ = start;
  // (due, sequence, mailbox): deferred jobs come back at their until_ms, as from the retry set.
  using Job = std::tuple<int64_t, int, size_t>;
  std::priority_queue<Job, std::vector<Job>, std::greater<>> due;
  int seq = 0;
  for (size_t b = 0; b < boxes.size(); ++b)
    for (int i = 0; i < 1000; ++i) due.emplace(start, seq++, b);

  std::vector<std::vector<int64_t>> sent(boxes.size());
  long admits = 0;
  while (!due.empty() && std::get<0>(due.top()) < end) {
    auto [t, s, b] = due.top();
    due.pop();
    now_ = t;
    Decision d = admit(gate, boxes[b]);
    ++admits;
    if (d.verdict == Verdict::Allow) {
      sent[b].push_back(t);
      continue;
    }
    ASSERT_EQ(d.verdict, Verdict::Defer) << d.reason;
    ASSERT_EQ(to_string(d.reason), "ramp_up") << d.detail_text();
    ASSERT_GT(d.until_ms, t) << "a deferral must move the job forward";
    due.emplace(d.until_ms, s, b);
  }

  for (size_t b = 0; b < boxes.size(); ++b) {
    MailboxPolicy p = effective_policy(cfg, boxes[b]);
    std::map<int64_t, int> per_day;
    for (int64_t t : sent[b]) ++per_day[local_day(zones[b], t).day - warmup_day];
    EXPECT_EQ(per_day.count(-1), 0u) << boxes[b].id << " sent before its warm-up started";
    for (int64_t d = 0; d < 30; ++d)
      EXPECT_EQ(per_day[d], day_limit(p.ramp_start, p.ramp_step, p.ramp_max, d)) << boxes[b].id << " day " << d;
    for (size_t i = 1; i < sent[b].size(); ++i)
      ASSERT_GE(sent[b][i] - sent[b][i - 1], p.min_gap_s * 1000LL) << boxes[b].id << " send " << i;
  }
  // No spinning: a job is either handed the time of a slot (reservation) or told to come back
  // after the 7-day reservation horizon, so over 31 days it is admitted about 6 times at most.
  size_t total = sent[0].size() + sent[1].size() + sent[2].size();
  EXPECT_LT(admits, 3000L * 6) << "admits " << admits << " for " << total << " sends";
  std::printf("30-day warm-up: %zu sends, %ld admits\n", total, admits);
}

TEST_F(GateTest, TwoDaemonsShareOneDailyLimit) {
  PolicyConfig cfg = no_pacing();
  cfg.ramp_start = 20;
  cfg.ramp_step = 0;
  cfg.ramp_max = 20;
  Gate& a = make_gate(cfg);
  Gate& b = make_gate(cfg);
  store::Mailbox m = mailbox("mbx_shared");
  m.warmup_start = "2026-11-01";
  for (int day = 0; day < 2; ++day) {
    now_ = utc_ms(2026, 11, 2) + day * kDay + 3'600'000;
    int answered = 0, allowed = 0;
    for (int i = 0; i < 100; ++i) {
      Gate& g = i % 2 ? a : b;
      // All in flight at once, interleaved on two connections.
      g.admit({m.account, m, "r" + std::to_string(i) + "@example.org", "", ""}, [&](const Decision& d) {
        ++answered;
        if (d.allowed()) ++allowed;
      });
    }
    ASSERT_TRUE(loop_.run_until([&] { return answered == 100; }));
    EXPECT_EQ(allowed, 20) << "day " << day;
  }
}

// Two daemons' clocks are never exactly equal, and calls can reach Redis out of order: without a
// minimum gap, a sender whose clock is behind the last one's must still go at once.
TEST_F(GateTest, WithoutAGapAClockALittleBehindIsNotDeferred) {
  Gate& g = make_gate(no_pacing());
  store::Mailbox m = mailbox("mbx_skew");
  ASSERT_TRUE(admit(g, m).allowed());
  now_ -= 5;
  EXPECT_TRUE(admit(g, m).allowed());
  now_ -= 500;
  EXPECT_TRUE(admit(g, m).allowed());
}

// ---- breaker -------------------------------------------------------------------------------

TEST_F(GateTest, BreakerOpensHalfOpensAndClosesWithTheRightTimings) {
  PolicyConfig cfg = no_pacing();
  cfg.bounce_rate = 1.0;  // keep the bounce guard out of this test
  Gate& g = make_gate(cfg);
  store::Mailbox m = mailbox("mbx_br");

  // Recipient faults never trip it.
  for (int i = 0; i < 12; ++i)
    EXPECT_EQ(to_string(learn(g, m, kNoSuchUser, "u" + std::to_string(i) + "@x.org").breaker_state), "closed");
  EXPECT_TRUE(admit(g, m).allowed());

  for (int i = 0; i < 4; ++i) EXPECT_EQ(to_string(learn(g, m, k421).breaker_state), "closed");
  EXPECT_TRUE(admit(g, m).allowed());
  LearnResult opened = learn(g, m, kRefused);
  EXPECT_EQ(to_string(opened.breaker_state), "open");
  EXPECT_EQ(opened.open_until_ms, now_ + 1 * kMinute);

  const std::vector<int64_t> durations = {1, 5, 15};
  const std::vector<core::Outcome> probe_failures = {kRefused, kAuth535};
  for (size_t trip = 0; trip < durations.size(); ++trip) {
    const int64_t opened_at = now_;
    now_ = opened_at + durations[trip] * kMinute - 1;
    Decision shut = admit(g, m);
    EXPECT_EQ(shut.verdict, Verdict::Defer);
    EXPECT_EQ(to_string(shut.reason), "breaker_open");
    EXPECT_EQ(shut.until_ms, opened_at + durations[trip] * kMinute) << "trip " << trip;

    now_ = opened_at + durations[trip] * kMinute;
    Decision probe = admit(g, m);
    ASSERT_TRUE(probe.allowed()) << probe.reason;
    EXPECT_EQ(to_string(probe.detail), "probe");
    Decision second = admit(g, m);
    EXPECT_EQ(to_string(second.reason), "breaker_open") << "only one probe while half-open";
    EXPECT_EQ(to_string(second.detail), "probe_in_flight");

    if (trip < probe_failures.size()) {
      LearnResult again = learn(g, m, probe_failures[trip]);
      EXPECT_EQ(to_string(again.breaker_state), "open");
      EXPECT_EQ(again.open_until_ms, now_ + durations[trip + 1] * kMinute) << "trip " << trip;
    } else {
      EXPECT_EQ(to_string(learn(g, m, kDelivered).breaker_state), "closed");
    }
  }
  EXPECT_TRUE(admit(g, m).allowed());
  EXPECT_TRUE(admit(g, m).allowed());
  // Closed again: the next run of failures starts over at one minute.
  for (int i = 0; i < 4; ++i) learn(g, m, k421);
  LearnResult reopened = learn(g, m, k421);
  EXPECT_EQ(to_string(reopened.breaker_state), "open");
  EXPECT_EQ(reopened.open_until_ms, now_ + kMinute);
}

TEST_F(GateTest, QuotaReplyOpensTheBreakerForTheProviderWindow) {
  PolicyConfig cfg = no_pacing();
  Gate& g = make_gate(cfg);
  store::Mailbox m = mailbox("mbx_quota");
  LearnResult r = learn(g, m, outcome(core::Status::Deferred, "mail", "mailbox", 550, "5.4.5"));
  EXPECT_EQ(to_string(r.breaker_state), "open");
  EXPECT_EQ(r.open_until_ms, now_ + cfg.quota_open_minutes * kMinute);
  now_ += 23 * 3'600'000;
  EXPECT_EQ(to_string(admit(g, m).reason), "breaker_open");
}

TEST_F(GateTest, TenAuthFailuresDisableTheMailboxUntilResumed) {
  PolicyConfig cfg = no_pacing();
  Gate& g = make_gate(cfg);
  store::Mailbox m = mailbox("mbx_auth");
  store::SecretBox box = store::SecretBox::from_key(std::array<unsigned char, 32>{});
  ASSERT_TRUE(store::add_mailbox(conninfo_, m, box).ok());

  LearnResult last;
  for (int i = 0; i < 10; ++i) {
    // Each failure after the fifth comes from a probe once the breaker lets one through.
    if (i >= 5) {
      now_ += 61 * kMinute;
      ASSERT_TRUE(admit(g, m).allowed()) << "probe " << i;
    }
    last = learn(g, m, kAuth535);
    EXPECT_EQ(last.disabled_now, i == 9) << i;
  }
  EXPECT_EQ(last.auth_failures, 10);
  now_ += 61 * kMinute;
  Decision d = admit(g, m);
  EXPECT_EQ(d.verdict, Verdict::Reject);
  EXPECT_EQ(to_string(d.reason), "mailbox_disabled");
  EXPECT_EQ(d.outcome().status, core::Status::Rejected);
  EXPECT_TRUE(
      loop_.run_until([&] { return sql_value("SELECT disabled FROM mailboxes WHERE id = 'mbx_auth'") == "t"; }));

  bool resumed = false;
  g.set_state(m.account, m.id, store::MailboxChange::ResetBreaker, store::PausedBy::Operator,
              [&](core::Result<store::ChangeAnswer, std::string> r) {
                ASSERT_TRUE(r.ok()) << r.error();
                EXPECT_EQ(*r, store::ChangeAnswer::Done);
                resumed = true;
              });
  ASSERT_TRUE(loop_.run_until([&] { return resumed; }));
  EXPECT_TRUE(admit(g, m).allowed());
  EXPECT_EQ(sql_value("SELECT disabled FROM mailboxes WHERE id = 'mbx_auth'"), "f");
}

// ---- bounce guard ----------------------------------------------------------------------------

TEST_F(GateTest, BounceGuardPausesAtFivePercentOfTheLastFifty) {
  PolicyConfig cfg = no_pacing();
  Gate& g = make_gate(cfg);
  store::Mailbox m = mailbox("mbx_bounce");
  store::SecretBox box = store::SecretBox::from_key(std::array<unsigned char, 32>{});
  ASSERT_TRUE(store::add_mailbox(conninfo_, m, box).ok());
  for (int i = 0; i < 47; ++i) EXPECT_FALSE(learn(g, m, kDelivered).paused_now);
  EXPECT_FALSE(learn(g, m, kNoSuchUser, "gone1@example.org").paused_now);
  LearnResult second = learn(g, m, kNoSuchUser, "gone2@example.org");
  EXPECT_FALSE(second.paused_now) << "2 of 50 is 4%";
  EXPECT_EQ(second.window_bounces, 2);
  LearnResult third = learn(g, m, kNoSuchUser, "gone3@example.org");
  EXPECT_TRUE(third.paused_now) << "3 of 50 is 6%";
  EXPECT_TRUE(third.suppressed_now);

  Decision d = admit(g, m);
  EXPECT_EQ(d.verdict, Verdict::Defer);
  EXPECT_EQ(to_string(d.reason), "mailbox_paused");
  EXPECT_TRUE(
      loop_.run_until([&] { return sql_value("SELECT paused FROM mailboxes WHERE id = 'mbx_bounce'") == "t"; }));
  // Each hard bounce suppressed its address for the account.
  EXPECT_TRUE(loop_.run_until([&] {
    return sql_value("SELECT count(*) FROM suppressions WHERE account = 'acct_1' AND reason = 'hard_bounce'") == "3";
  }));
  EXPECT_TRUE(g.is_suppressed("acct_1", "gone1@example.org"));
  // Written keyed, not as the SHA-256 of the address.
  EXPECT_EQ(sql_value("SELECT count(*) FROM suppressions WHERE address_sha256 = " +
                      deliverd::testing::bytea_sql(deliverd::testing::test_hasher().key("gone1@example.org"))),
            "1");
  EXPECT_EQ(sql_value("SELECT count(*) FROM suppressions WHERE address_sha256 = sha256('gone1@example.org')"), "0");
}

// Bounces that come back by mail after a 250 (inbound/) count as the sends' own would have.
TEST_F(GateTest, ThreeLateHardBouncesOfTheLastFiftySendsPauseTheMailbox) {
  PolicyConfig cfg = no_pacing();
  Gate& g = make_gate(cfg);
  store::Mailbox m = mailbox("mbx_late");
  store::SecretBox box = store::SecretBox::from_key(std::array<unsigned char, 32>{});
  ASSERT_TRUE(store::add_mailbox(conninfo_, m, box).ok());
  // Fifty sends the relay accepted: nothing to pause on.
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(learn(g, m, kDelivered).paused_now);
  auto late = [&](const std::string& to) {
    std::optional<LearnResult> r;
    g.learn_late_bounce(m, to, [&](const LearnResult& x) { r = x; });
    EXPECT_TRUE(loop_.run_until([&] { return r.has_value(); })) << "learn_late_bounce never finished";
    return r.value_or(LearnResult{});
  };
  LearnResult first = late("gone1@example.org");
  EXPECT_FALSE(first.paused_now);
  EXPECT_TRUE(first.suppressed_now);
  EXPECT_EQ(first.window_sends, 50) << "the bounce turns one of the fifty sends into a bounce, adds none";
  EXPECT_EQ(first.window_bounces, 1);
  EXPECT_FALSE(late("gone2@example.org").paused_now) << "2 of 50 is 4%";
  LearnResult third = late("gone3@example.org");
  EXPECT_TRUE(third.paused_now) << "3 of 50 is 6%";
  EXPECT_EQ(third.breaker_state, Breaker::Closed) << "the mailbox's server did its part";
  EXPECT_EQ(admit(g, m).verdict, Verdict::Defer);
  EXPECT_TRUE(loop_.run_until([&] { return sql_value("SELECT paused FROM mailboxes WHERE id = 'mbx_late'") == "t"; }));
  EXPECT_TRUE(loop_.run_until([&] {
    return sql_value("SELECT count(*) FROM suppressions WHERE account = 'acct_1' AND source = 'bounce_async'"
                     " AND reason = 'hard_bounce'") == "3";
  }));
  EXPECT_TRUE(g.is_suppressed("acct_1", "gone2@example.org"));
  EXPECT_TRUE(store::is_guard_source("bounce_async")) << "a tenant's key cannot lift it";
}

// The window's hard bounces are counted as sends come and go, not by walking the list: the count
// follows a bounce out of the window, a message that changes nothing writes no breaker field,
// and a list kept before the count existed is counted once.
TEST_F(GateTest, TheBounceWindowsCountFollowsItsSendsWithoutRewritingTheBreaker) {
  PolicyConfig cfg = no_pacing();
  cfg.bounce_window = 4;
  cfg.bounce_rate = 1.0;  // pause at 4 of 4: out of the way
  Gate& g = make_gate(cfg);
  store::Mailbox m = mailbox("mbx_window");
  store::SecretBox box = store::SecretBox::from_key(std::array<unsigned char, 32>{});
  ASSERT_TRUE(store::add_mailbox(conninfo_, m, box).ok());
  const std::string state = mailbox_key("deliverd:", m.account, m.id, "state");
  const std::string sends = mailbox_key("deliverd:", m.account, m.id, "sends");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(learn(g, m, kDelivered).window_bounces, 0);
  EXPECT_EQ(redis_->integer({"HEXISTS", state, "state"}), 0) << "successes on a closed breaker change nothing in it";
  EXPECT_EQ(redis_->integer({"HLEN", state}), 1) << redis_->command({"HGETALL", state});

  LearnResult bounce = learn(g, m, kNoSuchUser, "gone@example.org");
  EXPECT_EQ(bounce.window_sends, 4);
  EXPECT_EQ(bounce.window_bounces, 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(learn(g, m, kDelivered).window_bounces, 1) << i;  // still among the last 4
  LearnResult out = learn(g, m, kDelivered);
  EXPECT_EQ(out.window_sends, 4);
  EXPECT_EQ(out.window_bounces, 0) << "the bounce left the window";
  EXPECT_EQ(redis_->integer({"LLEN", sends}), 4);

  // A window from before the count: counted from the list once, then kept.
  redis_->command({"HDEL", state, "wb"});
  redis_->command({"RPUSH", sends, "1"});  // the oldest of five: trimmed away by the next send
  redis_->command({"LSET", sends, "0", "1"});
  redis_->command({"LSET", sends, "1", "1"});
  LearnResult migrated = learn(g, m, kDelivered);
  EXPECT_EQ(migrated.window_sends, 4);
  EXPECT_EQ(migrated.window_bounces, 2);
  EXPECT_EQ(redis_->command({"HGET", state, "wb"}), "2");
}

// ---- one pause state: Gate::set_state -------------------------------------------------------

class GateStateTest : public GateTest {
 protected:
  store::ChangeAnswer change(Gate& g, const store::Mailbox& m, store::MailboxChange c, store::PausedBy by) {
    std::optional<core::Result<store::ChangeAnswer, std::string>> out;
    g.set_state(m.account, m.id, c, by, [&](core::Result<store::ChangeAnswer, std::string> r) { out = std::move(r); });
    EXPECT_TRUE(loop_.run_until([&] { return out.has_value(); })) << "set_state never answered";
    if (!out || !*out) {
      ADD_FAILURE() << (out ? out->error() : "no answer");
      return store::ChangeAnswer::NoMailbox;
    }
    return **out;
  }
  std::string state_field(const store::Mailbox& m, const std::string& field) {
    return redis_->command({"HGET", mailbox_key("deliverd:", m.account, m.id, "state"), field});
  }
  store::Mailbox stored(const std::string& id) {
    store::Mailbox m = mailbox(id);
    store::SecretBox box = store::SecretBox::from_key(std::array<unsigned char, 32>{});
    EXPECT_TRUE(store::add_mailbox(conninfo_, m, box).ok());
    return m;
  }
};

TEST_F(GateStateTest, OneResumeLiftsTheBounceGuardsPauseOnEveryDaemon) {
  Gate& a = make_gate(no_pacing());
  Gate& b = make_gate(no_pacing());
  store::Mailbox m = stored("mbx_guard");
  for (int i = 0; i < 47; ++i) learn(a, m, kDelivered);
  for (int i = 0; i < 3; ++i) learn(a, m, kNoSuchUser, "gone" + std::to_string(i) + "@example.org");
  ASSERT_EQ(to_string(admit(b, m).reason), "mailbox_paused") << "the other daemon stops at once, through Redis";
  ASSERT_TRUE(
      loop_.run_until([&] { return sql_value("SELECT paused_by FROM mailboxes WHERE id = 'mbx_guard'") == "daemon"; }));

  EXPECT_EQ(change(b, m, store::MailboxChange::Resume, store::PausedBy::Tenant), store::ChangeAnswer::Refused)
      << "the tenant may not lift the daemon's pause";
  EXPECT_EQ(to_string(admit(a, m).reason), "mailbox_paused");

  EXPECT_EQ(change(b, m, store::MailboxChange::Resume, store::PausedBy::Operator), store::ChangeAnswer::Done);
  EXPECT_EQ(sql_value("SELECT paused::text || coalesce(paused_by, '-') FROM mailboxes WHERE id = 'mbx_guard'"),
            "false-");
  EXPECT_EQ(state_field(m, "paused"), "(nil)");
  EXPECT_TRUE(admit(a, m).allowed()) << "resumed on the daemon that paused it";
  EXPECT_TRUE(admit(b, m).allowed()) << "and on the one that resumed it";
  // The window started again: one more hard bounce does not pause it again.
  EXPECT_FALSE(learn(a, m, kNoSuchUser, "gone9@example.org").paused_now);
}

// A revoked OAuth grant disables the mailbox under its own name, in Redis (every daemon at once)
// and in PostgreSQL (this daemon's next read of the row); an operator's resume forgets it.
TEST_F(GateStateTest, ADisableForARevokedGrantIsNamedEverywhere) {
  Gate& a = make_gate(no_pacing());
  Gate& b = make_gate(no_pacing());
  store::Mailbox m = stored("mbx_revoked");
  std::optional<core::Result<store::ChangeAnswer, std::string>> out;
  a.set_state(
      m.account, m.id, store::MailboxChange::Disable, store::PausedBy::Daemon,
      [&](core::Result<store::ChangeAnswer, std::string> r) { out = std::move(r); }, "oauth_revoked");
  ASSERT_TRUE(loop_.run_until([&] { return out.has_value(); }));
  ASSERT_TRUE(*out && **out == store::ChangeAnswer::Done);
  EXPECT_EQ(to_string(admit(b, m).reason), "oauth_revoked") << "through Redis, before the row is read again";
  EXPECT_EQ(sql_value("SELECT disabled_reason FROM mailboxes WHERE id = 'mbx_revoked'"), "oauth_revoked");
  store::Mailbox reread = m;
  reread.disabled = true;
  reread.disabled_reason = "oauth_revoked";
  Decision d = admit(b, reread);
  EXPECT_EQ(d.verdict, Verdict::Reject);
  EXPECT_EQ(to_string(d.reason), "oauth_revoked") << "from the row";
  reread.disabled_reason = "auth_failures";
  EXPECT_EQ(to_string(admit(b, reread).reason), "mailbox_disabled");

  // A new grant (the row no longer disabled) lifts the Redis half for every daemon.
  a.lift_revoked(m.account, m.id);
  ASSERT_TRUE(loop_.run_until([&] { return state_field(m, "disabled") == "(nil)"; }));
  EXPECT_TRUE(admit(b, m).allowed());

  // A disable for AUTH failures is not taken for a revoked grant, and no new grant lifts it.
  EXPECT_EQ(change(a, m, store::MailboxChange::Disable, store::PausedBy::Daemon), store::ChangeAnswer::Done);
  EXPECT_EQ(to_string(admit(b, m).reason), "mailbox_disabled");
  a.lift_revoked(m.account, m.id);
  EXPECT_EQ(to_string(admit(b, m).reason), "mailbox_disabled");
  EXPECT_EQ(change(a, m, store::MailboxChange::Resume, store::PausedBy::Operator), store::ChangeAnswer::Done);
  EXPECT_EQ(sql_value("SELECT coalesce(disabled_reason, '-') FROM mailboxes WHERE id = 'mbx_revoked'"), "-");
  EXPECT_TRUE(admit(b, m).allowed());
}

TEST_F(GateStateTest, ATenantLiftsItsOwnPauseOnlyAndNeverADisable) {
  Gate& g = make_gate(no_pacing());
  store::Mailbox m = stored("mbx_tenant");
  EXPECT_EQ(change(g, m, store::MailboxChange::Pause, store::PausedBy::Tenant), store::ChangeAnswer::Done);
  EXPECT_EQ(state_field(m, "paused_by"), "tenant");
  EXPECT_EQ(sql_value("SELECT paused_by FROM mailboxes WHERE id = 'mbx_tenant'"), "tenant");
  EXPECT_EQ(to_string(admit(g, m).reason), "mailbox_paused");
  // An operator's pause on top is the operator's; the tenant's pause again does not weaken it.
  EXPECT_EQ(change(g, m, store::MailboxChange::Pause, store::PausedBy::Operator), store::ChangeAnswer::Done);
  EXPECT_EQ(change(g, m, store::MailboxChange::Pause, store::PausedBy::Tenant), store::ChangeAnswer::Done);
  EXPECT_EQ(state_field(m, "paused_by"), "operator");
  EXPECT_EQ(change(g, m, store::MailboxChange::Resume, store::PausedBy::Tenant), store::ChangeAnswer::Refused);
  EXPECT_EQ(sql_value("SELECT paused_by FROM mailboxes WHERE id = 'mbx_tenant'"), "operator");
  EXPECT_EQ(change(g, m, store::MailboxChange::Resume, store::PausedBy::Operator), store::ChangeAnswer::Done);

  EXPECT_EQ(change(g, m, store::MailboxChange::Pause, store::PausedBy::Tenant), store::ChangeAnswer::Done);
  EXPECT_EQ(change(g, m, store::MailboxChange::Resume, store::PausedBy::Tenant), store::ChangeAnswer::Done);
  EXPECT_TRUE(admit(g, m).allowed());

  EXPECT_EQ(change(g, m, store::MailboxChange::Disable, store::PausedBy::Daemon), store::ChangeAnswer::Done);
  EXPECT_EQ(to_string(admit(g, m).reason), "mailbox_disabled");
  EXPECT_EQ(change(g, m, store::MailboxChange::Resume, store::PausedBy::Tenant), store::ChangeAnswer::Refused);
  EXPECT_EQ(sql_value("SELECT disabled FROM mailboxes WHERE id = 'mbx_tenant'"), "t");
  EXPECT_EQ(change(g, m, store::MailboxChange::Resume, store::PausedBy::Operator), store::ChangeAnswer::Done);
  EXPECT_EQ(sql_value("SELECT disabled FROM mailboxes WHERE id = 'mbx_tenant'"), "f");
  EXPECT_TRUE(admit(g, m).allowed());
  EXPECT_EQ(change(g, mailbox("mbx_none"), store::MailboxChange::Pause, store::PausedBy::Operator),
            store::ChangeAnswer::NoMailbox);
}

TEST_F(GateStateTest, AnOperatorsResumeForgetsTheAuthFailures) {
  PolicyConfig cfg = no_pacing();
  cfg.auth_disable_after = 2;
  cfg.breaker_failures = 100;
  Gate& g = make_gate(cfg);
  store::Mailbox m = stored("mbx_auth2");
  learn(g, m, kAuth535);
  ASSERT_TRUE(learn(g, m, kAuth535).disabled_now);
  ASSERT_TRUE(
      loop_.run_until([&] { return sql_value("SELECT disabled FROM mailboxes WHERE id = 'mbx_auth2'") == "t"; }));
  EXPECT_EQ(change(g, m, store::MailboxChange::Resume, store::PausedBy::Operator), store::ChangeAnswer::Done);
  EXPECT_TRUE(admit(g, m).allowed());
  EXPECT_FALSE(learn(g, m, kAuth535).disabled_now) << "one failure after the resume is one, not three";
  EXPECT_TRUE(learn(g, m, kAuth535).disabled_now);
}

// A crash between the two writes: Redis paused, the row not. An admit refuses; once the pause
// is older than its own write could take, the next admit writes it, with its pauser, to the
// row, where the API shows it and a resume lifts it.
TEST_F(GateStateTest, APauseOnlyRedisHoldsIsWrittenToPostgresByTheNextAdmit) {
  Gate& g = make_gate(no_pacing());
  store::Mailbox m = stored("mbx_half");
  redis_->command({"HSET", mailbox_key("deliverd:", m.account, m.id, "state"), "paused", "1", "paused_by", "tenant",
                   "changed_at", std::to_string(now_)});
  EXPECT_EQ(to_string(admit(g, m).reason), "mailbox_paused");
  // The gate's connection runs queries in order: a write the admit had issued would show here.
  EXPECT_EQ(sql_value("SELECT paused FROM mailboxes WHERE id = 'mbx_half'"), "f") << "its own write may be on its way";
  now_ += 31'000;
  EXPECT_EQ(to_string(admit(g, m).reason), "mailbox_paused");
  ASSERT_TRUE(loop_.run_until([&] {
    return sql_value("SELECT paused::text || paused_by FROM mailboxes WHERE id = 'mbx_half'") == "truetenant";
  }));
  EXPECT_EQ(change(g, m, store::MailboxChange::Resume, store::PausedBy::Tenant), store::ChangeAnswer::Done);
  EXPECT_TRUE(admit(g, m).allowed());

  redis_->command({"HSET", mailbox_key("deliverd:", m.account, m.id, "state"), "disabled", "1", "changed_at", "0"});
  EXPECT_EQ(to_string(admit(g, m).reason), "mailbox_disabled");
  ASSERT_TRUE(
      loop_.run_until([&] { return sql_value("SELECT disabled FROM mailboxes WHERE id = 'mbx_half'") == "t"; }));
}

// ---- suppressions ----------------------------------------------------------------------------

// ---- the idempotency marker, read by the admit script ------------------------------------------

TEST_F(GateTest, AJobWhoseMarkerExistsIsADuplicateAndTakesNoSlot) {
  Gate& g = make_gate(no_pacing());
  queue::Publisher pub(*clients_.front(), queue::PublisherConfig{});
  store::Mailbox m = mailbox("mbx_d", "acct_1");
  redis_->command({"SET", pub.done_key("acct_1", "job-1"), "1764410000000"});
  auto ask = [&](Gate& gate, const store::Mailbox& box, const std::string& job) {
    std::optional<Decision> d;
    gate.admit({box.account, box, "rcpt@example.org", "", pub.done_key(box.account, job)},
               [&](const Decision& x) { d = x; });
    EXPECT_TRUE(loop_.run_until([&] { return d.has_value(); })) << "admit never answered";
    return d.value_or(Decision{});
  };
  Decision dup = ask(g, m, "job-1");
  EXPECT_EQ(dup.verdict, Verdict::Duplicate);
  EXPECT_EQ(dup.reason, core::Reason::Duplicate);
  EXPECT_EQ(dup.delivered_ms, 1764410000000);
  EXPECT_EQ(redis_->command({"KEYS", "*day:*"}), "[]") << "a duplicate takes no slot";
  // Marker keys are per account: another account's job with the same id is a job of its own.
  store::Mailbox other = mailbox("mbx_d", "acct_2");
  EXPECT_TRUE(ask(g, other, "job-1").allowed());
  EXPECT_TRUE(ask(g, m, "job-2").allowed());
  // A marker without a time (an older release) still says delivered.
  redis_->command({"SET", pub.done_key("acct_1", "job-3"), "yes"});
  Decision old = ask(g, m, "job-3");
  EXPECT_EQ(old.verdict, Verdict::Duplicate);
  EXPECT_EQ(old.delivered_ms, 0);
  // Decided without the script (a paused mailbox): the marker is still read first.
  store::Mailbox paused = m;
  paused.paused = true;
  EXPECT_EQ(ask(g, paused, "job-1").verdict, Verdict::Duplicate);
  EXPECT_EQ(to_string(ask(g, paused, "job-4").reason), "mailbox_paused");
}

// The account's erasure marker is read by the admit script before anything else, so that a job
// of an erased account takes no slot and the common path needs no EXISTS of its own.
TEST_F(GateTest, AnErasedAccountsJobIsAnsweredErasedFirstAndTakesNoSlot) {
  Gate& g = make_gate(no_pacing());
  queue::Publisher pub(*clients_.front(), queue::PublisherConfig{});
  store::Mailbox m = mailbox("mbx_e", "acct_1");
  const std::string marker = "deliverd:erased:acct_1";
  auto ask = [&](const store::Mailbox& box, const std::string& job) {
    std::optional<Decision> d;
    g.admit({box.account, box, "rcpt@example.org", "", pub.done_key(box.account, job), "deliverd:erased:" + box.account},
            [&](const Decision& x) { d = x; });
    EXPECT_TRUE(loop_.run_until([&] { return d.has_value(); })) << "admit never answered";
    return d.value_or(Decision{});
  };
  Decision fine = ask(m, "job-1");
  EXPECT_TRUE(fine.allowed());
  EXPECT_TRUE(fine.erased_checked);
  redis_->command({"SET", marker, "1"});
  redis_->command({"SET", pub.done_key("acct_1", "job-2"), "1764410000000"});
  auto sends_today = [&] {
    return redis_->command({"EVAL",
                            "local s = 0 for _, k in ipairs(redis.call('KEYS', '*day:*')) do"
                            " s = s + tonumber(redis.call('GET', k)) end return s",
                            "0"});
  };
  const std::string sends_before = sends_today();
  Decision gone = ask(m, "job-2");
  EXPECT_EQ(gone.verdict, Verdict::Erased) << "before the idempotency marker";
  EXPECT_EQ(gone.reason, core::Reason::AccountErased);
  EXPECT_FALSE(gone.erased_checked);
  EXPECT_EQ(gone.outcome().status, core::Status::Rejected);
  EXPECT_EQ(sends_before, "1");
  EXPECT_EQ(sends_today(), sends_before) << "an erased account's job takes no slot";
  // Another account is not touched by this one's marker.
  Decision other = ask(mailbox("mbx_e", "acct_2"), "job-3");
  EXPECT_TRUE(other.allowed());
  // Decided without the script (a paused mailbox): the marker was not read, and the caller asks.
  store::Mailbox paused = m;
  paused.paused = true;
  EXPECT_FALSE(ask(paused, "job-4").erased_checked);
}

// Redis cannot say whether the job was delivered: the answer is a deferral, never "not done".
TEST_F(GateTest, AMarkerThatCannotBeReadDefersTheJob) {
  Gate& g = make_gate(no_pacing());
  queue::Publisher pub(*clients_.front(), queue::PublisherConfig{});
  store::Mailbox m = mailbox("mbx_u", "acct_1");
  const std::string key = pub.done_key("acct_1", "job-1");
  redis_->command({"HSET", key, "not", "a string"});  // GET fails with WRONGTYPE
  for (bool paused : {false, true}) {
    store::Mailbox box = m;
    box.paused = paused;
    std::optional<Decision> d;
    g.admit({box.account, box, "rcpt@example.org", "", key}, [&](const Decision& x) { d = x; });
    ASSERT_TRUE(loop_.run_until([&] { return d.has_value(); }));
    EXPECT_EQ(d->verdict, Verdict::Defer) << "paused " << paused;
    EXPECT_EQ(to_string(d->reason), "policy_unavailable") << "paused " << paused;
    EXPECT_EQ(d->detail, Detail::RedisFailed) << "paused " << paused;
  }
}

// A plain mailbox (no hourly or per-minute cap, no gap, no destination limit) costs its day
// counter and its warm-up day in Redis, and no rate, gap or reservation key at all.
TEST_F(GateTest, AdmitTouchesNoKeyOfALimitThatIsOff) {
  Gate& g = make_gate(no_pacing());
  store::Mailbox m = mailbox("mbx_plain", "acct_1");
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(admit(g, m).allowed());
  const std::string keys = redis_->command({"KEYS", "*"});
  EXPECT_EQ(redis_->integer({"DBSIZE"}), 2) << keys;
  EXPECT_NE(keys.find(":day:"), std::string::npos) << keys;
  EXPECT_NE(keys.find(":warmup"), std::string::npos) << keys;
  for (const char* off : {"gcra", ":next", ":resv", "dst:", ":state"}) EXPECT_EQ(keys.find(off), std::string::npos) << off << " in " << keys;
  std::string day = redis_->command({"KEYS", "*:day:*"});  // "[key]"
  ASSERT_GT(day.size(), 2u);
  day = day.substr(1, day.size() - 2);
  EXPECT_GT(redis_->integer({"PTTL", day}), 0) << "the day counter expires";

  // With the caps on, their keys appear (so the check above could fail).
  PolicyConfig paced = no_pacing();
  paced.per_hour = 100;
  paced.per_minute = 10;
  paced.min_gap_s = 1;
  Gate& h = make_gate(paced);
  ASSERT_TRUE(admit(h, mailbox("mbx_paced", "acct_1")).allowed());
  const std::string after = redis_->command({"KEYS", "*mbx_paced*"});
  EXPECT_NE(after.find("gcra_us:h"), std::string::npos) << after;
  EXPECT_NE(after.find("gcra_us:m"), std::string::npos) << after;
  EXPECT_NE(after.find(":next"), std::string::npos) << after;
}

TEST_F(GateTest, AnAddressSuppressedInPostgresStopsTheVeryNextSend) {
  Gate& g = make_gate(no_pacing());
  store::Mailbox m = mailbox("mbx_s");
  EXPECT_TRUE(admit(g, m, "bob@example.org").allowed());

  pg_server_->exec(deliverd::testing::plain_suppression_sql("acct_1", "bob@example.org"), db_);
  ASSERT_TRUE(loop_.run_until([&] { return g.is_suppressed("acct_1", "bob@EXAMPLE.org"); }, 10000))
      << "the NOTIFY never arrived";
  // Five jobs queued for him: none goes out, each ends suppressed.
  for (int i = 0; i < 5; ++i) {
    Decision d = admit(g, m, "bob@Example.org");
    EXPECT_EQ(d.verdict, Verdict::Suppressed);
    EXPECT_EQ(d.outcome().status, core::Status::Suppressed);
    EXPECT_EQ(to_string(d.outcome().reason), "suppressed");
  }
  EXPECT_TRUE(admit(g, mailbox("mbx_other", "acct_2"), "bob@example.org").allowed()) << "other accounts unaffected";

  pg_server_->exec("DELETE FROM suppressions WHERE address = 'bob@example.org'", db_);
  ASSERT_TRUE(loop_.run_until([&] { return !g.is_suppressed("acct_1", "bob@example.org"); }, 10000));
  EXPECT_TRUE(admit(g, m, "bob@example.org").allowed());
}

TEST_F(GateTest, GlobalSuppressionHoldsForEveryAccountAndLoadsAtStart) {
  pg_server_->exec(deliverd::testing::plain_suppression_sql("*", "trap@example.net"), db_);
  pg_server_->exec(deliverd::testing::plain_suppression_sql("acct_9", "early@example.net"), db_);
  Gate& g = make_gate(no_pacing());
  EXPECT_EQ(g.suppression_count(), 2u);
  EXPECT_EQ(admit(g, mailbox("m1", "acct_1"), "trap@example.net").verdict, Verdict::Suppressed);
  EXPECT_EQ(admit(g, mailbox("m2", "acct_2"), "trap@EXAMPLE.net").verdict, Verdict::Suppressed);
  EXPECT_EQ(admit(g, mailbox("m9", "acct_9"), "early@example.net").verdict, Verdict::Suppressed);
  pg_server_->exec(deliverd::testing::plain_suppression_sql("*", "late@example.net"), db_);
  ASSERT_TRUE(loop_.run_until([&] { return g.is_suppressed("acct_5", "late@example.net"); }, 10000));
}

// Rows written by the daemon are keyed (HMAC under a key from the secret key); the gate finds
// them, and after a rotation (the old key listed as old) it still does.
TEST_F(GateTest, KeyedRowsSuppressAcrossAKeyRotation) {
  const store::AddressHasher h = deliverd::testing::test_hasher(1);
  auto keyed_sql = [&](const std::string& address) {
    return "INSERT INTO suppressions (account, address, address_sha256, reason, source) VALUES ('acct_1', '" + address +
           "', " + deliverd::testing::bytea_sql(h.key(address)) + ", 'unsubscribed', 'one_click')";
  };
  pg_server_->exec(keyed_sql("kate@example.org"), db_);
  Gate& g = make_gate(no_pacing(), true, h);
  EXPECT_EQ(sql_value("SELECT address_sha256 = sha256('kate@example.org') FROM suppressions"), "f");
  EXPECT_EQ(admit(g, mailbox("m1"), "Kate@example.org").verdict, Verdict::Suppressed);
  pg_server_->exec(keyed_sql("liam@example.org"), db_);
  ASSERT_TRUE(loop_.run_until([&] { return g.is_suppressed("acct_1", "LIAM@example.org"); }, 10000));

  // Rotated: key 2 is current, key 1 old. Both rows still suppress; without key 1 they would not.
  Gate& rotated = make_gate(no_pacing(), true,
                            store::AddressHasher::from_hash_keys({deliverd::testing::hash_key(2),
                                                                  deliverd::testing::hash_key(1)}));
  EXPECT_EQ(admit(rotated, mailbox("m1"), "kate@example.org").verdict, Verdict::Suppressed);
  EXPECT_TRUE(rotated.is_suppressed("acct_1", "liam@example.org"));
  Gate& without = make_gate(no_pacing(), true, deliverd::testing::test_hasher(2));
  EXPECT_FALSE(without.is_suppressed("acct_1", "kate@example.org"));
}

// 50,000 rows over three accounts take three pages; every row arrives, in its own account, and
// a list beyond max_suppressions is refused naming the bound.
TEST_F(GateTest, AListOfManyPagesLoadsWholeIntoTheRightAccounts) {
  pg_server_->exec(
      "INSERT INTO suppressions (account, address, address_sha256, reason, source)"
      " SELECT 'acct_' || (i % 3), 'u' || i || '@bulk.example', sha256(convert_to('u' || i || '@bulk.example', 'UTF8')),"
      " 'unsubscribed', 'test' FROM generate_series(1, 50000) i",
      db_);
  Gate& g = make_gate(no_pacing());
  EXPECT_EQ(g.suppression_count(), 50000u);
  for (int i : {1, 19999, 20000, 20001, 40000, 49999, 50000}) {
    const std::string own = "acct_" + std::to_string(i % 3), other = "acct_" + std::to_string((i + 1) % 3);
    const std::string address = "u" + std::to_string(i) + "@bulk.example";
    EXPECT_TRUE(g.is_suppressed(own, address)) << address;
    EXPECT_FALSE(g.is_suppressed(other, address)) << address;
  }

  PolicyConfig small = no_pacing();
  small.max_suppressions = 30000;
  Gate& bounded = make_gate(small, /*start=*/false);
  std::optional<core::Result<core::Ok, std::string>> result;
  bounded.start([&](core::Result<core::Ok, std::string> r) { result = std::move(r); });
  ASSERT_TRUE(loop_.run_until([&] { return result.has_value(); }));
  ASSERT_FALSE(result->ok());
  EXPECT_EQ(result->error(), "more than 30000 suppressions (raise the bound)");
  EXPECT_EQ(bounded.suppression_count(), 0u);
}

TEST_F(GateTest, SuppressionsMissedWhileDisconnectedArriveWithTheReload) {
  PolicyConfig cfg = no_pacing();
  cfg.reload_backoff_ms = 100;
  Gate& g = make_gate(cfg);
  // Cut the gate's connection, then change the list while it is gone.
  pg_server_->exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + db_ +
                       "' AND pid <> pg_backend_pid()",
                   db_);
  pg_server_->exec(deliverd::testing::plain_suppression_sql("acct_1", "missed@example.org"), db_);
  ASSERT_TRUE(loop_.run_until([&] { return g.is_suppressed("acct_1", "missed@example.org"); }, 15000));
  // And it listens again afterwards.
  pg_server_->exec(deliverd::testing::plain_suppression_sql("acct_1", "after@example.org"), db_);
  ASSERT_TRUE(loop_.run_until([&] { return g.is_suppressed("acct_1", "after@example.org"); }, 10000));
}

TEST_F(GateTest, NothingIsSentBeforeTheListIsLoaded) {
  Gate& g = make_gate(no_pacing(), /*start=*/false);
  Decision d = admit(g, mailbox("m"), "x@example.org");
  EXPECT_EQ(d.verdict, Verdict::Defer);
  EXPECT_EQ(to_string(d.reason), "policy_unavailable");
  EXPECT_GT(d.until_ms, now_);
}

TEST_F(GateTest, SendingWindowDefersToItsOpening) {
  Gate& g = make_gate(no_pacing());
  store::Mailbox m = mailbox("mbx_w");
  m.window_days = 0b0011111;  // Monday-Friday
  m.window_start_hour = 9;
  m.window_end_hour = 17;
  now_ = utc_ms(2026, 11, 28) + 12 * 3'600'000;  // Saturday noon
  Decision d = admit(g, m);
  EXPECT_EQ(to_string(d.reason), "outside_window");
  EXPECT_EQ(d.until_ms, utc_ms(2026, 11, 30) + 9 * 3'600'000);
  now_ = d.until_ms;
  EXPECT_TRUE(admit(g, m).allowed());
}

TEST_F(GateTest, DestinationThrottleLimitsConnectionsAcrossDaemons) {
  PolicyConfig cfg = no_pacing();
  cfg.destination_max_connections = 2;
  Gate& a = make_gate(cfg);
  Gate& b = make_gate(cfg);
  store::Mailbox m1 = mailbox("mx1"), m2 = mailbox("mx2");
  std::optional<Decision> d1, d2, d3;
  a.admit({m1.account, m1, "a@gmail.example", "gmail.example", ""}, [&](const Decision& d) { d1 = d; });
  b.admit({m2.account, m2, "b@gmail.example", "gmail.example", ""}, [&](const Decision& d) { d2 = d; });
  ASSERT_TRUE(loop_.run_until([&] { return d1 && d2; }));
  ASSERT_TRUE(d1->allowed() && d2->allowed());
  Decision third = admit(a, m1, "c@gmail.example");  // not MX mode: no destination limit
  EXPECT_TRUE(third.allowed());
  a.admit({m1.account, m1, "d@gmail.example", "gmail.example", ""}, [&](const Decision& d) { d3 = d; });
  ASSERT_TRUE(loop_.run_until([&] { return d3.has_value(); }));
  EXPECT_EQ(to_string(d3->reason), "destination_throttle");
  EXPECT_TRUE(admit(a, m1, "e@other.example").allowed());
  learn(b, m2, kDelivered);  // without the decision: the lease stays
  b.release(*d2);
  std::optional<Decision> d4;
  loop_.run_for(50);
  a.admit({m1.account, m1, "d@gmail.example", "gmail.example", ""}, [&](const Decision& d) { d4 = d; });
  ASSERT_TRUE(loop_.run_until([&] { return d4.has_value(); }));
  EXPECT_TRUE(d4->allowed()) << d4->reason;
}

// ---- every accepted limit works -------------------------------------------------------------

// The upper bounds daemon/config.cpp accepts for [policy] (and store::validate_mailbox for a
// mailbox's own overrides) against the real admit script: a send is allowed or deferred to a
// real time, never refused as "policy_unavailable" because a script step failed.
TEST_F(GateTest, EveryLimitAtTheBoundCheckConfigAllowsAdmitsOrDefersForReal) {
  struct Case {
    const char* name;
    std::function<void(PolicyConfig&, store::Mailbox&)> set;
    bool mx;
    int allowed;  // of three admits at one instant
  };
  const Case cases[] = {
      {"per_minute = 100000", [](PolicyConfig& c, store::Mailbox&) { c.per_minute = 100000; }, false, 3},
      {"per_hour = 1000000", [](PolicyConfig& c, store::Mailbox&) { c.per_hour = 1000000; }, false, 3},
      {"both at their maximum",
       [](PolicyConfig& c, store::Mailbox&) {
         c.per_minute = 100000;
         c.per_hour = 1000000;
       },
       false, 3},
      {"mailbox per_minute = 1000000", [](PolicyConfig&, store::Mailbox& m) { m.per_minute = 1000000; }, false, 3},
      {"mailbox per_hour = 1000000", [](PolicyConfig&, store::Mailbox& m) { m.per_hour = 1000000; }, false, 3},
      {"ramp_start = 100000, ramp_max = 1000000",
       [](PolicyConfig& c, store::Mailbox&) {
         c.ramp_start = 100000;
         c.ramp_step = 100000;
         c.ramp_max = 1000000;
       },
       false, 3},
      {"mailbox ramp_max = 1000000", [](PolicyConfig&, store::Mailbox& m) { m.ramp_start = m.ramp_max = 1000000; },
       false, 3},
      {"destination_per_minute = 1000000", [](PolicyConfig& c, store::Mailbox&) { c.destination_per_minute = 1000000; },
       true, 3},
      {"destination_max_connections = 100000",
       [](PolicyConfig& c, store::Mailbox&) { c.destination_max_connections = 100000; }, true, 3},
      {"min_gap_s = jitter_s = 86400",
       [](PolicyConfig& c, store::Mailbox&) { c.min_gap_s = c.jitter_s = 86400; }, false, 1},
      {"mailbox min_gap_s = 1000000", [](PolicyConfig&, store::Mailbox& m) { m.min_gap_s = 1000000; }, false, 1},
      {"ramp_max = 0", [](PolicyConfig& c, store::Mailbox&) { c.ramp_start = c.ramp_max = 0; }, false, 0},
  };
  int n = 0;
  for (const auto& c : cases) {
    PolicyConfig cfg = no_pacing();
    store::Mailbox m = mailbox("bound" + std::to_string(n++));
    c.set(cfg, m);
    ASSERT_TRUE(validate(cfg).ok()) << c.name;
    ASSERT_TRUE(store::validate_mailbox(m).ok()) << c.name;
    Gate& g = make_gate(cfg);
    int allowed = 0;
    for (int i = 0; i < 3; ++i) {
      std::optional<Decision> d;
      g.admit({m.account, m, "r" + std::to_string(i) + "@example.org", c.mx ? "example.org" : "", ""},
              [&](const Decision& x) { d = x; });
      ASSERT_TRUE(loop_.run_until([&] { return d.has_value(); })) << c.name;
      EXPECT_NE(to_string(d->reason), "policy_unavailable") << c.name << ": " << d->detail_text();
      if (d->allowed()) {
        ++allowed;
        g.release(*d);
      } else {
        EXPECT_EQ(d->verdict, Verdict::Defer) << c.name;
        EXPECT_GT(d->until_ms, now_) << c.name;
      }
    }
    EXPECT_EQ(allowed, c.allowed) << c.name;
  }
}

// The interval is kept in microseconds: 7 per minute is one every 8571.43 ms, so once the burst
// is spent the next send is due 8572 ms later (rounded up, never early), not 8571.
TEST_F(GateTest, RateIntervalsAreExactBelowAMillisecondAndAboveIt) {
  PolicyConfig cfg = no_pacing();
  cfg.per_minute = 7;
  Gate& g = make_gate(cfg);
  store::Mailbox m = mailbox("mbx_rate");
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(admit(g, m, "r" + std::to_string(i) + "@example.org").allowed()) << i;
  Decision d = admit(g, m, "late@example.org");
  ASSERT_EQ(d.verdict, Verdict::Defer) << to_string(d.reason);
  EXPECT_EQ(to_string(d.reason), "ramp_up");
  EXPECT_EQ(d.detail_text(), "per_minute");
  EXPECT_EQ(d.until_ms, now_ + 8572);

  // One per hour: the second send waits the whole hour.
  PolicyConfig hourly = no_pacing();
  hourly.per_hour = 1;
  Gate& h = make_gate(hourly);
  store::Mailbox m2 = mailbox("mbx_hourly");
  ASSERT_TRUE(admit(h, m2).allowed());
  Decision d2 = admit(h, m2, "second@example.org");
  EXPECT_EQ(d2.detail_text(), "per_hour");
  EXPECT_EQ(d2.until_ms, now_ + 3'600'000);

  // 100,000 per minute is one every 600 µs (0 ms when counted in whole milliseconds, which made
  // the script's SET … PX 0 fail): the burst goes, each send one arrival time further on.
  PolicyConfig fast = no_pacing();
  fast.per_minute = 100000;
  Gate& f = make_gate(fast);
  store::Mailbox m3 = mailbox("mbx_fast");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(admit(f, m3, "f" + std::to_string(i) + "@example.org").allowed()) << i;
}

}  // namespace
}  // namespace deliverd::policy
