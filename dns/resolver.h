#pragma once
// Asynchronous DNS on the event loop: c-ares driven by libuv (one uv_poll per c-ares socket, one
// one-shot timer from ares_timeout), a TTL cache, and coalescing of identical lookups in flight.
// Every address handed out has been through AddressPolicy.
#include <ares.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/outcome.h"
#include "dns/address_policy.h"
#include "dns/ares_loop.h"
#include "dns/ttl_cache.h"

namespace deliverd::dns {

// What a lookup came back with. The names are the metric label of deliverd_dns_queries_total and
// the text of log lines; outcomes map them onto their own reasons (resolve_failure_outcome, MX).
enum class Code : uint8_t {
  None,  // success (a lookup result without error)
  Ok,    // an answer with records (the per-question code)
  Nxdomain,
  Nodata,
  Timeout,
  Servfail,
  ServerRefused,
  ConnectionRefused,
  BadResponse,
  Cancelled,
  Error,
  NoAddress,        // the name exists but has neither A nor AAAA
  RefusedByPolicy,  // every address was refused by the AddressPolicy
  InvalidName,
  Overloaded,  // too many lookups outstanding
};

inline constexpr core::Named<Code> kCodeNames[] = {
    {Code::None, ""},
    {Code::Ok, "ok"},
    {Code::Nxdomain, "nxdomain"},
    {Code::Nodata, "nodata"},
    {Code::Timeout, "timeout"},
    {Code::Servfail, "servfail"},
    {Code::ServerRefused, "server_refused"},
    {Code::ConnectionRefused, "connection_refused"},
    {Code::BadResponse, "bad_response"},
    {Code::Cancelled, "cancelled"},
    {Code::Error, "error"},
    {Code::NoAddress, "no_address"},
    {Code::RefusedByPolicy, "refused_by_policy"},
    {Code::InvalidName, "invalid_name"},
    {Code::Overloaded, "overloaded"},
};
static_assert(core::in_order(kCodeNames));

constexpr std::string_view to_string(Code c) { return core::name_in(kCodeNames, c); }
constexpr std::optional<Code> code_from_name(std::string_view n) { return core::value_in(kCodeNames, n); }

struct ResolverConfig {
  std::vector<std::string> servers;  // "127.0.0.1:5353", "[::1]:53", "192.0.2.1"; empty = system resolv.conf
  int timeout_ms = 3000;             // first try; c-ares doubles it on later tries
  int tries = 2;
  int max_ttl_s = 3600;               // cap on how long an answer is cached
  int negative_ttl_s = 60;            // NXDOMAIN / no-data answers
  // A question that timed out is answered "timeout" for this long without asking again, so a dead
  // name server costs one timeout per name, not one per delivery. 0: always ask again.
  int timeout_ttl_s = 30;
  size_t max_cache_entries = 100000;  // 0 disables the cache
  size_t max_pending = 10000;         // resolve_host, _mx and _txt requests outstanding
};

struct ResolvedHost {
  std::string host;
  std::vector<sockaddr_storage> allowed;                     // vetted; connect to exactly these (port not set)
  std::vector<std::pair<std::string, std::string>> refused;  // ip, reason
  Code error = Code::None;  // None on success
};

struct MxResult {
  std::vector<std::pair<int, std::string>> hosts;  // preference, name (lower case, no trailing dot); sorted
  bool null_mx = false;                            // "MX 0 ." (RFC 7505): the domain takes no mail
  bool no_mx = false;  // the name exists but has no MX: use the domain itself (RFC 5321 §5.1)
  Code error = Code::None;  // as ResolvedHost::error
  std::string detail;       // refused_by_policy: the rule the name broke
};

struct TxtResult {
  std::vector<std::string> records;  // each TXT record with its strings joined (RFC 7208 3.3)
  Code error = Code::None;           // as ResolvedHost::error; nodata / nxdomain: no record
};

// The outcome a failed resolution ends with (nullopt when r.error is empty): refused_by_policy and
// invalid_name → rejected; nxdomain / no_address → bounced; anything else → deferred.
std::optional<core::Outcome> resolve_failure_outcome(const ResolvedHost& r);

class Resolver {  // lives on one uv loop; heap object freed after close() (STYLE §1)
 public:
  // Throws std::runtime_error at start-up on bad config. policy may be null (built-in table only);
  // it must outlive the resolver or be replaced with set_policy.
  static Resolver* create(uv_loop_t* loop, const ResolverConfig& cfg, const AddressPolicy* policy);
  using RequestId = uint64_t;

