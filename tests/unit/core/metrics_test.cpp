#include "core/metrics.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

using deliverd::core::Registry;

TEST(Metrics, CounterWithLabelsRendersOneLinePerChild) {
  Registry r;
  auto& f = r.counter("deliverd_outcomes_total", "Outcomes by status", {"status"});
  f.with({"delivered"}).inc();
  f.with({"delivered"}).inc(2);
  f.with({"bounced"}).inc();
  std::string text = r.render();
  EXPECT_NE(text.find("# TYPE deliverd_outcomes_total counter"), std::string::npos);
  EXPECT_NE(text.find("deliverd_outcomes_total{status=\"delivered\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("deliverd_outcomes_total{status=\"bounced\"} 1\n"), std::string::npos);
}

TEST(Metrics, HistogramBucketsAreCumulativeAndEndWithInf) {
  Registry r;
  auto& h = r.histogram("d_seconds", "Durations", {0.1, 1, 10}).get();
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  h.observe(50);
  std::string text = r.render();
  EXPECT_NE(text.find("d_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("d_seconds_bucket{le=\"1\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("d_seconds_bucket{le=\"10\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("d_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("d_seconds_count 4\n"), std::string::npos);
}

TEST(Metrics, LabelValuesAreEscaped) {
  Registry r;
  r.counter("x_total", "x", {"reason"}).with({"say \"hi\"\n"}).inc();
  EXPECT_NE(r.render().find("x_total{reason=\"say \\\"hi\\\"\\n\"} 1"), std::string::npos);
}

TEST(Metrics, WrongLabelCountIsALogicError) {
  Registry r;
  auto& f = r.counter("y_total", "y", {"a", "b"});
  EXPECT_THROW(f.with({"only-one"}), std::logic_error);
}

TEST(Metrics, QuantileInterpolatesWithinBucket) {
  Registry r;
  auto& h = r.histogram("q_seconds", "q", {1, 2}).get();
  for (int i = 0; i < 100; ++i) h.observe(1.5);
  EXPECT_GT(h.quantile(0.5), 1.0);
  EXPECT_LE(h.quantile(0.99), 2.0);
}

TEST(Metrics, SeriesThatNameATenantAreForOperatorsOnly) {
  deliverd::core::Registry r;
  r.gauge("t_breaker", "per mailbox", {"account", "mailbox"}).with({"acct_1", "mbx_1"}).set(2);
  r.counter("t_by_account", "per account", {"account"}).with({"acct_1"}).inc();
  r.counter("t_outcomes", "aggregate", {"status"}).with({"delivered"}).inc();
  const std::string all = r.render();
  EXPECT_NE(all.find("t_breaker{account=\"acct_1\",mailbox=\"mbx_1\"} 2"), std::string::npos) << all;
  EXPECT_NE(all.find("t_by_account{account=\"acct_1\"} 1"), std::string::npos);
  const std::string open = r.render(deliverd::core::Registry::Audience::Public);
  EXPECT_EQ(open.find("t_breaker"), std::string::npos) << open;
  EXPECT_EQ(open.find("acct_1"), std::string::npos) << open;
  EXPECT_NE(open.find("t_outcomes{status=\"delivered\"} 1"), std::string::npos) << open;
}

// [daemon] workers: every loop adds to the same registry, and /metrics may render meanwhile.
TEST(Metrics, LoopsOnOtherThreadsAddUpAndRenderWhileTheyRun) {
  Registry r;
  auto& counters = r.counter("deliverd_test_total", "t", {"loop"});
  auto& hist = r.histogram("deliverd_test_seconds", "t", {0.1, 1});
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        counters.with({"shared"}).inc();
        counters.with({"own-" + std::to_string(t % 2)}).inc();  // children made from two threads at once
        hist.get().observe(0.05);
      }
    });
  std::string during;
  for (int i = 0; i < 50; ++i) during = r.render();  // no torn map: the loops insert children meanwhile
  for (auto& th : threads) th.join();
  std::string text = r.render();
  EXPECT_NE(text.find("deliverd_test_total{loop=\"shared\"} 80000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("deliverd_test_total{loop=\"own-0\"} 40000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("deliverd_test_total{loop=\"own-1\"} 40000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("deliverd_test_seconds_bucket{le=\"0.1\"} 80000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("deliverd_test_seconds_count 80000\n"), std::string::npos) << text;
  EXPECT_FALSE(during.empty());
}

// A worker loop holds its own copy of what the primary's scrape-time gauges read; reading it from
// the rendering thread would race, so its registrations are ignored.
TEST(Metrics, FnGaugesRegisteredOnAWorkerThreadAreIgnored) {
  Registry r;
  r.gauge_fn("deliverd_test_loaded", "t", [] { return 7.0; });
  std::thread([&r] {
    Registry::skip_fn_gauges_on_this_thread();
    r.gauge_fn("deliverd_test_loaded", "t", [] { return 99.0; });
  }).join();
  std::string text = r.render();
  EXPECT_NE(text.find("deliverd_test_loaded 7\n"), std::string::npos) << text;
}
