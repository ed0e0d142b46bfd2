// [daemon] workers = 2: two event loops in one daemon. A mailbox's jobs all run on the loop its
// (account, mailbox) hash names; the metrics of both loops are summed in one /metrics; a mailbox's
// min_gap holds whichever loop sends; every loop checks the one suppression list the primary
// loads; SIGHUP reaches every loop; SIGTERM drains every loop.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/address_hashes.h"
#include "tests/integration/fixtures/scripted_smtp_server.h"
#include "tests/integration/fixtures/smtp_sink.h"

using namespace deliverd::testing;

namespace {

constexpr int kMailPort = 2525;
constexpr int kWorkers = 2;
const std::string kAccount = "acct_1";

// The loop that owns a mailbox: FNV-1a-64 over account, a 0 byte and the mailbox id, mod N.
int worker_of(const std::string& account, const std::string& mailbox, int n = kWorkers) {
  uint64_t h = 14695981039346656037ULL;
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ULL;
  };
  for (unsigned char c : account) mix(c);
  mix(0);
  for (unsigned char c : mailbox) mix(c);
  return static_cast<int>(h % static_cast<uint64_t>(n));
}

// The first mailbox ids "<prefix>0", "<prefix>1", … that land on loop 0 and on loop 1, `each` of
// each: ids[w] are the ones of loop w.
std::vector<std::vector<std::string>> mailboxes_per_loop(const std::string& prefix, size_t each) {
  std::vector<std::vector<std::string>> ids(kWorkers);
  for (int i = 0; i < 1000; ++i) {
    std::string id = prefix + std::to_string(i);
    auto& mine = ids[static_cast<size_t>(worker_of(kAccount, id))];
    if (mine.size() < each) mine.push_back(id);
    if (ids[0].size() == each && ids[1].size() == each) break;
  }
  return ids;
}

// The fixture's config opens with the [daemon] table and TOML forbids a table twice: the key goes
// into that table rather than through extra_toml.
void set_workers(DeliverdProcess& d, int n) {
  std::string text = read_file(d.config_path());
  const std::string table = "[daemon]\n";
  auto at = text.find(table);
  ASSERT_EQ(at, 0u) << text;
  text.insert(at + table.size(), "workers = " + std::to_string(n) + "\n");
  write_file(d.config_path(), text);
}

std::vector<std::string> lines_of(const std::string& text, const std::string& event) {
  std::vector<std::string> out;
  const std::string needle = " event=" + event + " ";
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if ((line + " ").find(needle) != std::string::npos) out.push_back(line);
    start = end + 1;
  }
  return out;
}

// A field's value in a key=value log line ("" when it is not there).
std::string field(const std::string& line, const std::string& key) {
  const std::string needle = " " + key + "=";
  auto at = line.find(needle);
  if (at == std::string::npos) return {};
  at += needle.size();
  return line.substr(at, line.find(' ', at) - at);
}

bool wait_for_log(DeliverdProcess& d, const std::function<bool(const std::string&)>& found, int timeout_ms) {
  return wait_until([&] { return found(d.log()); }, timeout_ms);
}

bool has_line(const std::string& log, const std::string& event, const std::string& key, const std::string& value) {
  for (const auto& l : lines_of(log, event))
    if (field(l, key) == value) return true;
  return false;
}

// One series of /metrics, e.g. deliverd_worker_inflight{worker="1"} (-1 when absent).
double series(const DeliverdProcess& d, const std::string& name) {
  const std::string text = d.http_get("/metrics");
  const std::string needle = "\n" + name + " ";
  const size_t at = text.find(needle);
  return at == std::string::npos ? -1 : std::stod(text.substr(at + needle.size()));
}

// Which loops each mailbox's delivery lines name (worker=).
std::map<std::string, std::set<std::string>> loops_by_mailbox(const std::string& log) {
  std::map<std::string, std::set<std::string>> out;
  for (const auto& l : lines_of(log, "delivery")) out[field(l, "mailbox")].insert(field(l, "worker"));
  return out;
}

const std::string kDelivered = "deliverd_outcomes_total{status=\"delivered\",reason=\"delivered\"}";

}  // namespace

