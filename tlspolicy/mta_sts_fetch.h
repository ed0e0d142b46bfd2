#pragma once
// Fetches a domain's MTA-STS policy (RFC 8461 3.3): GET https://mta-sts.<domain>/.well-known/
// mta-sts.txt through core::HttpsClient, so the host's address comes from a HostLookup that the
// target policy vetted, the certificate is verified for that name, and no redirect is followed.
// Only a 200 with media type text/plain and a body of at most 64 KiB that parses is a policy.
#include <uv.h>

#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>

#include "core/https_client.h"
#include "core/names.h"
#include "core/result.h"
#include "core/tls_context.h"
#include "tlspolicy/mta_sts_policy.h"

namespace deliverd::tlspolicy {

// Why no policy could be had for a domain (STYLE.md §7). The names are metric labels and the
// first word of every failure text.
enum class StsFailure : uint8_t {
  InvalidRecord,    // the _mta-sts TXT record is malformed or not alone
  Resolve,          // mta-sts.<domain> has no address
  RefusedByPolicy,  // its addresses are all refused by the target policy
  Connect,
  Tls,  // handshake or certificate verification
  Timeout,
  Status,       // anything but 200 (a redirect included)
  ContentType,  // not text/plain
  TooLarge,     // more than 64 KiB
  BadPolicy,    // the body is not a valid policy
  Other,        // a closed connection, a garbled answer, an overloaded client
};
inline constexpr core::Named<StsFailure> kStsFailureNames[] = {
    {StsFailure::InvalidRecord, "invalid_record"},
    {StsFailure::Resolve, "resolve"},
    {StsFailure::RefusedByPolicy, "refused_by_policy"},
    {StsFailure::Connect, "connect"},
    {StsFailure::Tls, "tls"},
    {StsFailure::Timeout, "timeout"},
    {StsFailure::Status, "status"},
    {StsFailure::ContentType, "content_type"},
    {StsFailure::TooLarge, "too_large"},
    {StsFailure::BadPolicy, "bad_policy"},
    {StsFailure::Other, "other"},
};
static_assert(core::in_order(kStsFailureNames));
inline constexpr size_t kStsFailureCount = std::size(kStsFailureNames);
constexpr std::string_view to_string(StsFailure f) { return core::name_in(kStsFailureNames, f); }

struct StsError {
  StsFailure kind = StsFailure::Other;
  std::string detail;  // "HTTP 301 (redirects are not followed)", "content type text/html", …
  std::string text() const { return std::string(to_string(kind)) + ": " + detail; }
};

struct FetchOptions {
  int timeout_ms = 10000;  // for everything: lookup, connect, TLS and the whole answer
};

// "https://mta-sts.<domain>/.well-known/mta-sts.txt"
std::string policy_url(std::string_view domain);

class PolicyFetcher {
 public:
  // lookup must give addresses vetted by the target policy (dns::ResolverLookup); tls is the
  // client context with the CA settings of SMTP. Both must outlive the fetcher.
  PolicyFetcher(uv_loop_t* loop, core::HostLookup* lookup, std::shared_ptr<core::TlsContext> tls, FetchOptions opts);
  ~PolicyFetcher();
  PolicyFetcher(const PolicyFetcher&) = delete;
  PolicyFetcher& operator=(const PolicyFetcher&) = delete;

  using Callback = std::function<void(core::Result<MtaStsPolicy, StsError>)>;
  using RequestId = core::HttpsClient::RequestId;
  // domain is a normalised mail domain. The callback comes later on the loop, exactly once,
  // unless cancelled or the fetcher is destroyed first.
  RequestId fetch(const std::string& domain, Callback cb);
  void cancel(RequestId id);
  // What fetches from now on trust (a reload's [smtp] ca_file); fetches under way keep theirs.
  void set_tls(std::shared_ptr<core::TlsContext> tls);
  size_t in_flight() const { return client_->in_flight(); }

 private:
  core::HttpsClient* client_;
};

// The answer to a policy request judged as RFC 8461 3.3 says: exported for the tests of the
// rules that need no server.
core::Result<MtaStsPolicy, StsError> judge_policy_answer(const core::HttpsResponse& r);

}  // namespace deliverd::tlspolicy
