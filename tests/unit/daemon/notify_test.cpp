#include "daemon/notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/integration/fixtures/process.h"

using deliverd::daemon::Notifier;
namespace dt = deliverd::testing;

namespace {

struct Message {
  long long at_ms;
  std::string text;
  std::string kind() const { return text.substr(0, text.find('=')); }
};

// Plays systemd's part: a datagram socket at NOTIFY_SOCKET that records every notification.
class FakeSystemd {
 public:
  explicit FakeSystemd(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
    bound_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  }
  ~FakeSystemd() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool bound() const { return bound_; }
  int fd() const { return fd_; }
  // Reads everything queued now; the sender writes synchronously, so all it sent so far is here.
  void drain() {
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0) return;
      messages.push_back({dt::now_ms(), std::string(buf, static_cast<size_t>(n))});
    }
  }
  std::vector<Message> messages;

 private:
  int fd_ = -1;
  bool bound_ = false;
};

class NotifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    ASSERT_TRUE(systemd_.bound());
    ::setenv("NOTIFY_SOCKET", sock_path_.c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  void enable_watchdog(const char* usec) {
    ::setenv("WATCHDOG_USEC", usec, 1);
    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  }

  uv_loop_t loop_{};
  dt::TempDir dir_{"deliverd-notify"};
  std::string sock_path_ = dir_.file("notify.sock");
  FakeSystemd systemd_{sock_path_};
};

// Runs `fn` once on the loop after `ms`; the timer frees itself.
void after(uv_loop_t* loop, uint64_t ms, std::function<void()> fn) {
  struct Once {
    uv_timer_t t;
    std::function<void()> fn;
  };
  auto* o = new Once{{}, std::move(fn)};
  uv_timer_init(loop, &o->t);
  o->t.data = o;
  uv_timer_start(
      &o->t,
      [](uv_timer_t* t) {
        auto* self = static_cast<Once*>(t->data);
        self->fn();
        uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete static_cast<Once*>(h->data); });
      },
      ms, 0);
}

size_t count_kind(const std::vector<Message>& m, size_t from, size_t to, const std::string& kind) {
  size_t n = 0;
  for (size_t i = from; i < to && i < m.size(); ++i) n += m[i].kind() == kind;
  return n;
}

size_t index_of(const std::vector<Message>& m, const std::string& kind, size_t from = 0) {
  for (size_t i = from; i < m.size(); ++i)
    if (m[i].kind() == kind) return i;
  return m.size();
}

}  // namespace

