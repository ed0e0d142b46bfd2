// One delivery driven through every ending with fakes of the services it uses
// (daemon/delivery_services.h): the fakes write down every call, and each test asserts the calls
// and the payloads, not only their number.
#include "daemon/delivery.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "core/deflate.h"
#include "daemon/message_builder.h"

namespace deliverd::daemon {
namespace {

constexpr int64_t kNow = 1'764'410'400'000;  // 2025-11-29T10:00:00Z
constexpr char kJob[] =
    R"({"v":1,"id":"job-1","account":"acct_42","mailbox":"mbx_7","to":{"email":"bob@example.org"},)"
    R"("subject":"Quick question","text":"Hello Bob"})";

class FakeServices final : public DeliveryServices {
 public:
  FakeServices() : builder_(MessageBuilderConfig{"", "", "", {}}, std::nullopt, {}) {
    uv_loop_init(&loop_);
    policy_.schedule_ms = {60'000};
    policy_.jitter = 0;
    mailbox_.id = "mbx_7";
    mailbox_.account = "acct_42";
    mailbox_.email = "alice@acme.example";
    mailbox_.smtp_host = "smtp.acme.example";
    mailbox_.smtp_port = 587;
  }
  ~FakeServices() override {
    uv_run(&loop_, UV_RUN_NOWAIT);
    uv_loop_close(&loop_);
  }

  // What the fakes answer.
  bool mailbox_known = true;
  std::optional<bool> done_marker = false;  // nullopt: Redis cannot say
  policy::Decision decision = allow();
  core::Outcome send_outcome = delivered();
  std::deque<bool> write_results;  // per Redis write, in order; empty = succeed
  bool answer_sends = true;        // false: the send stays in flight until abort_sends()
  // Per read of the erasure marker (is_erased, or the admit script's), in order (the last answer
  // repeats); nullopt: Redis cannot say.
  std::deque<std::optional<bool>> erased = {false};
  int erased_checks = 0;  // is_erased calls (the admit script's reads are not counted)

  // What the delivery did.
  std::vector<std::string> calls;
  std::string looked_up_account;  // mailbox ids are per account
  std::string marker_account;     // … and so are job ids
  int64_t marked_delivered_ms = 0;
  static constexpr int64_t kFirstDeliveredMs = 1764400000000;  // 2025-11-29T07:06:40Z
  std::vector<std::string> events;  // result events published (JSON)
  std::optional<queue::RetryItem> deferred_item;
  int64_t deferred_due = 0;
  std::optional<core::Outcome> learned;
  int learn_answers = 0;
  std::string admitted_done_key;  // the marker the admit was asked to read first
  std::vector<store::DeliveryEvent> recorded;
  std::string dead_reason;
  smtp::Envelope envelope;
  int finished_count = 0;

  static policy::Decision allow() {
    policy::Decision d;
    d.verdict = policy::Verdict::Allow;
    d.reason = core::Reason::Ok;
    return d;
  }
  static core::Outcome delivered() {
    core::Outcome o;
    o.status = core::Status::Delivered;
    o.phase = core::Phase::Body;
    o.reason = core::Reason::Delivered;
    o.fault = core::Fault::Success;
    o.reply = {250, "2.0.0", "queued as 42"};
    o.host = "smtp.acme.example";
    o.ip = "192.0.2.25";
    return o;
  }

  uv_loop_t* loop() override { return &loop_; }
  int64_t now_ms() override { return kNow; }
  uint64_t uptime_ms() override { return uv_now(&loop_); }
  const queue::RetryPolicy& retry_policy() override { return policy_; }
  size_t max_job_bytes() override { return 32u << 20; }

  std::shared_ptr<const store::Mailbox> find_mailbox(const std::string& account, const std::string& id) override {
    calls.push_back("find_mailbox " + id);
    looked_up_account = account;
    return mailbox_known ? std::make_shared<const store::Mailbox>(mailbox_) : nullptr;
  }
  void refresh_mailbox(const store::MailboxRef& ref, std::function<void()> then) override {
    calls.push_back("refresh_mailbox " + ref.id);
    looked_up_account = ref.account;
    then();
  }
  void admit(const policy::AdmitRequest& req, std::function<void(const policy::Decision&)> cb) override {
    calls.push_back("admit " + req.account + " " + req.mailbox.id + " " + req.to_email + " mx=" + req.mx_domain);
    admitted_done_key = req.done_key;
    // Like the admit script: the erasure marker first of all, then the idempotency marker.
    std::optional<bool> erased_now = false;
    if (!req.erased_key.empty()) {
      EXPECT_EQ(req.erased_key, "erased:acct_42");
      erased_now = next_erased();
    }
    if (!erased_now || *erased_now) {
      policy::Decision d;
      d.verdict = erased_now ? policy::Verdict::Erased : policy::Verdict::Defer;
      d.reason = erased_now ? core::Reason::AccountErased : core::Reason::PolicyUnavailable;
      if (!erased_now) {
        d.detail = policy::Detail::RedisFailed;
        d.until_ms = kNow + 1000;
      }
      return cb(d);
    }
    // The gate reads the marker first (policy/gate.h AdmitRequest::done_key): a marked job is a
    // duplicate, an unreadable marker a deferral, never "not done".
    if (!done_marker) {
      policy::Decision d;
      d.verdict = policy::Verdict::Defer;
      d.reason = core::Reason::PolicyUnavailable;
      d.detail = policy::Detail::RedisFailed;
      d.error = "connection lost";
      d.until_ms = kNow + 1000;
      return cb(d);
    }
    if (*done_marker) {
      policy::Decision d;
      d.verdict = policy::Verdict::Duplicate;
      d.reason = core::Reason::Duplicate;
      d.delivered_ms = kFirstDeliveredMs;
      d.erased_checked = !req.erased_key.empty();
      return cb(d);
    }
    policy::Decision d = decision;
    d.erased_checked = !req.erased_key.empty();
    cb(d);
  }
  policy::LearnCall prepare_learn(const store::Mailbox& m, const std::string& to, const core::Outcome& o,
                                  const policy::Decision&) override {
    calls.push_back("learn " + m.id + " " + to + " " + std::string(core::to_string(o.status)));
    learned = o;
    policy::LearnCall c;
    c.script.keys = {"state", "sends"};
    c.answer = [this](const queue::RedisReply&) { ++learn_answers; };
    return c;
  }
  void learn(policy::LearnCall) override { calls.push_back("learn_alone"); }
  void release(const policy::Decision&) override { calls.push_back("release"); }
  const MessageBuilder& message_builder() override { return builder_; }

  dns::Resolver::RequestId resolve_host(const std::string& host,
                                        std::function<void(const dns::ResolvedHost&)> cb) override {
    calls.push_back("resolve_host " + host);
    dns::ResolvedHost r;
    r.host = host;
    sockaddr_in in{};
    in.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.25", &in.sin_addr);
    sockaddr_storage ss{};
    std::memcpy(&ss, &in, sizeof in);
    r.allowed.push_back(ss);
    cb(r);
    return 0;
  }
  void cancel_resolve(dns::Resolver::RequestId) override { calls.push_back("cancel_resolve"); }
  void send_relay(const store::Mailbox& m, const sockaddr_storage& addr, smtp::Envelope env,
                  smtp::Session::Done done) override {
    char ip[64] = {};
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    calls.push_back("send_relay " + m.id + " " + ip + ":" + std::to_string(ntohs(in->sin_port)));
    envelope = env;
    if (answer_sends) return done(send_outcome);
    pending_send_ = std::move(done);
  }
  void send_mx(const std::string& domain, smtp::Envelope env, smtp::Session::Done done) override {
    calls.push_back("send_mx " + domain);
    envelope = env;
    done(send_outcome);
  }
  void abort_sends() override {
    calls.push_back("abort_sends");
    if (!pending_send_) return;
    core::Outcome o;
    o.status = core::Status::Deferred;
    o.phase = core::Phase::Body;
    o.reason = core::Reason::Aborted;
    o.detail = "shutting down";
    std::exchange(pending_send_, nullptr)(o);
  }

  std::string done_key(const std::string& account, const std::string& job_id) override {
    marker_account = account;
    return "done:" + account + ":" + job_id;
  }
  std::optional<bool> next_erased() {
    std::optional<bool> answer = erased.front();
    if (erased.size() > 1) erased.pop_front();
    return answer;
  }
  std::string erased_key(const std::string& account) override { return "erased:" + account; }
  // Not in `calls`: every attempt asks, and the call lists above would only repeat it.
  void is_erased(const std::string& account, std::function<void(core::Result<bool, std::string>)> cb) override {
    EXPECT_EQ(account, "acct_42");
    ++erased_checks;
    std::optional<bool> answer = next_erased();
    if (!answer) return cb(core::Err(std::string("connection lost")));
    cb(*answer);
  }
  void ack(const std::string& entry_id, WriteDone cb) override {
    calls.push_back("ack " + entry_id);
    cb(next_write());
  }
  void dead_letter_and_ack(const std::string& entry_id, const std::string& payload, const std::string& reason,
                           WriteDone cb) override {
    calls.push_back("dead_letter_and_ack " + entry_id + " " + payload);
    dead_reason = reason;
    cb(next_write());
  }
  void publish_and_ack(const std::string& entry_id, const std::string& event, WriteDone cb) override {
    calls.push_back("publish_and_ack " + entry_id);
    events.push_back(event);
    cb(next_write());
  }
  void publish_delivered_and_ack(const std::string& entry_id, const std::string& account, const std::string& job_id,
                                 int64_t delivered_ms, const std::string& event, WriteDone cb) override {
    calls.push_back("publish_delivered_and_ack " + entry_id + " " + job_id);
    marker_account = account;
    marked_delivered_ms = delivered_ms;
    events.push_back(event);
    cb(next_write());
  }
  void learn_publish_and_ack(const policy::LearnCall& learn, const std::string& entry_id, const std::string& event,
                             WriteDone cb) override {
    EXPECT_EQ(learn.script.keys.size(), 2u);
    calls.push_back("learn_publish_and_ack " + entry_id);
    events.push_back(event);
    cb(next_write());
  }
  void learn_publish_delivered_and_ack(const policy::LearnCall& learn, const std::string& entry_id,
                                       const std::string& account, const std::string& job_id, int64_t delivered_ms,
                                       const std::string& event, WriteDone cb) override {
    EXPECT_EQ(learn.script.keys.size(), 2u);
    calls.push_back("learn_publish_delivered_and_ack " + entry_id + " " + job_id);
    marker_account = account;
    marked_delivered_ms = delivered_ms;
    events.push_back(event);
    cb(next_write());
  }
  void defer_and_ack(const std::string& entry_id, const queue::RetryItem& item, int64_t due_ms,
                     const std::string& event, WriteDone cb) override {
    calls.push_back("defer_and_ack " + entry_id);
    deferred_item = item;
    deferred_due = due_ms;
    if (!event.empty()) events.push_back(event);
    cb(next_write());
  }
  void record(store::DeliveryEvent e) override { recorded.push_back(std::move(e)); }
  void finished(Delivery*) override {
    calls.push_back("finished");
    ++finished_count;
  }

  // Runs the loop until the delivery finished (backoff timers), within a bound.
  bool run_until_finished() {
    for (int i = 0; i < 200 && finished_count == 0; ++i) uv_run(&loop_, UV_RUN_ONCE);
    return finished_count == 1;
  }

  store::Mailbox mailbox_;

 private:
  bool next_write() {
    if (write_results.empty()) return true;
    bool ok = write_results.front();
    write_results.pop_front();
    return ok;
  }
  uv_loop_t loop_{};
  queue::RetryPolicy policy_;
  MessageBuilder builder_;
  smtp::Session::Done pending_send_;
};

queue::StreamEntry entry(std::string job = kJob, int deliveries = 1) {
  queue::StreamEntry e;
  e.id = "1764410000000-0";
  e.fields = {{"job", std::move(job)}};
  e.deliveries = deliveries;
  return e;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

using Calls = std::vector<std::string>;

TEST(Delivery, DeliveredIsPublishedWithItsMarkerAndTeachesThePolicy) {
  FakeServices s;
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7", "admit acct_42 mbx_7 bob@example.org mx=",
                            "resolve_host smtp.acme.example", "send_relay mbx_7 192.0.2.25:587",
                            "learn mbx_7 bob@example.org delivered",
                            "learn_publish_delivered_and_ack 1764410000000-0 job-1", "finished"}));
  EXPECT_EQ(s.looked_up_account, "acct_42");
  EXPECT_EQ(s.marker_account, "acct_42");
  EXPECT_EQ(s.marked_delivered_ms, s.now_ms()) << "the marker holds the delivery's time";
  EXPECT_EQ(s.envelope.mail_from, "alice@acme.example");
  EXPECT_EQ(s.envelope.rcpt_to, "bob@example.org");
  EXPECT_TRUE(contains(s.envelope.message, "Subject: Quick question\r\n")) << s.envelope.message;
  EXPECT_TRUE(contains(s.envelope.message, "\r\n\r\nHello Bob")) << s.envelope.message;
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("job_id":"job-1","entry_id":"1764410000000-0")")) << s.events[0];
  EXPECT_TRUE(contains(s.events[0], R"("status":"delivered","phase":"body","reason":"delivered","fault":"success")"))
      << s.events[0];
  EXPECT_TRUE(contains(s.events[0], R"("reply":{"code":250,"enhanced":"2.0.0","text":"queued as 42"})"));
  ASSERT_EQ(s.recorded.size(), 1u);
  EXPECT_EQ(s.recorded[0].status, "delivered");
  EXPECT_EQ(s.recorded[0].detail, "delivered");
  EXPECT_EQ(s.recorded[0].attempt, 1);
}

TEST(Delivery, MxModeSendsToTheRecipientDomainWithItsThrottle) {
  FakeServices s;
  s.mailbox_.mode = store::Mode::Mx;
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls[1], "admit acct_42 mbx_7 bob@example.org mx=example.org");
  EXPECT_EQ(s.calls[2], "send_mx example.org");
}

