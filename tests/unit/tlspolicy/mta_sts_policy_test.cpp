// The MTA-STS policy body (RFC 8461 3.2) and the MX match (4.1).
#include "tlspolicy/mta_sts_policy.h"

#include <gtest/gtest.h>

#include "tests/unit/support/names_check.h"

namespace deliverd::tlspolicy {
namespace {

std::string error_of(std::string_view body) {
  auto r = parse_mta_sts_policy(body);
  return r ? "ok" : r.error();
}

TEST(MtaStsPolicy, TheRfcExampleParses) {
  auto p = parse_mta_sts_policy(
      "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\n"
      "max_age: 604800\r\n");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->mode, StsMode::Enforce);
  EXPECT_EQ(p->max_age_s, 604800);
  EXPECT_EQ(p->mx, (std::vector<std::string>{"mail.example.com", "*.example.net", "backupmx.example.com"}));
}

TEST(MtaStsPolicy, LfEndingsWhitespaceAndUnknownKeysAreAccepted) {
  auto p = parse_mta_sts_policy("version: STSv1\nmode:testing  \nmax_age:\t86400\nfuture_key: whatever\nmx: MX1.Example.COM.");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->mode, StsMode::Testing);
  EXPECT_EQ(p->max_age_s, 86400);
  EXPECT_EQ(p->mx, (std::vector<std::string>{"mx1.example.com"}));
}

TEST(MtaStsPolicy, ModeNoneNeedsNoMx) {
  auto p = parse_mta_sts_policy("version: STSv1\nmode: none\nmax_age: 0\n");
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->mode, StsMode::None);
  EXPECT_TRUE(p->mx.empty());
}

TEST(MtaStsPolicy, RequiredFieldsAreNamed) {
  EXPECT_EQ(error_of("mode: enforce\nmax_age: 1\nmx: a.b\n"), "the policy has no version");
  EXPECT_EQ(error_of("version: STSv1\nmax_age: 1\nmx: a.b\n"), "the policy has no mode");
  EXPECT_EQ(error_of("version: STSv1\nmode: enforce\nmx: a.b\n"), "the policy has no max_age");
  EXPECT_EQ(error_of("version: STSv1\nmode: enforce\nmax_age: 1\n"), "the policy has no mx");
  EXPECT_EQ(error_of(""), "the policy has no version");
}

TEST(MtaStsPolicy, BadValuesAreNamedWithTheirLine) {
  EXPECT_EQ(error_of("version: STSv2\n"), "policy line 1: version 'STSv2' is not STSv1");
  EXPECT_EQ(error_of("version: STSv1\nmode: Enforce\n"), "policy line 2: mode 'Enforce' is not enforce, testing or none");
  EXPECT_EQ(error_of("version: STSv1\nmax_age: -1\n"), "policy line 2: max_age '-1' is not digits only");
  EXPECT_EQ(error_of("version: STSv1\nmax_age: 31557601\n"), "policy line 2: max_age 31557601 is above 31557600");
  EXPECT_EQ(error_of("version: STSv1\nmax_age: 00000000001\n"), "policy line 2: max_age '00000000001' is not 1-10 digits");
  EXPECT_EQ(error_of("version: STSv1\nmx: a b\n"), "policy line 2: mx 'a b' is not a host name or *.domain");
  EXPECT_EQ(error_of("version: STSv1\nmx: *.\n"), "policy line 2: mx '*.' is not a host name or *.domain");
  EXPECT_EQ(error_of("version: STSv1\nmx: a.*.b\n"), "policy line 2: mx 'a.*.b' is not a host name or *.domain");
  EXPECT_EQ(error_of("version: STSv1\nmx: -a.b\n"), "policy line 2: mx '-a.b' is not a host name or *.domain");
  EXPECT_EQ(error_of("version: STSv1\nmode: enforce\nmode: none\n"), "policy line 3: mode is given twice");
  EXPECT_EQ(error_of("version: STSv1\ngarbage\n"), "policy line 2 'garbage' is not 'key: value'");
  EXPECT_EQ(error_of("version: STSv1\n: x\n"), "policy line 2 has a malformed key ''");
  EXPECT_EQ(error_of(std::string("version: STSv1\nmx: a\0b\n", 22)), "policy line 2 has a control character");
}

TEST(MtaStsPolicy, AnOversizedBodyIsRefused) {
  std::string body = "version: STSv1\nmode: enforce\nmax_age: 1\n";
  while (body.size() <= kMaxPolicyBytes) body += "mx: mx.example.com\n";
  EXPECT_EQ(error_of(body), "the policy is " + std::to_string(body.size()) + " bytes; at most 65536 are allowed");
}

TEST(MtaStsPolicy, ModeNamesRoundTrip) {
  deliverd::testing::expect_names_round_trip(
      kStsModeNames, [](StsMode m) { return to_string(m); }, [](std::string_view n) { return sts_mode_from_name(n); });
}

TEST(MatchesMx, ExactNamesIgnoreCaseAndTheTrailingDot) {
  MtaStsPolicy p{StsMode::Enforce, 1, {"mail.example.com"}};
  EXPECT_TRUE(matches_mx(p, "mail.example.com"));
  EXPECT_TRUE(matches_mx(p, "MAIL.Example.com."));
  EXPECT_FALSE(matches_mx(p, "mail.example.com.evil"));
  EXPECT_FALSE(matches_mx(p, "xmail.example.com"));
  EXPECT_FALSE(matches_mx(p, ""));
  EXPECT_FALSE(matches_mx(p, "."));
}

TEST(MatchesMx, AWildcardStandsForExactlyOneLeftmostLabel) {
  MtaStsPolicy p{StsMode::Enforce, 1, {"*.example.net"}};
  EXPECT_TRUE(matches_mx(p, "mx1.example.net"));
  EXPECT_TRUE(matches_mx(p, "MX1.EXAMPLE.NET."));
  EXPECT_FALSE(matches_mx(p, "example.net"));
  EXPECT_FALSE(matches_mx(p, "a.b.example.net"));
  EXPECT_FALSE(matches_mx(p, ".example.net"));
  EXPECT_FALSE(matches_mx(p, "mx1.example.network"));
}

TEST(MatchesMx, AnyPatternOfThePolicyWillDo) {
  auto p = parse_mta_sts_policy("version: STSv1\nmode: enforce\nmax_age: 1\nmx: a.example.com\nmx: *.b.example.com\n");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(matches_mx(*p, "a.example.com"));
  EXPECT_TRUE(matches_mx(*p, "x.b.example.com"));
  EXPECT_FALSE(matches_mx(*p, "b.example.com"));
  EXPECT_FALSE(matches_mx(MtaStsPolicy{StsMode::None, 0, {}}, "a.example.com"));
}

}  // namespace
}  // namespace deliverd::tlspolicy