TEST_F(NotifierTest, LifecycleArrivesInOrderAndWatchdogStopsWhileLoopIsBlocked) {
  enable_watchdog("200000");
  Notifier* n = Notifier::open(&loop_);
  ASSERT_TRUE(n->watchdog_enabled());
  EXPECT_EQ(n->watchdog_interval_usec(), 200000u);

  uv_poll_t poll{};
  poll.data = &systemd_;
  uv_poll_init(&loop_, &poll, systemd_.fd());
  uv_poll_start(&poll, UV_READABLE, [](uv_poll_t* p, int, int) { static_cast<FakeSystemd*>(p->data)->drain(); });

  size_t before_block = 0, after_block = 0;
  long long block_start = 0, block_end = 0;

  n->ready("connected to redis and postgres");
  after(&loop_, 30, [&] { n->status("sessions=0 inflight=0 lag=0"); });
  after(&loop_, 600, [&] {
    systemd_.drain();
    before_block = systemd_.messages.size();
    block_start = dt::now_ms();
    // A stalled event loop: the watchdog must go quiet, since pings come only from the loop.
    std::this_thread::sleep_for(std::chrono::seconds(1));
    block_end = dt::now_ms();
    systemd_.drain();
    after_block = systemd_.messages.size();
    n->reloading();
    n->ready("configuration reloaded");
    after(&loop_, 500, [&] {
      n->stopping();
      after(&loop_, 300, [&] {
        systemd_.drain();
        n->close();
        uv_close(reinterpret_cast<uv_handle_t*>(&poll), nullptr);
      });
    });
  });
  uv_run(&loop_, UV_RUN_DEFAULT);

  const auto& m = systemd_.messages;
  ASSERT_GE(m.size(), 6u);
  EXPECT_EQ(m[0].text, "READY=1\nSTATUS=connected to redis and postgres");
  EXPECT_EQ(m[1].text, "STATUS=sessions=0 inflight=0 lag=0");

  // Pings while the loop is healthy (every 100 ms for WATCHDOG_USEC=200 ms; a loaded machine may
  // delay some, so only "more than one" is asserted).
  EXPECT_GE(count_kind(m, 0, before_block, "WATCHDOG"), 2u);
  // Nothing was sent while the loop slept.
  EXPECT_EQ(after_block, before_block);
  EXPECT_GE(block_end - block_start, 1000);

  size_t reload = index_of(m, "RELOADING", after_block);
  ASSERT_LT(reload, m.size());
  EXPECT_NE(m[reload].text.find("\nMONOTONIC_USEC="), std::string::npos);
  ASSERT_LT(reload + 1, m.size());
  EXPECT_EQ(m[reload + 1].text, "READY=1\nSTATUS=configuration reloaded");

  size_t stop = index_of(m, "STOPPING", reload);
  ASSERT_LT(stop, m.size());
  EXPECT_EQ(m[stop].text, "STOPPING=1\nSTATUS=draining in-flight deliveries");
  // The loop recovered, so the pings resumed between the reload and the drain ...
  EXPECT_GE(count_kind(m, reload, stop, "WATCHDOG"), 1u);
  // ... and stopped with STOPPING=1 (the drain is bounded by TimeoutStopSec instead).
  EXPECT_EQ(count_kind(m, stop, m.size(), "WATCHDOG"), 0u);

  // Loosely by the clock too: the last ping before the stall and the first after it are at
  // least the stall apart.
  long long last_before = -1, first_after = -1;
  for (size_t i = 0; i < before_block; ++i)
    if (m[i].kind() == "WATCHDOG") last_before = m[i].at_ms;
  for (size_t i = after_block; i < m.size(); ++i)
    if (m[i].kind() == "WATCHDOG") {
      first_after = m[i].at_ms;
      break;
    }
  ASSERT_GE(last_before, 0);
  ASSERT_GE(first_after, 0);
  EXPECT_GE(first_after - last_before, 1000);
}

TEST_F(NotifierTest, WatchdogOffWhenPidIsAnotherProcess) {
  ::setenv("WATCHDOG_USEC", "200000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
  Notifier* n = Notifier::open(&loop_);
  EXPECT_FALSE(n->watchdog_enabled());
  n->status("multi\nline");
  n->close();
  uv_run(&loop_, UV_RUN_DEFAULT);
  systemd_.drain();
  ASSERT_EQ(systemd_.messages.size(), 1u);
  EXPECT_EQ(systemd_.messages[0].text, "STATUS=multi line");
}

TEST(NotifierNoSystemd, CallsAreHarmlessWithoutNotifySocket) {
  ::unsetenv("NOTIFY_SOCKET");
  uv_loop_t loop;
  uv_loop_init(&loop);
  Notifier* n = Notifier::open(&loop);
  EXPECT_FALSE(n->watchdog_enabled());
  n->ready("x");
  n->reloading();
  n->stopping();
  n->close();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(NotifierStatus, RunningStatusSaysWhatTheDaemonIsDoing) {
  EXPECT_EQ(deliverd::daemon::running_status(12, 40, 1.46), "delivering: 12 SMTP sessions, 40 jobs in flight, queue lag 1.5s");
  EXPECT_EQ(deliverd::daemon::running_status(0, 0, -1), "delivering: 0 SMTP sessions, 0 jobs in flight, queue lag 0.0s");
}