TEST(Delivery, DeferredGoesToTheRetrySetWithTheNextAttempt) {
  FakeServices s;
  s.send_outcome.status = core::Status::Deferred;
  s.send_outcome.phase = core::Phase::Rcpt;
  s.send_outcome.reason = core::Reason::RcptDeferred;
  s.send_outcome.fault = core::Fault::RecipientTransient;
  s.send_outcome.reply = {451, "4.2.0", "try later"};
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls.at(s.calls.size() - 2), "defer_and_ack 1764410000000-0");
  ASSERT_TRUE(s.deferred_item);
  EXPECT_EQ(s.deferred_item->attempt, 2);
  EXPECT_EQ(s.deferred_item->payload, kJob);
  EXPECT_EQ(s.deferred_item->reason, "rcpt_deferred");
  EXPECT_EQ(s.deferred_item->account, "acct_42") << "erasure finds the member by it";
  EXPECT_EQ(s.deferred_item->last_reply.text, "try later");
  EXPECT_EQ(s.deferred_item->last_reply.code, 451);
  EXPECT_EQ(s.deferred_due, kNow + 60'000);
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("status":"deferred","phase":"rcpt","reason":"rcpt_deferred")")) << s.events[0];
  EXPECT_TRUE(contains(s.events[0], R"("attempt":1,"next_attempt_at":"2025-11-29T10:01:00.000Z")")) << s.events[0];
  ASSERT_TRUE(s.learned);
  EXPECT_EQ(s.learned->reason, core::Reason::RcptDeferred);
}

