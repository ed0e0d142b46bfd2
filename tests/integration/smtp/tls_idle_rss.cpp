// tls_idle_rss: memory held per idle TLS SMTP session. Opens N sessions (STARTTLS, EHLO, one
// message each) to a tls_sink on this host, keeps them idle in the pool's way (SessionHooks::idle),
// and reports VmRSS before and after, per session.
//   tls_idle_rss --port N --ca CA.pem [--sessions 10000] [--ip 127.0.0.1]
#include <sys/resource.h>
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/log.h"
#include "core/tls_context.h"
#include "smtp/session.h"

namespace {
long vm_rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace deliverd;
  int port = 0, n = 10000;
  std::string ca, ip = "127.0.0.1";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--port")
      port = std::stoi(v);
    else if (k == "--ca")
      ca = v;
    else if (k == "--sessions")
      n = std::stoi(v);
    else if (k == "--ip")
      ip = v;
  }
  core::set_log_level(core::LogLevel::Warn);
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(n) + 64) {
    std::fprintf(stderr, "RLIMIT_NOFILE %lu is too low for %d sessions\n", static_cast<unsigned long>(rl.rlim_cur), n);
    return 1;
  }
  core::TlsClientOptions to;
  to.ca_file = ca;
  to.use_system_roots = false;
  auto ctx = core::TlsContext::client(to);
  if (!ctx) {
    std::fprintf(stderr, "%s\n", ctx.error().c_str());
    return 1;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  smtp::SessionConfig cfg;
  cfg.helo_name = "bench.localhost";
  cfg.security = smtp::Security::StartTls;
  cfg.tls = *ctx;
  cfg.tls_name = ip;
  for (auto& ms : cfg.timeouts.ms) ms = 120000;
  cfg.timeouts[smtp::Phase::Idle] = 3600 * 1000;
  cfg.total_ms = 3600 * 1000;
  sockaddr_in addr{};
  uv_ip4_addr(ip.c_str(), port, &addr);
  long before = vm_rss_kb();
  int idle = 0, failed = 0, closed = 0;
  std::vector<smtp::Session*> sessions;
  smtp::SessionHooks hooks;
  hooks.idle = [&](smtp::Session* s) {
    sessions.push_back(s);
    if (++idle + failed == n) uv_stop(&loop);
  };
  hooks.closed = [&](smtp::Session*) { ++closed; };
  // Started in waves so the listener's backlog is not overrun.
  int started = 0;
  uv_timer_t wave;
  uv_timer_init(&loop, &wave);
  struct Ctx {
    int* started;
    int n;
    std::function<void()> start_one;
  };
  auto start_one = [&] {
    smtp::Session::start(
        &loop, cfg, reinterpret_cast<const sockaddr*>(&addr), ip,
        smtp::Envelope{"alice@acme.example", "bob@example.org", "Subject: x\r\n\r\ny\r\n"},
        [&](const core::Outcome& o) {
          if (o.status != core::Status::Delivered) {
            if (++failed < 5) std::fprintf(stderr, "%s/%s %s\n", std::string(core::to_string(o.phase)).c_str(),
                           std::string(core::to_string(o.reason)).c_str(), o.detail.c_str());
            if (idle + failed == n) uv_stop(&loop);
          }
        },
        hooks);
  };
  Ctx c{&started, n, start_one};
  wave.data = &c;
  uv_timer_start(
      &wave,
      [](uv_timer_t* t) {
        auto* c = static_cast<Ctx*>(t->data);
        for (int i = 0; i < 500 && *c->started < c->n; ++i, ++*c->started) c->start_one();
        if (*c->started >= c->n) uv_timer_stop(t);
      },
      0, 50);
  uv_run(&loop, UV_RUN_DEFAULT);
  long after = vm_rss_kb();
  std::printf("sessions_idle=%d failed=%d rss_before_kb=%ld rss_after_kb=%ld per_session_kb=%.1f\n", idle, failed,
              before, after, idle ? static_cast<double>(after - before) / idle : 0.0);
  for (auto* s : sessions) s->abort("done");
  uv_close(reinterpret_cast<uv_handle_t*>(&wave), nullptr);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return failed == 0 ? 0 : 1;
}
