#include "tlspolicy/tls_report.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <string>

#include "core/base64.h"
#include "core/deflate.h"

namespace deliverd::tlspolicy {
namespace {

namespace od = simdjson::ondemand;

smtp::TlsAttemptReport sts_attempt() {
  smtp::TlsAttemptReport a;
  a.policy_type = smtp::TlsAttemptReport::PolicyType::Sts;
  a.policy_domain = "example.net";
  a.sts_mode = smtp::StsMode::Testing;
  a.sts_id = "20261203";
  a.sts_mx = {"mx1.example.net", "*.mail.example.net"};
  a.mx_host = "mx1.example.net";
  a.receiving_ip = "192.0.2.10";
  a.sending_ip = "198.51.100.7";
  a.result = core::TlsResult::CertificateHostMismatch;
  a.detail = "certificate does not name mx1.example.net";
  return a;
}

TlsReport sample_report() {
  TlsReport r;
  r.organization = "Acme Mail";
  r.contact = "postmaster@acme.example";
  r.report_id = "2026-12-02.example.net.abc@acme.example";
  r.start_s = 1796169600;  // 2026-12-02T00:00:00Z
  r.end_s = r.start_s + 86400 - 1;
  PolicyResults pr;
  pr.policy = report_policy(sts_attempt());
  pr.successes = 7;
  pr.failures = 2;
  FailureDetail d = failure_detail(sts_attempt());
  d.count = 2;
  pr.details.push_back(d);
  r.policies.push_back(pr);
  PolicyResults none;
  none.policy.type = ReportPolicyType::NoPolicyFound;
  none.policy.domain = "example.net";
  none.successes = 3;
  r.policies.push_back(none);
  return r;
}

TEST(TlsReport, StsPolicyStringsAreThePolicyLines) {
  auto p = report_policy(sts_attempt());
  EXPECT_EQ(p.type, ReportPolicyType::Sts);
  EXPECT_EQ(p.domain, "example.net");
  EXPECT_EQ(p.strings, (std::vector<std::string>{"version: STSv1", "mode: testing", "mx: mx1.example.net",
                                                 "mx: *.mail.example.net"}));
  EXPECT_EQ(p.mx_hosts, (std::vector<std::string>{"mx1.example.net", "*.mail.example.net"}));
}

TEST(TlsReport, TlsaPolicyStringsAreTheRecordsInHex) {
  smtp::TlsAttemptReport a;
  a.policy_type = smtp::TlsAttemptReport::PolicyType::Tlsa;
  a.policy_domain = "example.org";
  a.mx_host = "mx.example.org";
  a.tlsa.push_back(core::DaneRecord{3, 1, 1, std::string("\x01\xab\xff", 3)});
  auto p = report_policy(a);
  EXPECT_EQ(p.type, ReportPolicyType::Tlsa);
  EXPECT_EQ(p.strings, (std::vector<std::string>{"3 1 1 01abff"}));
  EXPECT_EQ(p.mx_hosts, (std::vector<std::string>{"mx.example.org"}));
}

TEST(TlsReport, JsonHasTheFieldsOfRfc8460) {
  const std::string json = report_json(sample_report());
  simdjson::padded_string padded(json);
  od::parser parser;
  od::document doc = parser.iterate(padded);
  EXPECT_EQ(std::string_view(doc["organization-name"].get_string()), "Acme Mail");
  auto range = doc["date-range"].get_object();
  EXPECT_EQ(std::string_view(range["start-datetime"].get_string()), "2026-12-02T00:00:00Z");
  EXPECT_EQ(std::string_view(range["end-datetime"].get_string()), "2026-12-02T23:59:59Z");
  EXPECT_EQ(std::string_view(doc["contact-info"].get_string()), "postmaster@acme.example");
  EXPECT_EQ(std::string_view(doc["report-id"].get_string()), "2026-12-02.example.net.abc@acme.example");
  int i = 0;
  for (auto entry : doc["policies"].get_array()) {
    auto obj = entry.get_object();
    auto policy = obj["policy"].get_object();
    if (i == 0) {
      EXPECT_EQ(std::string_view(policy["policy-type"].get_string()), "sts");
      std::vector<std::string> strings;
      for (auto s : policy["policy-string"].get_array()) strings.emplace_back(std::string_view(s.get_string()));
      EXPECT_EQ(strings.size(), 4u);
      EXPECT_EQ(std::string_view(policy["policy-domain"].get_string()), "example.net");
      int hosts = 0;
      for (auto h : policy["mx-host"].get_array()) hosts += !std::string_view(h.get_string()).empty();
      EXPECT_EQ(hosts, 2);
      auto summary = obj["summary"].get_object();
      EXPECT_EQ(int64_t(summary["total-successful-session-count"].get_int64()), 7);
      EXPECT_EQ(int64_t(summary["total-failure-session-count"].get_int64()), 2);
      int details = 0;
      for (auto d : obj["failure-details"].get_array()) {
        auto fd = d.get_object();
        EXPECT_EQ(std::string_view(fd["result-type"].get_string()), "certificate-host-mismatch");
        EXPECT_EQ(std::string_view(fd["sending-mta-ip"].get_string()), "198.51.100.7");
        EXPECT_EQ(std::string_view(fd["receiving-mx-hostname"].get_string()), "mx1.example.net");
        EXPECT_EQ(std::string_view(fd["receiving-ip"].get_string()), "192.0.2.10");
        EXPECT_EQ(int64_t(fd["failed-session-count"].get_int64()), 2);
        EXPECT_EQ(std::string_view(fd["failure-reason-code"].get_string()),
                  "certificate does not name mx1.example.net");
        ++details;
      }
      EXPECT_EQ(details, 1);
    } else {
      EXPECT_EQ(std::string_view(policy["policy-type"].get_string()), "no-policy-found");
      EXPECT_EQ(std::string_view(policy["policy-domain"].get_string()), "example.net");
      EXPECT_EQ(int64_t(obj["summary"]["total-successful-session-count"].get_int64()), 3);
    }
    ++i;
  }
  EXPECT_EQ(i, 2);
}

TEST(TlsReport, KeysRoundTripAndRefuseForeignText) {
  auto p = report_policy(sts_attempt());
  auto back = policy_from_key(policy_key(p));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, p);
  auto d = failure_detail(sts_attempt());
  auto dback = detail_from_key(detail_key(d));
  ASSERT_TRUE(dback);
  EXPECT_TRUE(dback->same_kind(d));
  EXPECT_FALSE(policy_from_key("{\"t\":\"dmarc\",\"s\":[],\"d\":\"x\",\"m\":[]}"));
  EXPECT_FALSE(policy_from_key("not json"));
  EXPECT_FALSE(detail_from_key("{\"r\":\"success\",\"s\":\"\",\"h\":\"\",\"i\":\"\",\"c\":\"\"}"));
}

TEST(TlsReport, FilenameFollowsSection51) {
  EXPECT_EQ(report_filename("acme.example", "example.net", 1796169600, 1796255999, "abc"),
            "acme.example!example.net!1796169600!1796255999!abc.json.gz");
}

// The part between the attachment's blank line and the closing boundary, base64-decoded.
std::string attachment_of(const std::string& mail, const std::string& boundary) {
  size_t ct = mail.find("Content-Type: application/tlsrpt+gzip");
  if (ct == std::string::npos) return "";
  size_t body = mail.find("\r\n\r\n", ct);
  size_t end = mail.find("\r\n--" + boundary + "--", body);
  std::string b64;
  for (char c : mail.substr(body + 4, end - body - 4))
    if (c != '\r' && c != '\n') b64 += c;
  auto raw = core::base64_decode(b64);
  return raw ? *raw : "";
}

TEST(TlsReport, MailHasTheHeadersOfSection53AndTheGzippedReport) {
  TlsReport r = sample_report();
  ReportMailSpec m;
  m.from = "tlsrpt@acme.example";
  m.to = "reports@example.net";
  m.submitter = "acme.example";
  m.policy_domain = "example.net";
  m.unique = "u123";
  m.now = 1796256000;
  auto mail = report_mail(r, m);
  ASSERT_TRUE(mail) << mail.error();
  const std::string& t = *mail;
  EXPECT_NE(t.find("From: tlsrpt@acme.example\r\n"), std::string::npos);
  EXPECT_NE(t.find("To: reports@example.net\r\n"), std::string::npos);
  EXPECT_NE(t.find("Subject: Report Domain: example.net Submitter: acme.example Report-ID:"), std::string::npos);
  EXPECT_NE(t.find("TLS-Report-Domain: example.net\r\n"), std::string::npos);
  EXPECT_NE(t.find("TLS-Report-Submitter: acme.example\r\n"), std::string::npos);
  EXPECT_NE(t.find("Content-Type: multipart/report; report-type=\"tlsrpt\";"), std::string::npos);
  EXPECT_NE(t.find("filename=\"acme.example!example.net!1796169600!1796255999!u123.json.gz\""), std::string::npos);
  EXPECT_NE(t.find("Content-Transfer-Encoding: base64"), std::string::npos);
  EXPECT_EQ(t.find("\n\n"), std::string::npos) << "CRLF only";
  auto json = core::gunzip(attachment_of(t, "=_tlsrpt_u123"), 1 << 20);
  ASSERT_TRUE(json) << json.error();
  EXPECT_EQ(*json, report_json(r));
}

TEST(TlsReport, MailRefusesHeaderInjection) {
  ReportMailSpec m;
  m.from = "a@acme.example";
  m.to = "x@example.net\r\nBcc: victim@example.com";
  m.submitter = "acme.example";
  m.policy_domain = "example.net";
  m.unique = "u";
  auto mail = report_mail(sample_report(), m);
  ASSERT_FALSE(mail);
  EXPECT_EQ(mail.error(), "rua: not a usable To address");
}

TEST(TlsReport, PostIsGzippedJsonWithTheTlsrptType) {
  auto req = report_post(sample_report(), "https://r.example/tls");
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.url, "https://r.example/tls");
  ASSERT_EQ(req.headers.size(), 1u);
  EXPECT_EQ(req.headers[0].first, "Content-Type");
  EXPECT_EQ(req.headers[0].second, "application/tlsrpt+gzip");
  auto json = core::gunzip(req.body, 1 << 20);
  ASSERT_TRUE(json) << json.error();
  EXPECT_EQ(*json, report_json(sample_report()));
}

}  // namespace
}  // namespace deliverd::tlspolicy