TEST(Delivery, PolicyDeferralWaitsForItsSlotWithoutUsingAnAttempt) {
  FakeServices s;
  s.decision = policy::Decision{};
  s.decision.verdict = policy::Verdict::Defer;
  s.decision.reason = core::Reason::RampUp;
  s.decision.detail = policy::Detail::DailyLimit;
  s.decision.until_ms = kNow + 3'600'000;
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7", "admit acct_42 mbx_7 bob@example.org mx=",
                            "defer_and_ack 1764410000000-0", "finished"}));
  ASSERT_TRUE(s.deferred_item);
  EXPECT_EQ(s.deferred_item->attempt, 1);
  EXPECT_EQ(s.deferred_item->reason, "ramp_up");
  EXPECT_EQ(s.deferred_due, kNow + 3'600'000);
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("status":"deferred","phase":"policy","reason":"ramp_up")")) << s.events[0];
  EXPECT_TRUE(contains(s.events[0], "deferred: ramp-up (daily_limit) until")) << s.events[0];
  EXPECT_FALSE(s.learned);
}

TEST(Delivery, SuppressedIsPublishedAndNeverSent) {
  FakeServices s;
  s.decision = policy::Decision{};
  s.decision.verdict = policy::Verdict::Suppressed;
  s.decision.reason = core::Reason::Suppressed;
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7", "admit acct_42 mbx_7 bob@example.org mx=",
                            "publish_and_ack 1764410000000-0", "finished"}));
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("status":"suppressed","phase":"policy","reason":"suppressed")")) << s.events[0];
}

