// Lookups per second through Resolver::resolve_host: warm (every answer cached) and cold (cache
// disabled, every lookup goes to a dnsmasq on a loopback port that this benchmark starts).
// Also the address parser + policy on their own, the per-connection cost of vetting a literal.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "dns/resolver.h"

namespace {

using deliverd::dns::AddressPolicy;
using deliverd::dns::ResolvedHost;
using deliverd::dns::Resolver;
using deliverd::dns::ResolverConfig;

constexpr int kBatch = 100;  // concurrent lookups per iteration

// dnsmasq answering *.bench.test with a public address, for as long as the process runs.
class BenchDns {
 public:
  BenchDns() {
    char tmpl[] = "/tmp/deliverd-dns-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) return;
    dir_ = tmpl;
    std::ofstream(dir_ + "/d.conf") << "local=/bench.test/\naddress=/bench.test/93.184.216.34\n";
    port_ = pick_port();
    pid_ = ::fork();
    if (pid_ == 0) {
      std::string port = "--port=" + std::to_string(port_), conf = "--conf-file=" + dir_ + "/d.conf";
      if (!std::freopen("/dev/null", "w", stderr)) _exit(126);  // dnsmasq would write over the results
      ::execlp("dnsmasq", "dnsmasq", "--no-daemon", port.c_str(), "--listen-address=127.0.0.1", "--bind-interfaces",
               "--no-resolv", "--no-hosts", "--pid-file=", "--cache-size=0", conf.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 250 && !ready(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ~BenchDns() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  bool ok() const { return pid_ > 0 && ready(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  static int pick_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }
  bool ready() const {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return up;
  }
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

BenchDns& dns_server() {
  static BenchDns server;
  return server;
}

// Resolves kBatch distinct names concurrently and runs the loop until every callback came back.
int resolve_batch(uv_loop_t* loop, Resolver* r, const std::vector<std::string>& names) {
  int done = 0, failed = 0;
  for (const auto& n : names)
    r->resolve_host(n, [&](const ResolvedHost& h) {
      ++done;
      if (h.error != deliverd::dns::Code::None) ++failed;
    });
  while (done < static_cast<int>(names.size())) uv_run(loop, UV_RUN_ONCE);
  return failed;
}

void run(benchmark::State& state, bool warm) {
  if (!dns_server().ok()) {
    state.SkipWithError("dnsmasq did not start");
    return;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  ResolverConfig cfg;
  cfg.servers = {dns_server().address()};
  cfg.timeout_ms = 2000;
  if (!warm) cfg.max_cache_entries = 0;
  auto policy = AddressPolicy::create({}).value();
  Resolver* r = Resolver::create(&loop, cfg, &policy);
  std::vector<std::string> names;
  for (int i = 0; i < kBatch; ++i) names.push_back("h" + std::to_string(i) + ".bench.test");
  if (warm) resolve_batch(&loop, r, names);
  int failed = 0;
  for (auto _ : state) failed += resolve_batch(&loop, r, names);
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["failed"] = failed;
  r->close();
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
}

void BM_ResolveHostWarmCache(benchmark::State& state) { run(state, true); }
void BM_ResolveHostCold(benchmark::State& state) { run(state, false); }

void BM_ParseAndCheckLiteral(benchmark::State& state) {
  auto policy = AddressPolicy::create({}).value();
  const char* spellings[] = {"93.184.216.34", "0x7f.1", "[::ffff:10.0.0.1]", "2606:2800:220:1::1", "fe80::1%eth0"};
  size_t i = 0, allowed = 0;
  for (auto _ : state) {
    auto ss = deliverd::dns::parse_ip_literal(spellings[i++ % 5]);
    allowed += policy.check(reinterpret_cast<const sockaddr*>(&*ss)).allowed;
    benchmark::DoNotOptimize(allowed);
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_ResolveHostWarmCache)->Unit(benchmark::kMicrosecond)->MinTime(0.5);
BENCHMARK(BM_ResolveHostCold)->Unit(benchmark::kMicrosecond)->MinTime(0.5);
BENCHMARK(BM_ParseAndCheckLiteral);
BENCHMARK_MAIN();
