// Scheduler against a real redis-server: a deferral moves the entry into the retry set in one
// step, and the promoter puts it back on the stream with everything the next attempt needs.
#include "queue/scheduler.h"

#include <gtest/gtest.h>

#include <string>

#include "core/deflate.h"
#include "core/utf8.h"
#include "tests/integration/queue/pending_entry.h"

namespace deliverd::queue {
namespace {

using Fixture = deliverd::testing::PendingEntry;

RetryItem greylisted_item() {
  RetryItem item{R"({"v":1,"id":"j1"})", 2, 1700000000000, "rcpt_deferred", {}, "acct_1"};
  item.last_reply = core::Reply{451, "4.7.1", "greylisted, come back later"};
  return item;
}

// Starts the promoter with a clock stopped at now_ms and waits until the retry set holds `left`.
bool promote_until(Fixture& f, Scheduler& s, int64_t now_ms, long long left) {
  s.start([now_ms] { return now_ms; });
  return f.loop.run_until([&] { return f.redis.integer({"ZCARD", "deliverd:retry"}) == left; });
}

TEST(Scheduler, DeferralAcksTheEntryAndPublishesTheEventInOneStep) {
  Fixture f;
  Scheduler s(f.loop.get(), *f.client, SchedulerConfig{});
  const std::string event = R"({"v":1,"job_id":"j1","status":"deferred"})";
  EXPECT_TRUE(f.run([&](auto cb) { s.defer_and_ack(f.entry, greylisted_item(), 5000, event, cb); }));
  EXPECT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 0);
  EXPECT_EQ(f.redis.command({"ZSCORE", "deliverd:retry", encode_retry_item(greylisted_item())}), "5000");
  auto results = f.redis.xrange("deliverd:results");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].fields["event"], event);
  s.stop();
}

TEST(Scheduler, ADeferralDeletesTheEntryAndARerunDoesNotAddTheJobAgain) {
  Fixture f;
  Scheduler s(f.loop.get(), *f.client, SchedulerConfig{});
  ASSERT_TRUE(f.run([&](auto cb) { s.defer_and_ack(f.entry, greylisted_item(), 1000, "{}", cb); }));
  EXPECT_EQ(f.redis.xlen("deliverd:jobs"), 0) << "the stream holds only unfinished work";
  // The promoter takes the job back; then the deferral runs again (its first reply was lost).
  ASSERT_TRUE(promote_until(f, s, 5000, 0));
  ASSERT_TRUE(f.run([&](auto cb) { s.defer_and_ack(f.entry, greylisted_item(), 1000, "{}", cb); }));
  EXPECT_EQ(f.redis.integer({"ZCARD", "deliverd:retry"}), 0) << "the job is on the stream, not in both places";
  EXPECT_EQ(f.redis.xlen("deliverd:jobs"), 1);
  EXPECT_EQ(f.redis.xlen("deliverd:results"), 1);
  s.stop();
}

TEST(Scheduler, FailedDeferralLeavesTheEntryPendingAndTheSetUnchanged) {
  Fixture f;
  f.redis.command({"SET", "deliverd:retry", "not a sorted set"});
  Scheduler s(f.loop.get(), *f.client, SchedulerConfig{});
  EXPECT_FALSE(f.run([&](auto cb) { s.defer_and_ack(f.entry, greylisted_item(), 5000, "{}", cb); }));
  EXPECT_EQ(f.redis.xpending_count("deliverd:jobs", "deliverd"), 1);
  EXPECT_EQ(f.redis.xlen("deliverd:results"), 0);
  s.stop();
}

TEST(Scheduler, PromotesOnlyDueItemsWithAttemptFirstSeenAndTheLastReply) {
  Fixture f;
  Scheduler s(f.loop.get(), *f.client, SchedulerConfig{});
  RetryItem later = greylisted_item();
  later.payload = R"({"v":1,"id":"j2"})";
  ASSERT_TRUE(f.run([&](auto cb) { s.defer_and_ack(f.entry, greylisted_item(), 1000, "", cb); }));
  f.redis.command({"ZADD", "deliverd:retry", "9000", encode_retry_item(later)});
  const size_t before = f.redis.xrange("deliverd:jobs").size();
  ASSERT_TRUE(promote_until(f, s, 5000, 1)) << "the item due at 9000 stays";

  auto jobs = f.redis.xrange("deliverd:jobs");
  ASSERT_EQ(jobs.size(), before + 1);
  auto& back = jobs.back().fields;
  EXPECT_EQ(back["job"], R"({"v":1,"id":"j1"})");
  EXPECT_EQ(back["attempt"], "2");
  EXPECT_EQ(back["first_seen"], "1700000000000");
  EXPECT_EQ(back["last_code"], "451");
  EXPECT_EQ(back["last_enhanced"], "4.7.1");
  EXPECT_EQ(back["last_text"], "greylisted, come back later");
  s.stop();
}