TEST(Delivery, UnknownMailboxIsReadAgainThenRejected) {
  FakeServices s;
  s.mailbox_known = false;
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7", "refresh_mailbox mbx_7", "find_mailbox mbx_7",
                            "publish_and_ack 1764410000000-0", "finished"}));
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("status":"rejected","phase":"policy","reason":"unknown_mailbox")"));
  EXPECT_TRUE(contains(s.events[0], "mailbox mbx_7 is not registered for account acct_42")) << s.events[0];
}

TEST(Delivery, InvalidJobIsDeadLetteredWithTheFieldNamed) {
  FakeServices s;
  const std::string bad = R"({"v":1,"id":"job-2","account":"acct_42","mailbox":"mbx_7","subject":"x","text":"y"})";
  Delivery d(s, entry(bad));
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"dead_letter_and_ack 1764410000000-0 " + bad, "finished"}));
  EXPECT_TRUE(contains(s.dead_reason, "to")) << s.dead_reason;
  EXPECT_TRUE(s.events.empty());
}

// A promoted retry carries its job deflated (queue/scheduler.h): it is sent like any other.
TEST(Delivery, ACompressedJobFromTheRetrySetIsInflatedAndSent) {
  FakeServices s;
  queue::StreamEntry e = entry();
  e.fields = {{"job_z", core::deflate_raw(kJob)}, {"attempt", "2"}, {"first_seen", "1764400000000"}};
  ASSERT_FALSE(e.fields[0].second.empty());
  Delivery d(s, std::move(e));
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("status":"delivered")")) << s.events[0];
  EXPECT_TRUE(contains(s.events[0], R"("attempt":2)")) << s.events[0];
}

