#include "tlspolicy/tls_report.h"

#include <simdjson.h>

#include "core/ascii.h"
#include "core/deflate.h"
#include "core/hex.h"
#include "core/json_writer.h"
#include "smtp/composer.h"

namespace deliverd::tlspolicy {

namespace {

std::string cut(std::string_view s, size_t n) { return std::string(s.substr(0, n)); }

// Host names without case, so that one MX spelled two ways is counted as one.
std::string host(std::string_view s) { return core::ascii_lowercase(s.substr(0, kMaxHostBytes)); }

std::string_view sts_mode_name(smtp::StsMode m) {
  switch (m) {
    case smtp::StsMode::Enforce: return "enforce";
    case smtp::StsMode::Testing: return "testing";
    case smtp::StsMode::None: break;
  }
  return "none";
}

std::optional<ReportPolicyType> policy_type_from_name(std::string_view n) {
  return core::value_in(kReportPolicyTypeNames, n);
}

using Strings = std::vector<std::string>;

bool read_strings(simdjson::ondemand::value v, Strings& out, size_t max) {
  simdjson::ondemand::array a;
  if (v.get_array().get(a) != simdjson::SUCCESS) return false;
  for (auto e : a) {
    std::string_view s;
    if (e.get_string().get(s) != simdjson::SUCCESS || out.size() >= max) return false;
    out.emplace_back(s);
  }
  return true;
}

void write_strings(core::JsonWriter& w, std::string_view k, const Strings& v) {
  w.key(k).begin_array();
  for (const auto& s : v) w.value(s);
  w.end_array();
}

// A header value we write must not be able to start another header.
bool header_safe(std::string_view s) { return !s.empty() && s.find_first_of("\r\n") == std::string_view::npos; }

}  // namespace

ReportPolicy report_policy(const smtp::TlsAttemptReport& a) {
  ReportPolicy p;
  p.domain = host(a.policy_domain);
  switch (a.policy_type) {
    case smtp::TlsAttemptReport::PolicyType::Sts:
      p.type = ReportPolicyType::Sts;
      p.strings.push_back("version: STSv1");
      p.strings.push_back("mode: " + std::string(sts_mode_name(a.sts_mode)));
      for (const auto& mx : a.sts_mx) {
        if (p.strings.size() >= kMaxPolicyStrings) break;
        p.strings.push_back("mx: " + host(mx));
        p.mx_hosts.push_back(host(mx));
      }
      break;
    case smtp::TlsAttemptReport::PolicyType::Tlsa:
      p.type = ReportPolicyType::Tlsa;
      for (const auto& r : a.tlsa) {
        if (p.strings.size() >= kMaxPolicyStrings) break;
        p.strings.push_back(std::to_string(r.usage) + " " + std::to_string(r.selector) + " " +
                            std::to_string(r.mtype) + " " + core::to_hex(r.data));
      }
      if (!a.mx_host.empty()) p.mx_hosts.push_back(host(a.mx_host));
      break;
    case smtp::TlsAttemptReport::PolicyType::NoPolicyFound:
      p.type = ReportPolicyType::NoPolicyFound;
      break;
  }
  return p;
}

FailureDetail failure_detail(const smtp::TlsAttemptReport& a) {
  FailureDetail d;
  d.result = a.result;
  d.receiving_mx_hostname = host(a.mx_host);
  d.receiving_ip = cut(a.receiving_ip, 64);
  d.sending_mta_ip = cut(a.sending_ip, 64);
  d.reason = cut(a.detail, kMaxReasonBytes);
  return d;
}

std::string rfc3339_utc(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string report_json(const TlsReport& r) {
  core::JsonWriter w;
  w.begin_object();
  w.field("organization-name", r.organization);
  w.key("date-range").begin_object();
  w.field("start-datetime", rfc3339_utc(r.start_s));
  w.field("end-datetime", rfc3339_utc(r.end_s));
  w.end_object();
  w.field("contact-info", r.contact);
  w.field("report-id", r.report_id);
  w.key("policies").begin_array();
  for (const auto& pr : r.policies) {
    w.begin_object();
    w.key("policy").begin_object();
    w.field("policy-type", to_string(pr.policy.type));
    if (!pr.policy.strings.empty()) write_strings(w, "policy-string", pr.policy.strings);
    w.field("policy-domain", pr.policy.domain);
    if (!pr.policy.mx_hosts.empty()) write_strings(w, "mx-host", pr.policy.mx_hosts);
    w.end_object();
    w.key("summary").begin_object();
    w.field("total-successful-session-count", pr.successes);
    w.field("total-failure-session-count", pr.failures);
    w.end_object();
    if (!pr.details.empty()) {
      w.key("failure-details").begin_array();
      for (const auto& d : pr.details) {
        w.begin_object();
        w.field("result-type", core::to_string(d.result));
        if (!d.sending_mta_ip.empty()) w.field("sending-mta-ip", d.sending_mta_ip);
        if (!d.receiving_mx_hostname.empty()) w.field("receiving-mx-hostname", d.receiving_mx_hostname);
        if (!d.receiving_ip.empty()) w.field("receiving-ip", d.receiving_ip);
        w.field("failed-session-count", d.count);
        if (!d.reason.empty()) w.field("failure-reason-code", d.reason);
        w.end_object();
      }
      w.end_array();
    }
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.take();
}

std::string policy_key(const ReportPolicy& p) {
  core::JsonWriter w;
  w.begin_object();
  w.field("t", to_string(p.type));
  write_strings(w, "s", p.strings);
  w.field("d", p.domain);
  write_strings(w, "m", p.mx_hosts);
  w.end_object();
  return w.take();
}

std::optional<ReportPolicy> policy_from_key(std::string_view key) {
  // Read back from Redis, which the fleet shares: checked like any input.
  if (key.size() > 64 * 1024) return std::nullopt;
  simdjson::padded_string padded(key);
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) return std::nullopt;
  ReportPolicy p;
  std::string_view s;
  if (doc["t"].get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
  auto t = policy_type_from_name(s);
  if (!t) return std::nullopt;
  p.type = *t;
  simdjson::ondemand::value v;
  if (doc["s"].get(v) != simdjson::SUCCESS || !read_strings(v, p.strings, kMaxPolicyStrings)) return std::nullopt;
  if (doc["d"].get_string().get(s) != simdjson::SUCCESS || s.size() > kMaxHostBytes) return std::nullopt;
  p.domain = std::string(s);
  if (doc["m"].get(v) != simdjson::SUCCESS || !read_strings(v, p.mx_hosts, kMaxPolicyStrings)) return std::nullopt;
  return p;
}

std::string detail_key(const FailureDetail& d) {
  core::JsonWriter w;
  w.begin_object();
  w.field("r", core::to_string(d.result));
  w.field("s", d.sending_mta_ip);
  w.field("h", d.receiving_mx_hostname);
  w.field("i", d.receiving_ip);
  w.field("c", d.reason);
  w.end_object();
  return w.take();
}

std::optional<FailureDetail> detail_from_key(std::string_view key) {
  if (key.size() > 4 * 1024) return std::nullopt;
  simdjson::padded_string padded(key);
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) return std::nullopt;
  FailureDetail d;
  std::string_view s;
  if (doc["r"].get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
  auto r = core::tls_result_from_name(s);
  if (!r || *r == core::TlsResult::None || *r == core::TlsResult::Success) return std::nullopt;
  d.result = *r;
  if (doc["s"].get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
  d.sending_mta_ip = std::string(s);
  if (doc["h"].get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
  d.receiving_mx_hostname = std::string(s);
  if (doc["i"].get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
  d.receiving_ip = std::string(s);
  if (doc["c"].get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
  d.reason = std::string(s);
  return d;
}

std::string report_filename(std::string_view submitter, std::string_view policy_domain, int64_t begin_s,
                            int64_t end_s, std::string_view unique) {
  return std::string(submitter) + "!" + std::string(policy_domain) + "!" + std::to_string(begin_s) + "!" +
         std::to_string(end_s) + "!" + std::string(unique) + ".json.gz";
}

core::Result<std::string, std::string> report_mail(const TlsReport& r, const ReportMailSpec& m) {
  if (!header_safe(m.from)) return core::Err(std::string("tls_rpt_from: not a usable From address"));
  if (!header_safe(m.to)) return core::Err(std::string("rua: not a usable To address"));
  if (!header_safe(m.submitter)) return core::Err(std::string("submitter: not a usable domain"));
  if (!header_safe(m.policy_domain)) return core::Err(std::string("policy domain: not a usable domain"));
  // The boundary is made of the unique id, which none of the parts can contain in base64 or
  // in the fixed text part.
  const std::string boundary = "=_tlsrpt_" + m.unique;
  const std::string filename = report_filename(m.submitter, m.policy_domain, r.start_s, r.end_s, m.unique);
  std::string msg;
  auto add = [&msg](std::string_view name, std::string_view value, std::string_view field) -> bool {
    auto h = smtp::header_field(name, value, field);
    if (!h) return false;
    msg += *h;
    return true;
  };
  const std::string subject =
      "Report Domain: " + m.policy_domain + " Submitter: " + m.submitter + " Report-ID: <" + r.report_id + ">";
  if (!add("From", m.from, "tls_rpt_from") || !add("To", m.to, "rua") ||
      !add("Date", smtp::rfc5322_date(m.now), "date") || !add("Subject", subject, "subject") ||
      !add("Message-ID", "<" + m.unique + "." + m.policy_domain + "@" + m.submitter + ">", "message_id") ||
      !add("TLS-Report-Domain", m.policy_domain, "policy domain") ||
      !add("TLS-Report-Submitter", m.submitter, "submitter") || !add("MIME-Version", "1.0", "mime"))
    return core::Err(std::string("the report's header fields cannot be written for ") + m.policy_domain);
  msg += "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"" + boundary + "\"\r\n\r\n";
  msg += "This is a multipart message in MIME format.\r\n\r\n";
  msg += "--" + boundary + "\r\n";
  msg += "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
  msg += "This is an aggregate TLS report (RFC 8460) for " + m.policy_domain + " from " + m.submitter + ".\r\n\r\n";
  msg += "--" + boundary + "\r\n";
  msg += "Content-Type: application/tlsrpt+gzip;\r\n\tname=\"" + filename + "\"\r\n";
  msg += "Content-Transfer-Encoding: base64\r\n";
  msg += "Content-Disposition: attachment;\r\n\tfilename=\"" + filename + "\"\r\n\r\n";
  msg += smtp::base64_lines(core::gzip(report_json(r)));
  if (msg.size() < 2 || msg.compare(msg.size() - 2, 2, "\r\n") != 0) msg += "\r\n";
  msg += "\r\n--" + boundary + "--\r\n";
  return msg;
}

core::HttpsRequest report_post(const TlsReport& r, std::string url) {
  core::HttpsRequest req;
  req.method = "POST";
  req.url = std::move(url);
  req.headers.emplace_back("Content-Type", "application/tlsrpt+gzip");
  req.body = core::gzip(report_json(r));
  return req;
}

}  // namespace deliverd::tlspolicy