TEST(Workers, AMailboxStaysOnOneLoopAndMetricsSumBothLoops) {
  SmtpSink sink(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  set_workers(d, kWorkers);
  std::set<int> expected_loops;
  for (int m = 0; m < 8; ++m) {
    const std::string id = "m" + std::to_string(m);
    d.add_mailbox(id, kAccount, "alice@acme.example", sink.host(), kMailPort);
    expected_loops.insert(worker_of(kAccount, id));
  }
  ASSERT_EQ(expected_loops.size(), 2u) << "m0..m7 should hash onto both loops";
  d.start();

  std::vector<std::string> ids, jobs;
  for (int m = 0; m < 8; ++m)
    for (int i = 0; i < 20; ++i) {
      ids.push_back("w-m" + std::to_string(m) + "-" + std::to_string(i));
      jobs.push_back(make_job(ids.back(), kAccount, "m" + std::to_string(m), "r" + std::to_string(i) + "@example.org"));
    }
  stack.redis.xadd_jobs("deliverd:jobs", jobs);
  auto finals = wait_for_final_events(stack.redis, ids, 60000);
  size_t delivered = 0;
  for (const auto& id : ids) delivered += finals.count(id) && finals[id].status == "delivered";
  ASSERT_EQ(delivered, 160u) << d.log().substr(0, 6000);
  EXPECT_TRUE(sink.wait_for_messages(160, 10000));
  EXPECT_EQ(sink.message_count(), 160u);
  EXPECT_EQ(stack.redis.xpending_count("deliverd:jobs", "deliverd"), 0);

  const std::string log = d.log();
  auto started = lines_of(log, "workers");
  ASSERT_EQ(started.size(), 1u) << log.substr(0, 4000);
  EXPECT_EQ(field(started[0], "count"), "2") << started[0];

  // Every delivery line names its loop; a mailbox's lines all name the same one, the hash's.
  std::map<std::string, std::set<std::string>> loops_of;
  std::map<std::string, int> lines_per_mailbox;
  std::set<std::string> seen;
  for (const auto& l : lines_of(log, "delivery")) {
    const std::string mbx = field(l, "mailbox"), w = field(l, "worker");
    ASSERT_FALSE(w.empty()) << "no worker= on: " << l;
    loops_of[mbx].insert(w);
    ++lines_per_mailbox[mbx];
    seen.insert(w);
  }
  for (int m = 0; m < 8; ++m) {
    const std::string id = "m" + std::to_string(m);
    EXPECT_EQ(lines_per_mailbox[id], 20) << id;
    ASSERT_EQ(loops_of[id].size(), 1u) << id << " ran on more than one loop";
    EXPECT_EQ(*loops_of[id].begin(), std::to_string(worker_of(kAccount, id))) << id;
  }
  EXPECT_EQ(seen, (std::set<std::string>{"0", "1"}));

  // One /metrics for both loops: the loop count, each loop's in-flight gauge (back to 0), and the
  // delivered counter summed over both loops.
  EXPECT_EQ(d.metric("deliverd_workers"), 2);
  EXPECT_TRUE(wait_until([&] { return series(d, kDelivered) == 160; }, 5000)) << series(d, kDelivered);
  EXPECT_TRUE(wait_until(
      [&] {
        return series(d, "deliverd_worker_inflight{worker=\"0\"}") == 0 &&
               series(d, "deliverd_worker_inflight{worker=\"1\"}") == 0;
      },
      5000))
      << d.http_get("/metrics").substr(0, 200);
  const std::string metrics = d.http_get("/metrics");
  EXPECT_EQ(metrics.find("deliverd_worker_inflight{worker=\"2\"}"), std::string::npos);
  // A summed counter appears once, not once a loop.
  size_t times = 0;
  for (size_t at = metrics.find("\n" + kDelivered + " "); at != std::string::npos;
       at = metrics.find("\n" + kDelivered + " ", at + 1))
    ++times;
  EXPECT_EQ(times, 1u);
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

TEST(Workers, MinGapHoldsAcrossLoops) {
  SmtpSink sink(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack([](DeliverdProcess::Options& o) {
    o.policy_toml = "ramp_start = 100000\nramp_max = 1000000\nper_hour = 0\nper_minute = 0\nmin_gap_s = 2\njitter_s = 0\n";
  });
  auto& d = stack.daemon();
  set_workers(d, kWorkers);
  auto per_loop = mailboxes_per_loop("g", 1);
  const std::vector<std::string> boxes = {per_loop[0][0], per_loop[1][0]};
  for (const auto& b : boxes) d.add_mailbox(b, kAccount, "alice@acme.example", sink.host(), kMailPort);
  d.start();

  std::vector<std::string> ids, jobs;
  for (int i = 0; i < 3; ++i)
    for (const auto& b : boxes) {
      ids.push_back("gap-" + b + "-" + std::to_string(i));
      jobs.push_back(make_job(ids.back(), kAccount, b, "r" + std::to_string(i) + "@example.org"));
    }
  const long long t0 = now_ms();
  stack.redis.xadd_jobs("deliverd:jobs", jobs);
  auto finals = wait_for_final_events(stack.redis, ids, 20000);
  const long long took = now_ms() - t0;
  for (const auto& id : ids) {
    ASSERT_TRUE(finals.count(id)) << id << "\n" << d.log().substr(0, 6000);
    EXPECT_EQ(finals[id].status, "delivered") << id << " " << finals[id].reason << " " << finals[id].detail;
  }
  // Three sends 2 s apart a mailbox, the two mailboxes side by side: about 4 s (plus the retry
  // set's polling), not 12.
  EXPECT_LT(took, 12000);

  std::map<std::string, std::vector<int64_t>> sent_at;  // mailbox → delivered events' times
  std::map<std::string, int> gap_deferrals;
  for (const auto& ev : all_events(stack.redis)) {
    const std::string box = ev.job_id.substr(4, ev.job_id.rfind('-') - 4);
    if (ev.status == "delivered") sent_at[box].push_back(ev.entry_ms);
    if (ev.status == "deferred" && ev.detail.find("min_gap") != std::string::npos) ++gap_deferrals[box];
  }
  for (const auto& b : boxes) {
    auto& t = sent_at[b];
    ASSERT_EQ(t.size(), 3u) << b;
    std::sort(t.begin(), t.end());
    for (size_t i = 1; i < t.size(); ++i) EXPECT_GE(t[i] - t[i - 1], 1900) << b << " sends " << i - 1 << " and " << i;
    EXPECT_GE(gap_deferrals[b], 2) << b << ": the gap was the gate's (deferred for min_gap), not chance";
  }
  // And they were sent from the two loops.
  std::map<std::string, std::set<std::string>> loops_of;
  std::map<std::string, std::string> lines_by_box;
  for (const auto& l : lines_of(d.log(), "delivery")) {
    loops_of[field(l, "mailbox")].insert(field(l, "worker"));
    lines_by_box[field(l, "mailbox")] += l + "\n";
  }
  EXPECT_EQ(loops_of[boxes[0]], (std::set<std::string>{"0"})) << lines_by_box[boxes[0]];
  EXPECT_EQ(loops_of[boxes[1]], (std::set<std::string>{"1"})) << lines_by_box[boxes[1]];
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

// The suppression list is loaded once, by the primary, and every loop checks against it: rows
// there at start, a row added while running (its NOTIFY reaches the primary, which passes it on)
// and a row removed.
TEST(Workers, EveryLoopChecksTheOneSuppressionList) {
  SmtpSink sink(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  set_workers(d, kWorkers);
  auto per_loop = mailboxes_per_loop("s", 1);
  const std::vector<std::string> boxes = {per_loop[0][0], per_loop[1][0]};
  for (const auto& b : boxes) d.add_mailbox(b, kAccount, "alice@acme.example", sink.host(), kMailPort);
  auto suppress = [&](const std::string& address) { stack.pg.exec(plain_suppression_sql(kAccount, address)); };
  suppress("listed@example.org");
  d.start();

  // One job a mailbox to `to`; the final status of each, loop 0's first.
  int round = 0;
  auto send = [&](const std::string& to) {
    std::vector<std::string> ids, jobs;
    for (const auto& b : boxes) {
      ids.push_back("sup-" + std::to_string(round) + "-" + b);
      jobs.push_back(make_job(ids.back(), kAccount, b, to));
    }
    ++round;
    stack.redis.xadd_jobs("deliverd:jobs", jobs);
    auto finals = wait_for_final_events(stack.redis, ids, 20000);
    std::vector<std::string> out;
    for (const auto& id : ids) out.push_back(finals.count(id) ? finals[id].status : "none");
    return out;
  };
  const std::vector<std::string> both_suppressed = {"suppressed", "suppressed"};
  const std::vector<std::string> both_delivered = {"delivered", "delivered"};
  EXPECT_EQ(send("listed@example.org"), both_suppressed) << d.log().substr(0, 6000);
  EXPECT_EQ(send("later@example.org"), both_delivered);

  // A change is passed on right after the primary applies it, before any job it hands over later.
  const std::string inserts = "deliverd_policy_suppression_events_total{event=\"insert\"}";
  const std::string deletes = "deliverd_policy_suppression_events_total{event=\"delete\"}";
  suppress("later@example.org");
  ASSERT_TRUE(wait_until([&] { return series(d, inserts) >= 1; }, 5000)) << d.http_get("/metrics");
  EXPECT_EQ(send("later@example.org"), both_suppressed) << d.log().substr(0, 6000);
  stack.pg.exec("DELETE FROM suppressions WHERE address = 'listed@example.org'");
  ASSERT_TRUE(wait_until([&] { return series(d, deletes) >= 1; }, 5000)) << d.http_get("/metrics");
  EXPECT_EQ(send("listed@example.org"), both_delivered);

  // Which loop sent: the hash's, so loop 1 checked the list it did not load.
  auto loops_of = loops_by_mailbox(d.log());
  EXPECT_EQ(loops_of[boxes[1]], (std::set<std::string>{"1"}));
  // Loaded once for both loops, not once a loop.
  EXPECT_EQ(lines_of(d.log(), "policy_suppressions_loaded").size(), 1u) << d.log().substr(0, 6000);
  EXPECT_EQ(sink.message_count(), 4u);
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

// The mailboxes table is read by the primary only, and every loop sends with its rows: a mailbox
// added while running, and a mailbox whose server changes, on the loop that does not read.
TEST(Workers, EveryLoopSendsWithTheRowsThePrimaryReads) {
  SmtpSink first(SmtpSink::Options::at_mail_port(kMailPort));
  SmtpSink second(SmtpSink::Options::at_mail_port(kMailPort));
  ASSERT_NE(first.host(), second.host());
  DaemonStack stack;
  auto& d = stack.daemon();
  set_workers(d, kWorkers);
  auto per_loop = mailboxes_per_loop("d", 2);
  const std::string zero = per_loop[0][0], one = per_loop[1][0], added = per_loop[1][1];
  d.add_mailbox(zero, kAccount, "alice@acme.example", first.host(), kMailPort);
  d.add_mailbox(one, kAccount, "alice@acme.example", first.host(), kMailPort);
  d.start();

  auto send = [&](const std::string& id, const std::string& box) {
    stack.redis.xadd_jobs("deliverd:jobs", {make_job(id, kAccount, box, "r@example.org")});
    auto finals = wait_for_final_events(stack.redis, {id}, 20000);
    return finals.count(id) ? finals[id].status + " " + finals[id].reason : std::string("none");
  };
  EXPECT_EQ(send("j-zero", zero), "delivered delivered") << d.log().substr(0, 6000);
  EXPECT_EQ(send("j-one", one), "delivered delivered");
  EXPECT_TRUE(first.wait_for_messages(2, 5000));
  // The table was read once at start, by the primary, not once a loop.
  EXPECT_EQ(lines_of(d.log(), "mailboxes_loaded").size(), 1u) << d.log().substr(0, 6000);

  // Added while running, its job queued at once: loop 1 finds it (the primary's load reached it,
  // or loop 1 asked the primary to read the row).
  d.add_mailbox(added, kAccount, "alice@acme.example", second.host(), kMailPort);
  EXPECT_EQ(send("j-added", added), "delivered delivered") << d.log().substr(0, 6000);
  EXPECT_TRUE(second.wait_for_messages(1, 5000));

  // Moved to the second server: loop 1's next send goes there.
  const auto loads_before = lines_of(d.log(), "mailboxes_loaded").size();
  stack.pg.exec("UPDATE mailboxes SET smtp_host = '" + second.host() + "' WHERE id = '" + one + "'");
  ASSERT_TRUE(wait_until([&] { return lines_of(d.log(), "mailboxes_loaded").size() > loads_before; }, 5000));
  EXPECT_EQ(send("j-moved", one), "delivered delivered");
  EXPECT_TRUE(second.wait_for_messages(2, 5000));
  EXPECT_EQ(first.message_count(), 2u);

  auto loops_of = loops_by_mailbox(d.log());
  EXPECT_EQ(loops_of[one], (std::set<std::string>{"1"}));
  EXPECT_EQ(loops_of[added], (std::set<std::string>{"1"}));
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

TEST(Workers, ReloadReachesEveryLoop) {
  SmtpSink sink(SmtpSink::Options::at_mail_port(kMailPort));
  DaemonStack stack;
  auto& d = stack.daemon();
  set_workers(d, kWorkers);
  // Per loop: one mailbox used before the reload, one after.
  auto per_loop = mailboxes_per_loop("r", 2);
  for (const auto& loop : per_loop)
    for (const auto& b : loop) d.add_mailbox(b, kAccount, "alice@acme.example", sink.host(), kMailPort);
  d.start();

  auto send = [&](const std::string& id, const std::string& box) {
    stack.redis.xadd_job("deliverd:jobs", make_job(id, kAccount, box, id + "@example.org"));
    return wait_for_event(stack.redis, id, 20000);
  };
  // Before: min_gap_s = 0, two jobs in a row of one mailbox both go out at once, on either loop.
  for (int w = 0; w < kWorkers; ++w) {
    const std::string& box = per_loop[static_cast<size_t>(w)][0];
    for (int i = 0; i < 2; ++i) {
      ResultEvent e = send("before-" + box + "-" + std::to_string(i), box);
      EXPECT_EQ(e.status, "delivered") << box << " " << e.reason << " " << e.detail;
    }
  }

  // The new file: a 60 s gap between two sends of a mailbox, and workers = 3 (not changed by a
  // reload: the daemon keeps its two loops).
  ASSERT_TRUE(replace_in_file(d.config_path(), "min_gap_s = 0", "min_gap_s = 60")) << read_file(d.config_path());
  ASSERT_TRUE(replace_in_file(d.config_path(), "workers = 2", "workers = 3")) << read_file(d.config_path());
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, [](const std::string& log) { return !lines_of(log, "reloaded").empty(); }, 10000))
      << d.log();
  ASSERT_TRUE(wait_for_log(
      d, [](const std::string& log) { return has_line(log, "worker_reloaded", "worker", "1"); }, 10000))
      << d.log();
  EXPECT_TRUE(d.running());
  EXPECT_EQ(d.metric("deliverd_workers"), 2);

  // After: on each loop, a fresh mailbox's first job goes out and its second waits for the gap
  // the reloaded [policy] gives, so loop 1's gate has the new value too.
  for (int w = 0; w < kWorkers; ++w) {
    const std::string& box = per_loop[static_cast<size_t>(w)][1];
    ResultEvent first = send("after-" + box + "-0", box);
    EXPECT_EQ(first.status, "delivered") << box << " " << first.reason << " " << first.detail;
    ResultEvent second = send("after-" + box + "-1", box);
    EXPECT_EQ(second.status, "deferred") << "loop " << w << " " << box << " " << second.reason << " " << second.detail;
    EXPECT_NE(second.detail.find("min_gap"), std::string::npos) << "loop " << w << ": " << second.detail;
    EXPECT_FALSE(second.next_attempt_at.empty());
  }
  // The jobs after the reload ran on their mailboxes' loops (the loop count did not change).
  auto loops_of = loops_by_mailbox(d.log());
  for (int w = 0; w < kWorkers; ++w)
    for (const auto& b : per_loop[static_cast<size_t>(w)])
      EXPECT_EQ(loops_of[b], (std::set<std::string>{std::to_string(w)})) << b;
  EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
}

TEST(Workers, SigtermDrainsEveryLoop) {
  // Every message's "." is answered after a second: SIGTERM comes while both loops have
  // sessions in the middle of a transaction.
  ScriptedSmtpServer::Options so;
  so.host = free_loopback_ip(kMailPort);
  so.port = kMailPort;
  ScriptedSmtpServer server(R"({"steps": {"DOT": {"reply": "250 2.0.0 queued", "delay_ms": 1000}}})", so);
  DaemonStack stack;
  auto& d = stack.daemon();
  set_workers(d, kWorkers);
  auto per_loop = mailboxes_per_loop("s", 2);
  std::vector<std::string> boxes;
  for (const auto& loop : per_loop)
    for (const auto& b : loop) {
      boxes.push_back(b);
      d.add_mailbox(b, kAccount, "alice@acme.example", server.host(), kMailPort);
    }
  d.start();

  std::vector<std::string> ids, jobs;
  for (int i = 0; i < 3; ++i)
    for (const auto& b : boxes) {
      ids.push_back("term-" + b + "-" + std::to_string(i));
      jobs.push_back(make_job(ids.back(), kAccount, b, "r" + std::to_string(i) + "@example.org"));
    }
  stack.redis.xadd_jobs("deliverd:jobs", jobs);
  ASSERT_TRUE(wait_until(
      [&] {
        return series(d, "deliverd_worker_inflight{worker=\"0\"}") > 0 &&
               series(d, "deliverd_worker_inflight{worker=\"1\"}") > 0;
      },
      10000))
      << "both loops never had a job in flight\n"
      << d.http_get("/metrics").substr(0, 300) << d.log();
  ASSERT_TRUE(wait_until(
      [&] {
        auto c = server.commands();
        return std::count(c.begin(), c.end(), "DATA") >= 2;
      },
      10000));
  const size_t before = all_events(stack.redis).size();
  ASSERT_LT(before, ids.size()) << "everything finished before SIGTERM";

  const long long t0 = now_ms();
  EXPECT_EQ(d.stop(SIGTERM, 30000), 0) << d.log();
  EXPECT_LT(now_ms() - t0, 20000);

  // Every job has an outcome; nothing is left pending in the group; what was deferred waits in
  // the retry set.
  auto latest = events_by_job(stack.redis);
  size_t delivered = 0, deferred = 0;
  for (const auto& id : ids) {
    ASSERT_TRUE(latest.count(id)) << id << " has no outcome\n" << d.log();
    const auto& e = latest[id];
    EXPECT_TRUE(e.status == "delivered" || e.status == "deferred") << id << " " << e.status << " " << e.reason;
    delivered += e.status == "delivered";
    deferred += e.status == "deferred";
  }
  EXPECT_GT(delivered, 0u);
  EXPECT_EQ(stack.redis.xpending_count("deliverd:jobs", "deliverd"), 0);
  EXPECT_EQ(stack.redis.integer({"ZCARD", "deliverd:retry"}), static_cast<long long>(deferred));
  EXPECT_EQ(server.message_count(), delivered);

  // Both loops drained: each began to (a draining line a loop), loop 1 stopped with exit code 0
  // once its deliveries had ended, then the primary did; none had to be cut short.
  const std::string log = d.log();
  const std::string tail = log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
  EXPECT_EQ(lines_of(log, "draining").size(), 2u) << tail;
  EXPECT_TRUE(has_line(log, "worker_stopped", "worker", "1")) << tail;
  for (const auto& l : lines_of(log, "worker_stopped")) EXPECT_EQ(field(l, "exit_code"), "0") << l;
  auto stopped = lines_of(log, "stopped");
  ASSERT_EQ(stopped.size(), 1u) << tail;
  EXPECT_EQ(field(stopped[0], "exit_code"), "0");
  EXPECT_LT(log.find("event=worker_stopped"), log.find("event=stopped ")) << "the primary stopped before loop 1";
  EXPECT_TRUE(lines_of(log, "drain_timeout").empty()) << tail;
}
