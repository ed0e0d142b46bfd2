#pragma once
// Outbound HTTPS for every module on the loop (OAuth token endpoints, MTA-STS policies, TLS-RPT
// reports): one request, one TLS connection, one answer. The target is never resolved here: a
// HostLookup hands over addresses that the target policy has already vetted, and the connection
// goes to exactly one of them (no second resolution between check and connect). https only,
// certificate and host name verified with the caller's TlsContext (TLS 1.2+), redirects not
// followed (a 3xx is returned as it is), a timeout per phase and in total, and a bound on the
// answer's size. No proxy from the environment: there is no proxy support at all.
#include <sys/socket.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/result.h"
#include "core/tls_context.h"

namespace deliverd::core {

// Where a request ended (STYLE.md §7: names inside, text at the edges).
enum class HttpsPhase : uint8_t { Request, Resolve, Connect, Tls, Send, Response };
constexpr std::string_view kHttpsPhaseNames[] = {"request", "resolve", "connect", "tls", "send", "response"};
constexpr std::string_view to_string(HttpsPhase p) { return kHttpsPhaseNames[static_cast<size_t>(p)]; }

enum class HttpsErrorKind : uint8_t {
  BadUrl,           // not https://host[:port]/…, or userinfo, or a bad host
  BadRequest,       // a method or header with bytes HTTP does not allow (CR/LF injection)
  PortRefused,      // the URL's port is not in HttpsClientOptions::allowed_ports
  ResolveFailed,    // no address (nxdomain, timeout, …)
  RefusedByPolicy,  // every address was refused by the target policy (SSRF)
  ConnectFailed,
  Timeout,
  TlsFailed,  // handshake or verification failed
  Closed,     // the peer closed before a complete answer
  BadResponse,
  TooLarge,    // the answer exceeded max_response_bytes
  Overloaded,  // max_in_flight requests already outstanding
};
constexpr std::string_view kHttpsErrorNames[] = {
    "bad_url",    "bad_request", "port_refused", "resolve_failed", "refused_by_policy", "connect_failed",
    "timeout",    "tls_failed",  "closed",       "bad_response",   "too_large",         "overloaded"};
constexpr std::string_view to_string(HttpsErrorKind k) { return kHttpsErrorNames[static_cast<size_t>(k)]; }

struct HttpsError {
  HttpsPhase phase = HttpsPhase::Request;
  HttpsErrorKind kind = HttpsErrorKind::BadUrl;
  std::string detail;  // human-readable: "certificate verify failed: …", "10.0.0.1: private"
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpsRequest {
  std::string method = "GET";
  std::string url;      // https://host[:port][/path][?query]
  HttpHeaders headers;  // Host, Connection and Content-Length are set by the client
  std::string body;
};

struct HttpsResponse {
  int status = 0;
  HttpHeaders headers;  // names lower-cased, in the order received
  std::string body;     // de-chunked
  std::string ip;       // the vetted address the answer came from
  std::string tls_version;
  // The first header with this (lower-case) name, or nullptr.
  const std::string* header(std::string_view name) const;
};

// Gives vetted addresses for a host name or IP literal; never an address the target policy
// refused. dns::ResolverLookup adapts dns::Resolver to this.
class HostLookup {
 public:
  virtual ~HostLookup() = default;
  struct Answer {
    std::vector<sockaddr_storage> allowed;  // port not set
    bool refused_by_policy = false;         // addresses existed but none may be connected to
    std::string error;                      // "" when allowed is not empty
  };
  using Callback = std::function<void(const Answer&)>;
  // The callback is always asynchronous and never made after cancel().
  virtual uint64_t lookup(const std::string& host, Callback cb) = 0;
  virtual void cancel(uint64_t id) = 0;
};

struct HttpsClientOptions {
  std::shared_ptr<TlsContext> tls;  // client context: the same CA settings as SMTP
  int resolve_timeout_ms = 10000;
  int connect_timeout_ms = 10000;  // per address tried
  int tls_timeout_ms = 10000;
  int total_timeout_ms = 30000;  // from request() to the last byte of the answer
  size_t max_response_bytes = 1 << 20;
  size_t max_header_bytes = 32768;
  size_t max_in_flight = 1024;
  std::vector<int> allowed_ports = {443};
};

// A parsed https URL.
struct HttpsUrl {
  std::string host;  // lower case; IPv6 literals without brackets
  int port = 443;
  std::string target;  // "/path?query", at least "/"
  bool host_is_literal = false;
};
Result<HttpsUrl, std::string> parse_https_url(std::string_view url);

class HttpsClient {
 public:
  static HttpsClient* create(uv_loop_t* loop, HostLookup* lookup, HttpsClientOptions opts);
  using RequestId = uint64_t;
  using Callback = std::function<void(Result<HttpsResponse, HttpsError>)>;
  // Starts a request; the callback is always made later on the loop, exactly once, unless the
  // request is cancelled or the client closed first.
  RequestId request(HttpsRequest req, Callback cb);
  void cancel(RequestId id);
  size_t in_flight() const { return exchanges_.size(); }
  // For reload: later requests use the new options.
  void set_options(HttpsClientOptions opts) { opts_ = std::move(opts); }
  const HttpsClientOptions& options() const { return opts_; }
  // Cancels everything outstanding and frees the client.
  void close();

  HttpsClient(const HttpsClient&) = delete;
  HttpsClient& operator=(const HttpsClient&) = delete;

  class Exchange;

 private:
  HttpsClient(uv_loop_t* loop, HostLookup* lookup, HttpsClientOptions opts)
      : loop_(loop), lookup_(lookup), opts_(std::move(opts)) {}
  ~HttpsClient() = default;
  friend class Exchange;

  uv_loop_t* loop_;
  HostLookup* lookup_;
  HttpsClientOptions opts_;
  RequestId next_id_ = 1;
  std::unordered_map<RequestId, Exchange*> exchanges_;
};

}  // namespace deliverd::core