  // IP literals are answered without DNS (still policy-checked). A+AAAA; callback always asynchronous.
  // Special-use and internal names (core::special_use_rule: localhost, *.local, single labels, …)
  // are refused before any query, as refused_by_policy with the rule as the refused entry.
  RequestId resolve_host(const std::string& host, std::function<void(const ResolvedHost&)> cb);
  RequestId resolve_mx(const std::string& domain, std::function<void(const MxResult&)> cb);
  // TXT records of a policy name (_mta-sts.<domain>, _smtp._tls.<domain>): at most 16 records of
  // at most 4 KiB each are kept (a policy record is one short line). Cached like any answer.
  RequestId resolve_txt(const std::string& name, std::function<void(const TxtResult&)> cb);
  // For the daemon's own services (PostgreSQL), not for mail targets: /etc/hosts first, then
  // DNS with resolv.conf's search domains, as getaddrinfo would, but on the loop. No target
  // policy applies (a database on a private address is normal). cb gets numeric addresses in the
  // order to try, or an error text; always asynchronous.
  using ServiceHostCallback = std::function<void(std::vector<std::string> ips, std::string error)>;
  RequestId resolve_service_host(const std::string& host, ServiceHostCallback cb);
  void cancel(RequestId id);                     // the callback will not be called
  void set_policy(const AddressPolicy* policy);  // for reload; applies to cached answers too
  void clear_cache();
  size_t cache_size() const { return cache_.size(); }
  size_t pending() const { return host_reqs_.size() + mx_reqs_.size() + txt_reqs_.size() + service_reqs_.size(); }
  void close();  // pending callbacks are not called; freed once libuv has closed the handles

  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // What one DNS question (name, type) came back with; shared by cache and waiters.
  struct Answer {
    Code code = Code::Error;
    std::vector<sockaddr_storage> addrs;
    std::vector<std::pair<int, std::string>> mx;
    bool null_mx = false;
    std::vector<std::string> txt;
  };
  using AnswerPtr = std::shared_ptr<const Answer>;

 private:
  Resolver(uv_loop_t* loop, const ResolverConfig& cfg, const AddressPolicy* policy);
  ~Resolver();

  struct HostReq {
    std::string host;
    std::function<void(const ResolvedHost&)> cb;
    int pending = 0;
    AnswerPtr a, aaaa;
    std::optional<ResolvedHost> ready;  // literal or early error: nothing to look up
  };
  struct MxReq {
    std::function<void(const MxResult&)> cb;
    std::optional<MxResult> ready;
  };
  struct TxtReq {
    std::function<void(const TxtResult&)> cb;
    Code ready = Code::None;  // an early error: nothing to look up
  };
  struct QueryCtx {
    Resolver* self;
    std::string key;
    int type;
  };
  struct ServiceCtx {
    Resolver* self;
    RequestId id;
  };

  void fetch(int type, const std::string& name, std::function<void(const AnswerPtr&)> on_answer);
  void finish_host(RequestId id);
  void finish_mx(RequestId id, const AnswerPtr& answer);
  void finish_txt(RequestId id, const AnswerPtr& answer);
  void cache_put(const std::string& key, AnswerPtr answer, uint32_t ttl_s);
  AnswerPtr cache_get(const std::string& key);

  static void on_query_done(void* arg, int status, int timeouts, unsigned char* abuf, int alen);
  static void on_service_host_done(void* arg, int status, int timeouts, struct ares_addrinfo* info);

  uv_loop_t* loop_;
  ResolverConfig cfg_;
  const AddressPolicy* policy_;
  AddressPolicy default_policy_;
  AresLoop ares_;  // after cfg_: built from it
  bool closing_ = false;
  RequestId next_id_ = 1;
  std::unordered_map<RequestId, HostReq> host_reqs_;
  std::unordered_map<RequestId, MxReq> mx_reqs_;
  std::unordered_map<RequestId, TxtReq> txt_reqs_;
  std::unordered_map<RequestId, ServiceHostCallback> service_reqs_;
  std::unordered_map<std::string, std::vector<std::function<void(const AnswerPtr&)>>> inflight_;
  TtlCache<AnswerPtr> cache_;
};

}  // namespace deliverd::dns
