#include "tlspolicy/mta_sts_fetch.h"

#include "core/ascii.h"

namespace deliverd::tlspolicy {

namespace {

StsError from_https(const core::HttpsError& e) {
  using K = core::HttpsErrorKind;
  StsFailure f = StsFailure::Other;
  switch (e.kind) {
    case K::ResolveFailed: f = StsFailure::Resolve; break;
    case K::RefusedByPolicy: f = StsFailure::RefusedByPolicy; break;
    case K::ConnectFailed: f = StsFailure::Connect; break;
    case K::TlsFailed: f = StsFailure::Tls; break;
    case K::Timeout: f = StsFailure::Timeout; break;
    case K::TooLarge: f = StsFailure::TooLarge; break;
    default: break;
  }
  std::string detail = std::string(core::to_string(e.kind)) + " in " + std::string(core::to_string(e.phase));
  if (!e.detail.empty()) detail += ": " + e.detail;
  return {f, std::move(detail)};
}

std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 60)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

std::string policy_url(std::string_view domain) {
  return "https://mta-sts." + std::string(domain) + "/.well-known/mta-sts.txt";
}

core::Result<MtaStsPolicy, StsError> judge_policy_answer(const core::HttpsResponse& r) {
  if (r.status != 200) {
    std::string detail = "HTTP " + std::to_string(r.status);
    // A redirect is not followed (RFC 8461 3.3): saying so tells the operator why it failed.
    if (r.status >= 300 && r.status < 400) detail += " (redirects are not followed)";
    return core::Err(StsError{StsFailure::Status, std::move(detail)});
  }
  const std::string* ct = r.header("content-type");
  if (!ct) return core::Err(StsError{StsFailure::ContentType, "no content type (text/plain is required)"});
  std::string_view media = *ct;
  media = media.substr(0, media.find(';'));
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  if (!core::iequals(media, "text/plain"))
    return core::Err(StsError{StsFailure::ContentType, "content type '" + shown(*ct) + "' is not text/plain"});
  if (r.body.size() > kMaxPolicyBytes)
    return core::Err(StsError{StsFailure::TooLarge, "the body is " + std::to_string(r.body.size()) +
                                                        " bytes; at most " + std::to_string(kMaxPolicyBytes)});
  auto p = parse_mta_sts_policy(r.body);
  if (!p) return core::Err(StsError{StsFailure::BadPolicy, p.error()});
  return std::move(p.value());
}

PolicyFetcher::PolicyFetcher(uv_loop_t* loop, core::HostLookup* lookup, std::shared_ptr<core::TlsContext> tls,
                             FetchOptions opts) {
  core::HttpsClientOptions o;
  o.tls = std::move(tls);
  // One bound for all of it: a policy host that trickles its answer must not hold a delivery.
  o.resolve_timeout_ms = o.connect_timeout_ms = o.tls_timeout_ms = o.total_timeout_ms = opts.timeout_ms;
  o.max_response_bytes = kMaxPolicyBytes;
  o.max_header_bytes = 16384;
  o.allowed_ports = {443};
  client_ = core::HttpsClient::create(loop, lookup, std::move(o));
}

PolicyFetcher::~PolicyFetcher() { client_->close(); }

PolicyFetcher::RequestId PolicyFetcher::fetch(const std::string& domain, Callback cb) {
  core::HttpsRequest req;
  req.url = policy_url(domain);
  req.headers = {{"Accept", "text/plain"}, {"User-Agent", "deliverd"}};
  return client_->request(std::move(req), [cb = std::move(cb)](core::Result<core::HttpsResponse, core::HttpsError> r) {
    if (!r) return cb(core::Err(from_https(r.error())));
    cb(judge_policy_answer(r.value()));
  });
}

void PolicyFetcher::cancel(RequestId id) { client_->cancel(id); }

void PolicyFetcher::set_tls(std::shared_ptr<core::TlsContext> tls) {
  core::HttpsClientOptions o = client_->options();
  o.tls = std::move(tls);
  client_->set_options(std::move(o));
}

}  // namespace deliverd::tlspolicy
