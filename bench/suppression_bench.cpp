// The policy gate's per-recipient suppression check: the address parsed, hashed into each of its
// candidates (keyed under the current and every old key, plain, legacy) and looked up in the
// in-memory set of 100,000 rows. Reference in the same run: the address parsed and case-folded,
// one plain SHA-256 and its lookup — what the check cost before hashes were keyed.
#include <benchmark/benchmark.h>
#include <openssl/sha.h>

#include <string>
#include <vector>

#include "policy/suppression_set.h"
#include "core/address.h"
#include "store/address_hash.h"
#include "store/suppressions.h"

namespace {

using deliverd::policy::SuppressionSet;
using deliverd::store::AddressHasher;

std::vector<deliverd::core::Key256> keys(int n) {
  std::vector<deliverd::core::Key256> out(n);
  for (int i = 0; i < n; ++i) out[i].fill(static_cast<unsigned char>(i + 1));
  return out;
}

const SuppressionSet& listed(const AddressHasher& h) {
  static SuppressionSet s = [&] {
    SuppressionSet set;
    for (int i = 0; i < 100000; ++i) set.insert("acct_1", h.key("someone" + std::to_string(i) + "@example.org"));
    return set;
  }();
  return s;
}

std::string plain(const std::string& a) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

void BM_PlainSha256Reference(benchmark::State& state) {
  const AddressHasher h = AddressHasher::from_hash_keys(keys(1));
  const SuppressionSet& s = listed(h);
  const std::string to = "Recipient.Name@Example.org";
  for (auto _ : state) {
    auto parsed = deliverd::store::parse_listed_address(to);
    benchmark::DoNotOptimize(s.contains_hash("acct_1", plain(deliverd::core::case_folded(*parsed))));
  }
}
BENCHMARK(BM_PlainSha256Reference);

// range(0): configured secret keys (1 = no rotation under way, 2 = one old key listed).
void BM_KeyedCandidates(benchmark::State& state) {
  const AddressHasher h = AddressHasher::from_hash_keys(keys(static_cast<int>(state.range(0))));
  const SuppressionSet& s = listed(AddressHasher::from_hash_keys(keys(1)));
  const std::string to = "Recipient.Name@Example.org";
  for (auto _ : state) benchmark::DoNotOptimize(s.contains_any("acct_1", h.candidates(to)));
}
BENCHMARK(BM_KeyedCandidates)->Arg(1)->Arg(2);

}  // namespace
