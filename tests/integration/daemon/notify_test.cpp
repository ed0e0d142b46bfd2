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
  // Every datagram that arrives within ms, with its arrival time.
  std::vector<std::pair<long long, std::string>> collect(int ms) {
    std::vector<std::pair<long long, std::string>> out;
    long long deadline = now_ms() + ms;
    for (long long left = ms; left > 0; left = deadline - now_ms()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) out.emplace_back(now_ms(), std::string(buf, static_cast<size_t>(n)));
    }
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
  auto first = sock.collect(1500);
  size_t first_ready = 0;
  while (first_ready < first.size() && first[first_ready].second.find("READY=1") == std::string::npos) {
    EXPECT_EQ(first[first_ready].second, "WATCHDOG=1");
    ++first_ready;
  }
  ASSERT_LT(first_ready, first.size()) << "no READY=1\n" << d.log();
  EXPECT_NE(first[first_ready].second.find("STATUS="), std::string::npos) << first[first_ready].second;
  EXPECT_GE(count_with(first, "WATCHDOG=1"), 2u);  // every 150 ms while the loop runs

  // Stopped, the daemon sends nothing; resumed, the pings come back.
  d.signal(SIGSTOP);
  auto stopped = sock.collect(800);
  d.signal(SIGCONT);
  EXPECT_EQ(count_with(stopped, "WATCHDOG=1"), 0u);
  EXPECT_GE(count_with(sock.collect(800), "WATCHDOG=1"), 1u);

  d.signal(SIGHUP);
  auto reload = sock.collect(1500);
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
  auto last = sock.collect(300);
  EXPECT_GE(count_with(last, "STOPPING=1"), 1u);
}
