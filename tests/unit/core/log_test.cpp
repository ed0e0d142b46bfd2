#include "core/log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include <gtest/gtest.h>

using namespace deliverd::core;

namespace {

int64_t g_mono = 1'000'000;
int64_t fake_mono() { return g_mono; }
// 2026-12-06T16:45:57.123Z
int64_t fake_wall() { return 1'796'575'557'123; }

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    out.push_back(s.substr(start, nl - start));
    start = nl == std::string::npos ? s.size() : nl + 1;
  }
  return out;
}

// Every test starts from the defaults with a fixed clock and no rate-limit history.
class Log : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("JOURNAL_STREAM");
    g_mono = 1'000'000;
    detail::set_log_clocks_for_test(fake_mono, fake_wall);
    set_log_level(LogLevel::Info);
    set_log_format(LogFormat::KeyValue);
    set_log_timestamps(LogTimestamps::Never);
    set_log_repeat_limit(kLogRepeatLimit);
    set_log_rate_limit_exempt({"delivery", "job_dead_lettered", "job_already_delivered", "unsubscribed"});
  }
  void TearDown() override {
    ::unsetenv("JOURNAL_STREAM");
    detail::set_log_clocks_for_test(nullptr, nullptr);
    set_log_format(LogFormat::KeyValue);
    set_log_timestamps(LogTimestamps::Auto);
  }
};

}  // namespace

TEST_F(Log, ParsesLevelNames) {
  LogLevel l;
  ASSERT_TRUE(parse_log_level("warn", l));
  EXPECT_EQ(l, LogLevel::Warn);
  EXPECT_FALSE(parse_log_level("loud", l));
}

TEST_F(Log, ParsesFormatNames) {
  LogFormat f;
  ASSERT_TRUE(parse_log_format("json", f));
  EXPECT_EQ(f, LogFormat::Json);
  ASSERT_TRUE(parse_log_format("kv", f));
  EXPECT_EQ(f, LogFormat::KeyValue);
  EXPECT_FALSE(parse_log_format("xml", f));
}

TEST_F(Log, OneEventIsOneLineEvenWithNewlinesInValues) {
  testing::internal::CaptureStderr();
  log_info("reply", {{"text", "line1\nline2"}, {"plain", "ok"}});
  std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out, "level=info event=reply text=\"line1\\nline2\" plain=ok\n");
}

TEST_F(Log, BelowTheLevelNothingIsWritten) {
  set_log_level(LogLevel::Warn);
  testing::internal::CaptureStderr();
  log_info("chatty");
  log_debug("chattier");
  log_error("bad");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "level=error event=bad\n");
}

TEST_F(Log, OutsideJournaldAnRfc3339TimestampComesFirst) {
  set_log_timestamps(LogTimestamps::Auto);
  testing::internal::CaptureStderr();
  log_info("started", {{"version", "0.1.0"}});
  EXPECT_EQ(testing::internal::GetCapturedStderr(),
            "ts=2026-12-06T16:45:57.123Z level=info event=started version=0.1.0\n");
}

int64_t g_wall_ms = 0;
int64_t settable_wall() { return g_wall_ms; }

// ts= is formatted by hand (no gmtime_r or snprintf per line): it agrees with the C library's
// calendar on leap days, century years and a spread of instants up to year 9999.
TEST_F(Log, TheHandFormattedTimestampAgreesWithTheCalendar) {
  set_log_timestamps(LogTimestamps::Always);
  detail::set_log_clocks_for_test(fake_mono, settable_wall);
  std::vector<int64_t> instants = {0, 951'782'400'000, 951'868'799'999, 4'102'444'800'000, 1'796'575'557'123,
                                   253'402'300'799'999};
  uint64_t x = 88172645463325252ull;  // xorshift: a fixed spread, the same on every run
  for (int i = 0; i < 2000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    instants.push_back(static_cast<int64_t>(x % 253'402'300'800'000ull));
  }
  for (int64_t ms : instants) {
    g_wall_ms = ms;
    detail::set_log_clocks_for_test(fake_mono, settable_wall);  // and forgets the rate limit
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char want[64];
    std::strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms % 1000));
    testing::internal::CaptureStderr();
    log_info("tick");
    ASSERT_EQ(testing::internal::GetCapturedStderr(), "ts=" + std::string(want) + frac + " level=info event=tick\n")
        << ms;
  }
}

