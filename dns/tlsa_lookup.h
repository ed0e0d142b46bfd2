#pragma once
// TLSA lookups for DANE (RFC 7672) through a validating resolver the operator runs ([dns]
// dnssec_resolver), as Postfix requires: deliverd does not validate DNSSEC itself, it trusts the
// AD bit of that resolver's answer, and asks for it (AD and DO set in the query). Its own c-ares
// channel on the uv loop (one uv_poll per c-ares socket, one timer from ares_timeout), a TTL
// cache, coalescing of identical names in flight, a bound on lookups outstanding.
#include <ares.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/names.h"
#include "dns/ares_loop.h"
#include "dns/ttl_cache.h"
#include "dns/tlsa_message.h"

namespace deliverd::dns {

struct TlsaResult {
  // RFC 7672 §2.2. Only Secure records may be used; only Secure and NoRecords are answers a
  // caller may act on: Bogus and Failed are lookup failures that defer, never "no DANE".
  enum class Status : uint8_t {
    Secure,     // AD=1 and TLSA records: DANE applies with these records
    Insecure,   // AD=0: the zone is not signed (or not under a trust anchor); records unusable
    NoRecords,  // AD=1 and NXDOMAIN or no TLSA (authenticated denial): no DANE for this host
    Bogus,      // SERVFAIL from the validating resolver: a bad signature, or no answer upstream
    Failed,     // timeout, REFUSED, other rcode, truncated or malformed answer, overloaded, bad name
  };
  Status status = Status::Failed;
  std::vector<TlsaRecord> records;  // Secure only
  std::string detail;               // what happened, for logs and outcomes
  bool from_cache = false;
};

inline constexpr core::Named<TlsaResult::Status> kTlsaStatusNames[] = {
    {TlsaResult::Status::Secure, "secure"},        {TlsaResult::Status::Insecure, "insecure"},
    {TlsaResult::Status::NoRecords, "no_records"}, {TlsaResult::Status::Bogus, "bogus"},
    {TlsaResult::Status::Failed, "failed"},
};
static_assert(core::in_order(kTlsaStatusNames));
constexpr std::string_view to_string(TlsaResult::Status s) { return core::name_in(kTlsaStatusNames, s); }

// What one parsed answer means for DANE (the table above); detail names the rcode and flags.
// A response that failed to parse is Failed with its error. Exposed for unit tests.
TlsaResult tlsa_result_from(const TlsaResponse& r);

// "_25._tcp.<host>" (RFC 7672 §2.3, RFC 6698 §3): host lower-cased, without a trailing dot.
std::string tlsa_name(std::string_view host, int port = 25);

struct TlsaResolverConfig {
  std::vector<std::string> servers;  // the validating resolver(s): "127.0.0.1:5353", "[::1]:53"; required
  int timeout_ms = 3000;             // first try; c-ares doubles it on later tries
  int tries = 2;
  int max_ttl_s = 3600;              // cap on how long a Secure, Insecure or NoRecords answer is cached
  int negative_ttl_s = 300;          // cap on NoRecords when the denial has no SOA; also the SOA cap
  size_t max_cache_entries = 10000;  // 0 disables the cache
  size_t max_pending = 10000;        // lookups outstanding (waiters, not queries on the wire)
};

class TlsaResolver {  // lives on one uv loop; heap object freed after close() (STYLE §1)
 public:
  // Throws std::runtime_error at start-up on bad config (no servers, a server c-ares refuses).
  static TlsaResolver* create(uv_loop_t* loop, const TlsaResolverConfig& cfg);
  using RequestId = uint64_t;
  using Callback = std::function<void(const TlsaResult&)>;

  // TLSA records of a name such as tlsa_name("mx.example.org"). Callback always asynchronous,
  // exactly once unless cancelled or closed. Bogus and Failed answers are not cached.
  RequestId lookup(const std::string& name, Callback cb);
  void cancel(RequestId id);  // the callback will not be called
  void clear_cache();
  size_t cache_size() const { return cache_.size(); }
  size_t pending() const { return waiters_.size(); }
  void close();  // pending callbacks are not called; freed once libuv has closed the handles

  TlsaResolver(const TlsaResolver&) = delete;
  TlsaResolver& operator=(const TlsaResolver&) = delete;

 private:
  TlsaResolver(uv_loop_t* loop, const TlsaResolverConfig& cfg);
  ~TlsaResolver();

  struct QueryCtx {
    TlsaResolver* self;
    std::string name;
  };

  void deliver(RequestId id, TlsaResult result);
  void cache_put(const std::string& name, const TlsaResult& result, uint32_t ttl_s);
  const TlsaResult* cache_get(const std::string& name);
  void finish_query(const std::string& name, TlsaResult result, uint32_t ttl_s);

  static void on_answer(void* arg, int status, int timeouts, unsigned char* abuf, int alen);

  uv_loop_t* loop_;
  TlsaResolverConfig cfg_;
  AresLoop ares_;  // after cfg_: built from it
  bool closing_ = false;
  RequestId next_id_ = 1;
  uint16_t next_query_id_ = 1;
  std::unordered_map<RequestId, Callback> waiters_;
  std::unordered_map<std::string, std::vector<RequestId>> inflight_;  // name → waiting requests
  TtlCache<TlsaResult> cache_;
};

}  // namespace deliverd::dns