TEST(Delivery, ACompressedJobThatDoesNotInflateIsDeadLetteredWithWhy) {
  FakeServices s;
  queue::StreamEntry e = entry();
  e.fields = {{"job_z", core::deflate_raw(kJob).substr(0, 20)}, {"attempt", "2"}, {"first_seen", "1764400000000"}};
  Delivery d(s, std::move(e));
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"dead_letter_and_ack 1764410000000-0 ", "finished"}));
  EXPECT_EQ(s.dead_reason, "stream field \"job_z\": compressed data cut short");
  EXPECT_TRUE(s.events.empty());
}

TEST(Delivery, PoisonEntryIsDeadLetteredBeforeItIsParsed) {
  FakeServices s;
  Delivery d(s, entry(kJob, kMaxDeliveries + 1));
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{std::string("dead_letter_and_ack 1764410000000-0 ") + kJob, "finished"}));
  EXPECT_EQ(s.dead_reason, "deliverd took this entry 4 times without finishing it (the daemon crashed or failed "
                           "while processing it)");
}

// A duplicate used to be acked without an event, which left a producer waiting for one forever;
// now it gets one, naming the first delivery's time.
TEST(Delivery, AlreadyDeliveredIsNotSentAgainAndSaysDuplicateWithTheFirstDeliverysTime) {
  FakeServices s;
  s.done_marker = true;
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7", "admit acct_42 mbx_7 bob@example.org mx=",
                            "publish_and_ack 1764410000000-0", "finished"}));
  EXPECT_EQ(s.marker_account, "acct_42") << "the marker is the account's";
  EXPECT_EQ(s.admitted_done_key, "done:acct_42:job-1") << "the admit reads the marker";
  EXPECT_FALSE(s.learned) << "nothing was sent, nothing is learnt";
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("status":"delivered")")) << s.events[0];
  EXPECT_TRUE(contains(s.events[0], R"("reason":"duplicate")")) << s.events[0];
  EXPECT_TRUE(contains(s.events[0], R"("first_delivered_at":"2025-11-29T07:06:40.000Z")")) << s.events[0];
  EXPECT_TRUE(contains(s.events[0], R"("job_id":"job-1")")) << s.events[0];
}