TEST_F(Log, UnderJournaldNoOwnTimestamp) {
  testing::internal::CaptureStderr();
  // What systemd sets for a service whose stderr is the journal: device:inode of that stream.
  struct stat st {};
  ASSERT_EQ(::fstat(2, &st), 0);
  std::string js = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  ::setenv("JOURNAL_STREAM", js.c_str(), 1);
  EXPECT_TRUE(stderr_is_journal());
  set_log_timestamps(LogTimestamps::Auto);
  log_info("started");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "level=info event=started\n");
}

TEST_F(Log, InheritedJournalStreamOfAnotherFileStillGetsTimestamps) {
  ::setenv("JOURNAL_STREAM", "1:1", 1);
  EXPECT_FALSE(stderr_is_journal());
  set_log_timestamps(LogTimestamps::Auto);
  testing::internal::CaptureStderr();
  log_info("started");
  EXPECT_EQ(testing::internal::GetCapturedStderr().rfind("ts=2026-12-06T16:45:57.123Z ", 0), 0u);
}

TEST_F(Log, JsonIsOneObjectPerLineWithEscapedValues) {
  set_log_format(LogFormat::Json);
  set_log_timestamps(LogTimestamps::Always);
  testing::internal::CaptureStderr();
  log_warn("delivery", {{"job", "j-1"}, {"reply", "550 5.1.1 \"no\"\nuser"}});
  log_info("second");
  auto ls = lines(testing::internal::GetCapturedStderr());
  ASSERT_EQ(ls.size(), 2u);
  EXPECT_EQ(ls[0],
            R"({"ts":"2026-12-06T16:45:57.123Z","level":"warn","event":"delivery","job":"j-1",)"
            R"("reply":"550 5.1.1 \"no\"\nuser"})");
  EXPECT_EQ(ls[1], R"({"ts":"2026-12-06T16:45:57.123Z","level":"info","event":"second"})");
}

TEST_F(Log, RepeatsBeyondTheLimitAreSuppressedAndCounted) {
  testing::internal::CaptureStderr();
  for (int i = 0; i < kLogRepeatLimit + 50; ++i) log_warn("connect_failed", {{"host", "mx.example"}});
  // Another event and another level of the same event have their own budgets.
  log_info("connect_failed");
  log_warn("other");
  g_mono += 1500;
  log_warn("connect_failed", {{"host", "mx.example"}});
  auto ls = lines(testing::internal::GetCapturedStderr());
  size_t plain = 0;
  for (const auto& l : ls) plain += l == "level=warn event=connect_failed host=mx.example";
  EXPECT_EQ(plain, static_cast<size_t>(kLogRepeatLimit) + 1);
  ASSERT_GE(ls.size(), static_cast<size_t>(kLogRepeatLimit) + 4);
  EXPECT_EQ(ls[kLogRepeatLimit], "level=info event=connect_failed");
  EXPECT_EQ(ls[kLogRepeatLimit + 1], "level=warn event=other");
  EXPECT_EQ(ls[kLogRepeatLimit + 2], "level=warn event=log_suppressed suppressed_event=connect_failed count=50");
  EXPECT_EQ(ls.back(), "level=warn event=connect_failed host=mx.example");
}

TEST_F(Log, SuppressedCountIsReportedEvenIfTheEventNeverComesBack) {
  testing::internal::CaptureStderr();
  for (int i = 0; i < kLogRepeatLimit + 7; ++i) log_error("redis_down");
  g_mono += 2000;
  log_info("unrelated");
  flush_log_suppressed(true);
  auto ls = lines(testing::internal::GetCapturedStderr());
  ASSERT_EQ(ls.size(), static_cast<size_t>(kLogRepeatLimit) + 2);
  EXPECT_EQ(ls[kLogRepeatLimit], "level=error event=log_suppressed suppressed_event=redis_down count=7");
  EXPECT_EQ(ls[kLogRepeatLimit + 1], "level=info event=unrelated");
}

