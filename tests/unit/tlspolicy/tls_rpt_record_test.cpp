#include "tlspolicy/tls_rpt_record.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace deliverd::tlspolicy {
namespace {

TlsRptRecord parsed(std::vector<std::string> answers) {
  auto r = parse_tls_rpt_record(answers);
  EXPECT_TRUE(r) << r.error();
  if (!r || !r.value()) {
    ADD_FAILURE() << "no record";
    return {};
  }
  return *r.value();
}

std::string error_of(std::vector<std::string> answers) {
  auto r = parse_tls_rpt_record(answers);
  EXPECT_FALSE(r) << "accepted";
  return r ? "" : r.error();
}

TEST(TlsRptRecord, KeepsMailtoAndHttpsInOrder) {
  auto rec = parsed({"v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/tls"});
  ASSERT_EQ(rec.rua.size(), 2u);
  EXPECT_EQ(rec.rua[0].scheme, ReportUri::Scheme::Mailto);
  EXPECT_EQ(rec.rua[0].target, "tlsrpt@example.com");
  EXPECT_EQ(rec.rua[1].scheme, ReportUri::Scheme::Https);
  EXPECT_EQ(rec.rua[1].target, "https://reports.example.com/tls");
  EXPECT_EQ(rec.ignored, 0u);
}

TEST(TlsRptRecord, OtherSchemesAreIgnoredNotErrors) {
  auto rec = parsed({"v=TLSRPTv1;rua=ftp://x.example/,mailto:a@example.com , http://x.example/"});
  ASSERT_EQ(rec.rua.size(), 1u);
  EXPECT_EQ(rec.rua[0].target, "a@example.com");
  EXPECT_EQ(rec.ignored, 2u);
}

TEST(TlsRptRecord, MailtoHeaderFieldsArePercentDecodedAddressOnly) {
  auto rec = parsed({"v=TLSRPTv1; rua=mailto:tls%2Brpt@example.com?subject=hi;"});
  ASSERT_EQ(rec.rua.size(), 1u);
  EXPECT_EQ(rec.rua[0].target, "tls+rpt@example.com");
}

TEST(TlsRptRecord, ExtensionsAndTrailingDelimiterAreAllowed) {
  auto rec = parsed({"v=TLSRPTv1 ; ext.1=yes ; rua=https://r.example/ ;"});
  ASSERT_EQ(rec.rua.size(), 1u);
}

TEST(TlsRptRecord, OtherTxtRecordsAreNotOurs) {
  auto r = parse_tls_rpt_record({"v=spf1 -all", "v=TLSRPTv10; rua=mailto:a@example.com", "google-site=abc"});
  ASSERT_TRUE(r) << r.error();
  EXPECT_FALSE(r.value()) << "no TLS-RPT record: no reporting";
  auto none = parse_tls_rpt_record({});
  ASSERT_TRUE(none);
  EXPECT_FALSE(none.value());
}

TEST(TlsRptRecord, VersionIsCaseSensitiveAndFirst) {
  auto r = parse_tls_rpt_record({"v=tlsrptv1; rua=mailto:a@example.com", "rua=mailto:a@example.com; v=TLSRPTv1"});
  ASSERT_TRUE(r);
  EXPECT_FALSE(r.value());
}

TEST(TlsRptRecord, TwoRecordsMeanNoReporting) {
  EXPECT_EQ(error_of({"v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"}),
            "the domain publishes 2 _smtp._tls records; exactly one is allowed");
}

TEST(TlsRptRecord, ErrorsNameWhatWasWrong) {
  EXPECT_EQ(error_of({"v=TLSRPTv1"}), "the _smtp._tls record has no ';' after v=TLSRPTv1");
  EXPECT_EQ(error_of({"v=TLSRPTv1;"}), "the _smtp._tls record has no rua");
  EXPECT_EQ(error_of({"v=TLSRPTv1; ext=1"}), "the _smtp._tls record has no rua");
  EXPECT_EQ(error_of({"v=TLSRPTv1; rua=ftp://x.example/"}), "the _smtp._tls record names no mailto: or https: URI");
  EXPECT_EQ(error_of({"v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com"}),
            "the _smtp._tls record has more than one rua");
  EXPECT_EQ(error_of({"v=TLSRPTv1;; rua=mailto:a@example.com"}), "the _smtp._tls record has an empty field");
  EXPECT_EQ(error_of({"v=TLSRPTv1; rua"}), "the _smtp._tls record field 'rua' has no '='");
  EXPECT_EQ(error_of({"v=TLSRPTv1; rua=mailto:a@example.com,"}), "the _smtp._tls record has an empty rua URI");
  EXPECT_EQ(error_of({"v=TLSRPTv1; rua=mailto:a@example.com; _x=1"}),
            "the _smtp._tls record field '_x=1' is malformed");
  EXPECT_NE(error_of({"v=TLSRPTv1; rua=mailto:no-at-sign"}).find("rua URI 'mailto:no-at-sign'"), std::string::npos);
  EXPECT_NE(error_of({"v=TLSRPTv1; rua=https://user@r.example/"}).find("rua URI 'https://user@r.example/'"),
            std::string::npos);
  EXPECT_NE(error_of({"v=TLSRPTv1; rua=mailto:a%zz@example.com"}).find("bad percent-encoding"), std::string::npos);
}

TEST(TlsRptRecord, BoundedInAnswersUrisAndSize) {
  std::vector<std::string> many(kMaxTlsRptAnswers + 1, "v=spf1 -all");
  EXPECT_EQ(error_of(many), "the domain publishes 17 _smtp._tls TXT records; at most 16 are read");
  EXPECT_EQ(error_of({"v=TLSRPTv1; rua=mailto:a@example.com; x=" + std::string(5000, 'a')}),
            "the _smtp._tls record is 5040 bytes; at most 4096 are read");
  std::string rua = "v=TLSRPTv1; rua=";
  for (int i = 0; i < 20; ++i) rua += (i ? "," : "") + std::string("mailto:r") + std::to_string(i) + "@example.com";
  auto rec = parsed({rua});
  EXPECT_EQ(rec.rua.size(), kMaxTlsRptUris);
  EXPECT_EQ(rec.ignored, 20 - kMaxTlsRptUris);
}

TEST(TlsRptRecord, ADuplicateUriIsSentOnce) {
  auto rec = parsed({"v=TLSRPTv1; rua=mailto:a@example.com,mailto:a@example.com"});
  EXPECT_EQ(rec.rua.size(), 1u);
}

}  // namespace
}  // namespace deliverd::tlspolicy