TEST(Delivery, RedisWriteFailuresBackOffAndRetryTheSameWrite) {
  FakeServices s;
  s.write_results = {false, false, true};
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7",
                            "admit acct_42 mbx_7 bob@example.org mx=", "resolve_host smtp.acme.example",
                            "send_relay mbx_7 192.0.2.25:587", "learn mbx_7 bob@example.org delivered",
                            "learn_publish_delivered_and_ack 1764410000000-0 job-1",
                            "learn_publish_delivered_and_ack 1764410000000-0 job-1",
                            "learn_publish_delivered_and_ack 1764410000000-0 job-1", "finished"}));
  ASSERT_EQ(s.events.size(), 3u);
  EXPECT_EQ(s.events[0], s.events[2]) << "the retried write carries the same event";
}

// The marker is read by the admit script; when Redis cannot answer, the job is not sent: it waits
// in the retry set (its write retried until Redis takes it) and is admitted, marker first, again.
TEST(Delivery, AMarkerThatCannotBeReadIsNeverTakenAsNotDelivered) {
  FakeServices s;
  s.done_marker.reset();
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7", "admit acct_42 mbx_7 bob@example.org mx=",
                            "defer_and_ack 1764410000000-0", "finished"}));
  EXPECT_EQ(s.admitted_done_key, "done:acct_42:job-1");
  ASSERT_TRUE(s.deferred_item);
  EXPECT_EQ(s.deferred_item->attempt, 1) << "no attempt was used up";
  EXPECT_EQ(s.deferred_item->reason, "policy_unavailable");
}

TEST(Delivery, AbortDuringSendEndsDeferredAndIsStillPersisted) {
  FakeServices s;
  s.answer_sends = false;
  Delivery d(s, entry());
  d.start();
  ASSERT_EQ(s.calls.back(), "send_relay mbx_7 192.0.2.25:587");
  d.abort();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7", "admit acct_42 mbx_7 bob@example.org mx=",
                            "resolve_host smtp.acme.example", "send_relay mbx_7 192.0.2.25:587", "abort_sends",
                            "learn mbx_7 bob@example.org deferred", "learn_alone", "defer_and_ack 1764410000000-0", "finished"}));
  ASSERT_TRUE(s.deferred_item);
  EXPECT_EQ(s.deferred_item->attempt, 2);
  EXPECT_EQ(s.deferred_item->reason, "aborted");
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("status":"deferred","phase":"body","reason":"aborted")")) << s.events[0];
}

}  // namespace
}  // namespace deliverd::daemon

