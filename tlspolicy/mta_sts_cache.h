#pragma once
// The MTA-STS policy to apply now for a recipient domain (RFC 8461 5, 10.2), kept per domain (not
// per MX) in this process and shared by the fleet through Redis, so one daemon's fetch serves
// all: key <prefix>mta-sts:<domain>, a JSON value with the TXT id, the policy and when it was
// fetched, and a Redis TTL of max_age. Every lookup asks for the `_mta-sts` TXT record (the
// resolver caches it for its TTL):
//   - a cached, unexpired policy whose id is the TXT id is used without fetching;
//   - a cached policy whose id differs is used now while a refresh is fetched in the background
//     (one in flight per domain); a refresh that fails leaves the old policy in use;
//   - no TXT record (or a failed or bad lookup) but a cached policy: the policy stays in use, as
//     10.2 says, so an attacker who strips the record cannot switch the policy off;
//   - a TXT record, nothing cached and the fetch fails: no policy (deliver as if the domain had
//     none) and the failure is reported.
// Concurrent lookups for one domain share one TXT lookup, one Redis read and one fetch.
#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tlspolicy/mta_sts_fetch.h"
#include "tlspolicy/mta_sts_policy.h"

namespace deliverd::queue {
class RedisClient;
}

namespace deliverd::tlspolicy {

// What the TXT lookup of `_mta-sts.<domain>` came back with. The resolver's answer mapped onto
// this by whoever wires the cache (dns::Resolver::resolve_txt in the daemon).
struct TxtAnswer {
  enum class Status : uint8_t { Found, NoRecord, Failed } status = Status::NoRecord;
  std::vector<std::string> records;  // each TXT record, its strings concatenated
  std::string error;                 // Failed: "timeout", "servfail", …
};
using TxtLookup = std::function<void(const std::string& name, std::function<void(TxtAnswer)> cb)>;

// Where the policy given out came from.
enum class StsSource : uint8_t { None, Cache, Fetched };
inline constexpr core::Named<StsSource> kStsSourceNames[] = {
    {StsSource::None, "none"}, {StsSource::Cache, "cache"}, {StsSource::Fetched, "fetched"}};
static_assert(core::in_order(kStsSourceNames));
constexpr std::string_view to_string(StsSource s) { return core::name_in(kStsSourceNames, s); }

struct StsDecision {
  std::string domain;                 // normalised
  std::optional<MtaStsPolicy> policy;  // nullopt: deliver as without MTA-STS
  std::string id;                     // the id of the policy given out
  StsSource source = StsSource::None;
  bool refreshing = false;  // a newer policy (the TXT id changed) is being fetched
  // Set when something went wrong that an operator should hear about (TLS-RPT, logs), whether or
  // not a cached policy still applies: "tls: certificate verify failed …".
  std::optional<StsError> failure;
};

// Plain numbers the daemon can publish as metrics.
struct StsCounters {
  std::array<uint64_t, kStsModeCount> fetched{};  // policies fetched here, by mode
  std::array<uint64_t, kStsModeCount> cached{};   // lookups answered from the cache (memory or Redis), by mode
  std::array<uint64_t, kStsFailureCount> failures{};  // by reason
  uint64_t shared = 0;      // policies taken from Redis that another daemon (or an earlier run) fetched
  uint64_t refreshes = 0;   // background refreshes started
  uint64_t no_policy = 0;   // lookups that ended without a policy
};

struct StsCacheOptions {
  std::string redis_prefix = "deliverd:";
  size_t max_entries = 100000;  // domains kept in memory; Redis holds the rest
  size_t max_in_flight = 10000;  // domains being looked up at once; beyond that: no policy now
};

// Test seams: the wall clock (ms since the epoch), shared through Redis.
using WallClock = std::function<int64_t()>;

class MtaStsCache {
 public:
  // redis may be null (a lone daemon: in-process cache only). All must outlive the cache.
  MtaStsCache(uv_loop_t* loop, TxtLookup txt, PolicyFetcher* fetcher, queue::RedisClient* redis,
              StsCacheOptions opts, WallClock clock = {});
  ~MtaStsCache();
  MtaStsCache(const MtaStsCache&) = delete;
  MtaStsCache& operator=(const MtaStsCache&) = delete;

  using Callback = std::function<void(const StsDecision&)>;
  // The policy for a recipient domain. The callback comes later on the loop, or at once (no
  // policy, the failure naming it) when the domain is not a valid name or too many are in flight.
  void lookup(const std::string& domain, Callback cb);

  const StsCounters& counters() const { return counters_; }
  size_t size() const { return entries_.size(); }
  size_t in_flight() const { return flights_.size(); }
  std::string redis_key(std::string_view domain) const;

  // The stored form: {"id":…,"fetched_at":ms,"policy":{"mode":…,"max_age":s,"mx":[…]}}.
  struct Entry {
    std::string id;
    MtaStsPolicy policy;
    int64_t fetched_at_ms = 0;
    int64_t expires_ms() const { return fetched_at_ms + policy.max_age_s * 1000; }
  };
  static std::string to_json(const Entry& e);
  static std::optional<Entry> from_json(std::string_view json);

 private:
  struct Flight {
    std::vector<Callback> waiters;
    std::optional<std::string> txt_id;    // the id in the TXT record, when there is a valid one
    std::optional<StsError> txt_failure;  // a malformed record
  };
  void on_txt(const std::string& domain, TxtAnswer answer);
  void read_shared(const std::string& domain);
  void decide(const std::string& domain, std::optional<Entry> shared);
  void fetch_now(const std::string& domain, const std::string& id);
  void refresh(const std::string& domain, const std::string& id);
  void store(const std::string& domain, const Entry& e);
  void publish(const std::string& domain, const Entry& e);
  void finish(const std::string& domain, StsDecision d);
  const Entry* fresh_entry(const std::string& domain);
  void count_failure(const std::string& domain, const StsError& e, bool background);
  int64_t now_ms() const;

  uv_loop_t* loop_;
  TxtLookup txt_;
  PolicyFetcher* fetcher_;
  queue::RedisClient* redis_;
  StsCacheOptions opts_;
  WallClock clock_;
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_map<std::string, Flight> flights_;
  std::unordered_map<std::string, PolicyFetcher::RequestId> refreshing_;
  std::unordered_map<std::string, PolicyFetcher::RequestId> fetching_;  // foreground fetches
  StsCounters counters_;
  std::shared_ptr<bool> alive_;
};

}  // namespace deliverd::tlspolicy