TEST(Scheduler, AnItemWithoutAReplyCarriesNoReplyFields) {
  Fixture f;
  Scheduler s(f.loop.get(), *f.client, SchedulerConfig{});
  RetryItem waiting{R"({"v":1,"id":"j3"})", 1, 1700000000000, "not_before", {}, "acct_1"};
  ASSERT_TRUE(f.run([&](auto cb) { s.defer_and_ack(f.entry, waiting, 1000, "", cb); }));
  ASSERT_TRUE(promote_until(f, s, 5000, 0));
  auto back = f.redis.xrange("deliverd:jobs").back().fields;
  EXPECT_EQ(back["attempt"], "1");
  EXPECT_EQ(back.count("last_code"), 0u);
  s.stop();
}

TEST(Scheduler, AForeignMemberIsDeadLetteredInsteadOfBlockingTheSet) {
  Fixture f;
  Scheduler s(f.loop.get(), *f.client, SchedulerConfig{});
  f.redis.command({"ZADD", "deliverd:retry", "1", "hand-written junk"});
  ASSERT_TRUE(promote_until(f, s, 5000, 0));
  auto dead = f.redis.xrange("deliverd:dead");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].fields["job"], "hand-written junk");
  EXPECT_NE(dead[0].fields["reason"].find("not a deliverd retry item"), std::string::npos);
  s.stop();
}

// The job text is most of a waiting job's memory: the member keeps it deflated when that is
// smaller, and the stream gets it back as job_z, which inflates to the producer's exact bytes.
TEST(Scheduler, AWaitingJobIsKeptCompressedAndComesBackByteForByte) {
  Fixture f;
  Scheduler s(f.loop.get(), *f.client, SchedulerConfig{});
  std::string body;
  for (int i = 0; i < 12; ++i) body += "Hi Bob, this is line " + std::to_string(i) + " of a cold email.\\n";
  RetryItem item = greylisted_item();
  item.payload = R"({"v":1,"id":"j4","account":"acct_9","mailbox":"mbx_1","text":")" + body + "\xe9\"}";
  item.account = "acct_9";
  item.last_reply.text = "greylisted \xe9t\xe9";  // Latin-1 from an old server
  const std::string member = encode_retry_item(item);
  EXPECT_EQ(member.rfind("r2 2 1700000000000 acct_9 rcpt_deferred 451 4.7.1 ", 0), 0u) << member.substr(0, 60);
  EXPECT_LT(member.size(), item.payload.size()) << "the header and reply cost less than compression saves";
  ASSERT_TRUE(f.run([&](auto cb) { s.defer_and_ack(f.entry, item, 1000, "", cb); }));
  ASSERT_TRUE(promote_until(f, s, 5000, 0));

  auto back = f.redis.xrange("deliverd:jobs").back().fields;
  EXPECT_EQ(back.count("job"), 0u);
  auto job = core::inflate_raw(back["job_z"], 1 << 20);
  ASSERT_TRUE(job) << job.error();
  EXPECT_EQ(*job, item.payload);
  EXPECT_EQ(back["attempt"], "2");
  EXPECT_EQ(back["last_code"], "451");
  EXPECT_EQ(back["last_enhanced"], "4.7.1");
  EXPECT_EQ(core::unescape_utf8_lossless(back["last_text"]), item.last_reply.text);
  s.stop();
}

// A big job waits uncompressed: inflated in the consumer's hands it could outgrow the bytes the
// consumer counted for its entry.
TEST(Scheduler, AJobOverSixtyFourKibibytesIsKeptAsItCame) {
  RetryItem item = greylisted_item();
  item.payload = R"({"v":1,"id":"big","text":")" + std::string(64 * 1024, 'a') + R"("})";
  const std::string member = encode_retry_item(item);
  EXPECT_EQ(member.substr(member.size() - item.payload.size()), item.payload);
  EXPECT_NE(member.find(" -\n"), std::string::npos) << member.substr(0, 80);
  RetryItem small = greylisted_item();
  small.payload = R"({"v":1,"id":"small","text":")" + std::string(1000, 'a') + R"("})";
  EXPECT_NE(encode_retry_item(small).find(" z\n"), std::string::npos);
}

// Members written before the header form (a JSON object holding the job text) are promoted
// with everything they carried, so an upgrade with a full retry set loses nothing.
TEST(Scheduler, AMemberOfTheEarlierJsonFormIsStillPromoted) {
  Fixture f;
  Scheduler s(f.loop.get(), *f.client, SchedulerConfig{});
  f.redis.command({"ZADD", "deliverd:retry", "1",
                   R"({"job":"{\"v\":1,\"id\":\"old\"}","attempt":"3","first_seen":"1700000000000","last":"x",)"
                   R"("last_code":"421","last_enhanced":"","last_text":"busy"})"});
  ASSERT_TRUE(promote_until(f, s, 5000, 0));
  auto back = f.redis.xrange("deliverd:jobs").back().fields;
  EXPECT_EQ(back["job"], R"({"v":1,"id":"old"})");
  EXPECT_EQ(back["attempt"], "3");
  EXPECT_EQ(back["first_seen"], "1700000000000");
  EXPECT_EQ(back["last_code"], "421");
  EXPECT_EQ(back["last_enhanced"], "");
  EXPECT_EQ(back["last_text"], "busy");
  EXPECT_EQ(f.redis.xlen("deliverd:dead"), 0);
  s.stop();
}

}  // namespace
}  // namespace deliverd::queue
