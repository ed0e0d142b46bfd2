// Issue 9: the daemon's side of sd_notify, with this test playing systemd: it listens on
// NOTIFY_SOCKET and checks READY, STATUS, WATCHDOG, RELOADING and STOPPING arrive in order, and
// that the watchdog pings stop while the daemon cannot run (SIGSTOP). That a blocked *loop* stops
// them is daemon_unit_test's notify test (the pings come from a loop timer).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <thread>

#include "tests/integration/daemon/deliverd_process.h"

using namespace deliverd::testing;

namespace {

class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind notify socket");
  }
  ~NotifySocket() { ::close(fd_); }
  using Messages = std::vector<std::pair<long long, std::string>>;
  // Every datagram that arrives within ms, with its arrival time.
  Messages collect(int ms) {
    return collect_until([](const Messages&) { return false; }, ms);
  }
  // Datagrams until `enough` holds for what arrived (or timeout_ms passes: a generous bound, so
  // a loaded machine only makes it slower).
  Messages collect_until(const std::function<bool(const Messages&)>& enough, int timeout_ms = 30000) {
    Messages out;
    long long deadline = now_ms() + timeout_ms;
    for (long long left = timeout_ms; left > 0 && !enough(out); left = deadline - now_ms()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) out.emplace_back(now_ms(), std::string(buf, static_cast<size_t>(n)));
    }
    return out;
  }
  // What is queued now, without waiting.
  Messages drain() {
    Messages out;
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT)) > 0;)
      out.emplace_back(now_ms(), std::string(buf, static_cast<size_t>(n)));
    return out;
  }

 private:
  int fd_ = -1;
};

size_t count_with(const std::vector<std::pair<long long, std::string>>& msgs, const std::string& needle) {
  size_t n = 0;
  for (const auto& m : msgs) n += m.second.find(needle) != std::string::npos;
  return n;
}

}  // namespace

TEST(SystemdNotify, ReadyStatusWatchdogReloadingStoppingInOrder) {
  TempDir dir("deliverd-notify");
  const std::string path = dir.file("notify.sock");
  NotifySocket sock(path);
  DaemonStack stack([&](DeliverdProcess::Options& o) {
    o.env = {{"NOTIFY_SOCKET", path}, {"WATCHDOG_USEC", "300000"}};
  });
  auto& d = stack.daemon();
  d.start();

  // The watchdog pings start with the loop, so they may come before READY; nothing else may.
  auto first = sock.collect_until([](const NotifySocket::Messages& m) {
    return count_with(m, "READY=1") >= 1 && count_with(m, "WATCHDOG=1") >= 2;
  });
  size_t first_ready = 0;
  while (first_ready < first.size() && first[first_ready].second.find("READY=1") == std::string::npos) {
    EXPECT_EQ(first[first_ready].second, "WATCHDOG=1");
    ++first_ready;
  }
  ASSERT_LT(first_ready, first.size()) << "no READY=1\n" << d.log();
  EXPECT_NE(first[first_ready].second.find("STATUS="), std::string::npos) << first[first_ready].second;
  EXPECT_GE(count_with(first, "WATCHDOG=1"), 2u);  // every 150 ms while the loop runs

  // Stopped, the daemon sends nothing; resumed, the pings come back.
  // Once the kernel has stopped it, whatever it sent before is queued here already (a datagram
  // is in the receiver's queue when send returns): drained, the window that follows, several
  // watchdog intervals long, must stay empty.
  d.signal(SIGSTOP);
  long long wait_until = now_ms() + 30000;
  while (!d.stopped() && now_ms() < wait_until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(d.stopped()) << "SIGSTOP never took effect";
  sock.drain();
  auto stopped = sock.collect(800);
  d.signal(SIGCONT);
  EXPECT_EQ(count_with(stopped, "WATCHDOG=1"), 0u);
  EXPECT_GE(
      count_with(sock.collect_until([](const NotifySocket::Messages& m) { return count_with(m, "WATCHDOG=1") >= 1; }),
                 "WATCHDOG=1"),
      1u);

  d.signal(SIGHUP);
  auto reload = sock.collect_until([](const NotifySocket::Messages& m) {
    size_t i = 0;
    while (i < m.size() && m[i].second.find("RELOADING=1") == std::string::npos) ++i;
    for (++i; i < m.size(); ++i)
      if (m[i].second.find("READY=1") != std::string::npos) return true;
    return false;
  });
  size_t reloading = reload.size(), ready = reload.size();
  for (size_t i = 0; i < reload.size(); ++i) {
    if (reloading == reload.size() && reload[i].second.find("RELOADING=1") != std::string::npos) reloading = i;
    if (reloading < i && reload[i].second.find("READY=1") != std::string::npos) {
      ready = i;
      break;
    }
  }
  ASSERT_LT(reloading, reload.size()) << "no RELOADING=1";
  EXPECT_NE(reload[reloading].second.find("MONOTONIC_USEC="), std::string::npos);
  EXPECT_LT(ready, reload.size()) << "no READY=1 after the reload";

  EXPECT_EQ(d.stop(SIGTERM), 0);
  auto last = sock.collect_until([](const NotifySocket::Messages& m) { return count_with(m, "STOPPING=1") >= 1; });
  EXPECT_GE(count_with(last, "STOPPING=1"), 1u);
}
