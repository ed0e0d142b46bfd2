#pragma once
// The TLS-RPT aggregate report (RFC 8460 4) and the two forms it is delivered in (5.3): a
// multipart/report mail with the gzipped JSON attached, and the gzipped JSON POSTed over HTTPS.
// Also the stable text form of a policy and of a failure detail under which results are counted
// (in Redis, across the fleet) before a report is made of them.
#include <cstdint>
#include <ctime>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/https_client.h"
#include "core/names.h"
#include "core/outcome.h"
#include "core/result.h"
#include "smtp/mx_delivery.h"

namespace deliverd::tlspolicy {

enum class ReportPolicyType : uint8_t { Sts, Tlsa, NoPolicyFound };
inline constexpr core::Named<ReportPolicyType> kReportPolicyTypeNames[] = {
    {ReportPolicyType::Sts, "sts"}, {ReportPolicyType::Tlsa, "tlsa"}, {ReportPolicyType::NoPolicyFound, "no-policy-found"}};
static_assert(core::in_order(kReportPolicyTypeNames));
constexpr std::string_view to_string(ReportPolicyType t) { return core::name_in(kReportPolicyTypeNames, t); }

// Bounds on what a receiving domain (or its MX hosts) can make us store and send.
inline constexpr size_t kMaxReasonBytes = 256;
inline constexpr size_t kMaxHostBytes = 255;
inline constexpr size_t kMaxPolicyStrings = 64;

// The "policy" object of 4.4.
struct ReportPolicy {
  ReportPolicyType type = ReportPolicyType::NoPolicyFound;
  std::vector<std::string> strings;   // policy-string: the STS lines or the TLSA records
  std::string domain;                 // policy-domain
  std::vector<std::string> mx_hosts;  // mx-host: the STS mx patterns, or the TLSA host
  bool operator==(const ReportPolicy&) const = default;
};

// What MX delivery said about one attempt, as the policy it was made under: sts → "version:
// STSv1", "mode: …", "mx: …" (max_age is not known there and is left out); tlsa → the usable
// records as "3 1 1 <hex>". Strings and hosts are cut to the bounds above.
ReportPolicy report_policy(const smtp::TlsAttemptReport& a);

// One entry of failure-details (4.4); sending-mta-ip is left out when not known.
struct FailureDetail {
  core::TlsResult result = core::TlsResult::ValidationFailure;
  std::string sending_mta_ip;
  std::string receiving_mx_hostname;
  std::string receiving_ip;
  std::string reason;  // failure-reason-code
  int64_t count = 0;   // failed-session-count
  bool same_kind(const FailureDetail& o) const {
    return result == o.result && sending_mta_ip == o.sending_mta_ip &&
           receiving_mx_hostname == o.receiving_mx_hostname && receiving_ip == o.receiving_ip && reason == o.reason;
  }
};
FailureDetail failure_detail(const smtp::TlsAttemptReport& a);  // count 0

struct PolicyResults {
  ReportPolicy policy;
  int64_t successes = 0;
  int64_t failures = 0;
  std::vector<FailureDetail> details;
};

struct TlsReport {
  std::string organization;  // organization-name
  std::string contact;       // contact-info
  std::string report_id;
  int64_t start_s = 0, end_s = 0;  // date-range, seconds since the epoch (UTC)
  std::vector<PolicyResults> policies;
};

// "2026-12-02T00:00:00Z"
std::string rfc3339_utc(int64_t unix_s);
// The report as RFC 8460 4.4 spells it (compact JSON).
std::string report_json(const TlsReport& r);

// The text forms results are counted under: small JSON objects, so any byte a peer sent is
// escaped, read back strictly (nullopt for anything not written by these).
std::string policy_key(const ReportPolicy& p);
std::optional<ReportPolicy> policy_from_key(std::string_view key);
std::string detail_key(const FailureDetail& d);                     // without the count
std::optional<FailureDetail> detail_from_key(std::string_view key);  // count 0

// RFC 8460 5.1: "<submitter>!<policy-domain>!<begin-unix>!<end-unix>!<unique>.json.gz".
std::string report_filename(std::string_view submitter, std::string_view policy_domain, int64_t begin_s,
                            int64_t end_s, std::string_view unique);

struct ReportMailSpec {
  std::string from;       // envelope and From: the daemon's report address
  std::string to;         // the rua mailto: address
  std::string submitter;  // the reporting domain (TLS-Report-Submitter, the filename's sender)
  std::string policy_domain;
  std::string unique;  // makes the filename and Message-ID unique
  std::time_t now = 0;
};
// The mail of RFC 8460 5.3: multipart/report; report-type="tlsrpt", a short text part and the
// report as application/tlsrpt+gzip in base64, CRLF line endings, not yet DKIM-signed. The error
// names the field at fault (an address or domain that cannot go into a header).
core::Result<std::string, std::string> report_mail(const TlsReport& r, const ReportMailSpec& m);

// The HTTPS form (5.3.1): POST to the rua URL, Content-Type application/tlsrpt+gzip.
core::HttpsRequest report_post(const TlsReport& r, std::string url);

}  // namespace deliverd::tlspolicy