TEST_F(Log, ForcedFlushReportsAnOpenWindowInJson) {
  set_log_format(LogFormat::Json);
  testing::internal::CaptureStderr();
  for (int i = 0; i < kLogRepeatLimit + 3; ++i) log_info("tick");
  flush_log_suppressed(true);
  auto ls = lines(testing::internal::GetCapturedStderr());
  ASSERT_EQ(ls.size(), static_cast<size_t>(kLogRepeatLimit) + 1);
  EXPECT_EQ(ls.back(), R"({"level":"info","event":"log_suppressed","suppressed_event":"tick","count":3})");
}

TEST_F(Log, PerJobRecordsAreNeverSuppressed) {
  testing::internal::CaptureStderr();
  for (int i = 0; i < kLogRepeatLimit * 3; ++i) log_info("delivery", {{"job", "j"}});
  flush_log_suppressed(true);
  auto ls = lines(testing::internal::GetCapturedStderr());
  EXPECT_EQ(ls.size(), static_cast<size_t>(kLogRepeatLimit) * 3);
  for (const auto& l : ls) EXPECT_EQ(l, "level=info event=delivery job=j");
}

TEST_F(Log, ExemptListAndLimitAreConfigurable) {
  set_log_rate_limit_exempt({"flood"});
  set_log_repeat_limit(2);
  testing::internal::CaptureStderr();
  for (int i = 0; i < 5; ++i) log_info("flood");
  for (int i = 0; i < 5; ++i) log_info("delivery");
  flush_log_suppressed(true);
  auto ls = lines(testing::internal::GetCapturedStderr());
  ASSERT_EQ(ls.size(), 8u);
  EXPECT_EQ(ls[5], "level=info event=delivery");
  EXPECT_EQ(ls[6], "level=info event=delivery");
  EXPECT_EQ(ls[7], "level=info event=log_suppressed suppressed_event=delivery count=3");

  set_log_repeat_limit(0);
  testing::internal::CaptureStderr();
  for (int i = 0; i < 5; ++i) log_info("delivery");
  EXPECT_EQ(lines(testing::internal::GetCapturedStderr()).size(), 5u);
}

// A reader that stops reading (a stalled journald, a full pipe) must not stop the caller: the
// lines it cannot take are dropped and counted, and once it reads again every line it gets is
// whole and one line says how many were dropped.
TEST_F(Log, AStalledStderrNeverBlocksAndDroppedLinesAreCountedAndReported) {
  set_log_repeat_limit(0);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  const int saved = ::dup(2);
  ASSERT_GE(saved, 0);
  ASSERT_EQ(::dup2(p[1], 2), 2);

  const uint64_t dropped_before = log_lines_dropped();
  const std::string filler(100, 'x');
  const int total = 30000;  // ~3.5 MB: the pipe's 64 KiB and the 1 MiB buffer both overflow
  for (int i = 0; i < total; ++i) log_info("filler", {{"n", std::to_string(i)}, {"pad", filler}});
  const uint64_t dropped = log_lines_dropped() - dropped_before;
  EXPECT_GT(dropped, 0u);

  // The reader catches up: read until the buffer has drained and the report has been written.
  ASSERT_EQ(::fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
  std::string out;
  char buf[65536];
  for (int rounds = 0; rounds < 100000; ++rounds) {
    ssize_t n;
    while ((n = ::read(p[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    if (flush_log() && out.find("event=log_lines_dropped") != std::string::npos) break;
  }
  while (true) {
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ASSERT_EQ(::dup2(saved, 2), 2);
  ::close(saved);
  ::close(p[0]);
  ::close(p[1]);

  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  int fillers = 0, last_n = -1;
  std::string report;
  for (const auto& l : lines(out)) {
    if (l.rfind("level=info event=filler n=", 0) == 0) {
      const int n = std::stoi(l.substr(26));
      EXPECT_GT(n, last_n) << "lines keep their order";
      last_n = n;
      EXPECT_EQ(l, "level=info event=filler n=" + std::to_string(n) + " pad=" + filler) << "a whole line";
      ++fillers;
    } else {
      EXPECT_EQ(report, "") << "one report only";
      report = l;
    }
  }
  EXPECT_EQ(report, "level=warn event=log_lines_dropped count=" + std::to_string(dropped));
  EXPECT_EQ(static_cast<uint64_t>(fillers) + dropped, static_cast<uint64_t>(total));
}
