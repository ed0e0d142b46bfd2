// The in-memory suppression list at platform scale: 10,000 accounts (one per mailbox) with 1,000
// suppressions each, ten million rows, loaded in the gate's 5,000-row pages. Reports resident
// memory per row, the longest page (how long one page holds the event loop) and the cost of one
// check, beside the layout used before (a hash set of 32-byte strings per account) built from
// the same rows in the same run.
#include <benchmark/benchmark.h>
#include <openssl/sha.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "policy/suppression_set.h"

namespace {

constexpr int kAccounts = 10000;
constexpr int kPerAccount = 1000;
constexpr size_t kPageRows = 5000;

double rss_mb() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

std::string sha(const std::string& s) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

std::string account(int a) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "acct_%05d", a);  // names that sort like their numbers
  return buf;
}

// One account's rows, sorted by hash as the primary key returns them.
std::vector<std::string> rows_of(int a) {
  std::vector<std::string> out;
  out.reserve(kPerAccount);
  for (int i = 0; i < kPerAccount; ++i) out.push_back(sha("u" + std::to_string(i) + "@" + account(a) + ".example"));
  std::sort(out.begin(), out.end());
  return out;
}

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }
// This thread's CPU time: a page's cost without the time other processes on a loaded machine
// took the core away.
double thread_cpu_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

template <class Insert, class Check>
void measure(benchmark::State& state, Insert insert, Check check) {
  for (auto _ : state) {
    const double before = rss_mb();
    double longest_page_ms = 0, page_ms = 0, load_ms = 0;
    size_t in_page = 0;
    for (int a = 0; a < kAccounts; ++a) {
      const std::string acct = account(a);
      std::vector<std::string> rows = rows_of(a);  // generating rows is not the list's cost
      const double t = thread_cpu_ms();
      for (const auto& r : rows) insert(acct, r);
      const double spent = thread_cpu_ms() - t;
      page_ms += spent;
      load_ms += spent;
      in_page += rows.size();
      if (in_page >= kPageRows) {
        longest_page_ms = std::max(longest_page_ms, page_ms);
        page_ms = 0;
        in_page = 0;
      }
    }
    const double used = rss_mb() - before;
    // Half the checks hit, half miss; the account is known either way.
    const int kChecks = 1'000'000;
    std::vector<std::pair<std::string, std::string>> probes;
    probes.reserve(kChecks);
    for (int i = 0; i < kChecks; ++i) {
      const int a = static_cast<int>((static_cast<long long>(i) * 7919) % kAccounts);
      probes.emplace_back(account(a), sha("u" + std::to_string(i % 2 ? i % kPerAccount : kPerAccount + i) + "@" +
                                          account(a) + ".example"));
    }
    const auto t = Clock::now();
    size_t hits = 0;
    for (const auto& [acct, h] : probes) hits += check(acct, h) ? 1 : 0;
    const double check_ns = ms_since(t) * 1e6 / kChecks;
    if (hits != kChecks / 2) state.SkipWithError("wrong number of hits");
    state.counters["rows"] = static_cast<double>(kAccounts) * kPerAccount;
    state.counters["rss_mb"] = used;
    state.counters["bytes_per_row"] = used * 1024 * 1024 / (static_cast<double>(kAccounts) * kPerAccount);
    state.counters["load_s"] = load_ms / 1000;
    state.counters["longest_page_cpu_ms"] = longest_page_ms;
    state.counters["check_ns"] = check_ns;
  }
}

void BM_SuppressionSet(benchmark::State& state) {
  deliverd::policy::SuppressionSet set;
  measure(
      state, [&](const std::string& a, const std::string& h) { set.append_sorted(a, h); },
      [&](const std::string& a, const std::string& h) { return set.contains_hash(a, h); });
}

// The layout before: per account an unordered_set of the 32-byte hashes.
void BM_BaselineStringHashSets(benchmark::State& state) {
  std::unordered_map<std::string, std::unordered_set<std::string>> by_account;
  measure(
      state, [&](const std::string& a, const std::string& h) { by_account[a].insert(h); },
      [&](const std::string& a, const std::string& h) {
        auto it = by_account.find(a);
        return it != by_account.end() && it->second.count(h) > 0;
      });
}

}  // namespace

BENCHMARK(BM_SuppressionSet)->Iterations(1)->Unit(benchmark::kSecond);
BENCHMARK(BM_BaselineStringHashSets)->Iterations(1)->Unit(benchmark::kSecond);