namespace deliverd::daemon {
namespace {

void expect_no_trace_of_the_recipient(const FakeServices& s) {
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("status":"rejected","phase":"policy","reason":"account_erased")")) << s.events[0];
  EXPECT_TRUE(contains(s.events[0], R"("to":"")")) << s.events[0];
  EXPECT_TRUE(contains(s.events[0], R"("reply":{"code":null,"enhanced":"","text":""})")) << s.events[0];
  for (const char* personal : {"bob", "example.org", "Quick question", "queued as 42", "192.0.2.25"})
    EXPECT_FALSE(contains(s.events[0], personal)) << personal << " in " << s.events[0];
  ASSERT_EQ(s.recorded.size(), 1u);
  EXPECT_EQ(s.recorded[0].recipient, "");
  EXPECT_EQ(s.recorded[0].status, "rejected");
  EXPECT_EQ(s.recorded[0].reply_text, "");
  EXPECT_EQ(s.recorded[0].host, "");
  EXPECT_EQ(s.recorded[0].detail, "account_erased: the account was erased; nothing of this job is kept");
}

TEST(Delivery, AJobOfAnErasedAccountEndsRejectedWithoutItsAddress) {
  FakeServices s;
  s.erased = {true};  // the admit script reads the marker first of all
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.erased_checks, 0) << "no EXISTS of its own";
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7", "admit acct_42 mbx_7 bob@example.org mx=",
                            "publish_and_ack 1764410000000-0", "finished"}));
  expect_no_trace_of_the_recipient(s);
}

// The admit script could not answer (Redis away): unknown is not "no". The deferral would keep
// the job in the retry set, so the marker is asked on its own first, and the wait ends there.
TEST(Delivery, AnErasedAccountsJobIsNotKeptForARetryWhenTheAdmitCouldNotSay) {
  FakeServices s;
  s.erased = {std::nullopt, std::nullopt, true};
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.erased_checks, 2);
  EXPECT_FALSE(s.deferred_item) << "not into the retry set";
  expect_no_trace_of_the_recipient(s);
}

// A job that ends before its admission (here: past its expires_at) never had the marker read by
// the script: it asks on its own.
TEST(Delivery, AJobThatEndsBeforeItsAdmissionAsksWhetherItsAccountWasErased) {
  FakeServices s;
  s.erased = {true};
  std::string job = kJob;
  job.insert(1, R"("expires_at":"2020-01-01T00:00:00Z",)");
  Delivery d(s, entry(job));
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.erased_checks, 1);
  EXPECT_EQ(s.calls, (Calls{"publish_and_ack 1764410000000-0", "finished"}));
  expect_no_trace_of_the_recipient(s);
}

// The common path reads the marker once in the admit script and once after the attempt: one
// EXISTS of its own per message, not two.
TEST(Delivery, ADeliveredJobAsksWhetherItsAccountWasErasedOnlyAfterItsAttempt) {
  FakeServices s;
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  EXPECT_EQ(s.erased_checks, 1);
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_TRUE(contains(s.events[0], R"("status":"delivered")")) << s.events[0];
}

TEST(Delivery, AnAttemptThatOutlastsItsAccountEndsAsErasedAndTeachesNothing) {
  FakeServices s;
  s.erased = {false, true};  // erased while the session ran
  s.send_outcome.status = core::Status::Bounced;
  s.send_outcome.phase = core::Phase::Rcpt;
  s.send_outcome.reason = core::Reason::RcptRejected;
  s.send_outcome.reply = {550, "5.1.1", "bob@example.org: no such user"};
  Delivery d(s, entry());
  d.start();
  ASSERT_TRUE(s.run_until_finished());
  // The bounce would have listed the address again (hard-bounce suppression): not learnt.
  EXPECT_EQ(s.calls, (Calls{"find_mailbox mbx_7", "admit acct_42 mbx_7 bob@example.org mx=",
                            "resolve_host smtp.acme.example", "send_relay mbx_7 192.0.2.25:587", "release",
                            "publish_and_ack 1764410000000-0", "finished"}));
  EXPECT_FALSE(s.learned);
  expect_no_trace_of_the_recipient(s);
}

}  // namespace
}  // namespace deliverd::daemon
