// The _mta-sts TXT record (RFC 8461 3.1): one STS record with an id, or none, or a named error.
#include "tlspolicy/mta_sts_record.h"

#include <gtest/gtest.h>

namespace deliverd::tlspolicy {
namespace {

std::string id_of(const std::vector<std::string>& answers) {
  auto r = parse_mta_sts_record(answers);
  if (!r) return "error: " + r.error();
  return r.value() ? r.value()->id : "none";
}

TEST(MtaStsRecord, TheRfcExampleGivesItsId) {
  EXPECT_EQ(id_of({"v=STSv1; id=20160831085700Z;"}), "20160831085700Z");
  EXPECT_EQ(id_of({"v=STSv1;id=abc"}), "abc");
  EXPECT_EQ(id_of({"v=STSv1 \t; \tid=abc \t; "}), "abc");
}

TEST(MtaStsRecord, OtherTxtRecordsAreSkipped) {
  EXPECT_EQ(id_of({"v=spf1 -all", "google-site-verification=x", "v=STSv1; id=1"}), "1");
  EXPECT_EQ(id_of({"v=spf1 -all"}), "none");
  EXPECT_EQ(id_of({}), "none");
  EXPECT_EQ(id_of({"v=STSv10; id=1"}), "none");  // another version is not ours
  EXPECT_EQ(id_of({"V=STSV1; id=1"}), "none");    // the version is case-sensitive
}

TEST(MtaStsRecord, UnknownFieldsAreIgnored) {
  EXPECT_EQ(id_of({"v=STSv1; ext_1=x-y.z; id=A1b2; other.thing=1"}), "A1b2");
}

TEST(MtaStsRecord, TwoStsRecordsAreAnError) {
  EXPECT_EQ(id_of({"v=STSv1; id=1", "v=STSv1; id=2"}),
            "error: the domain publishes 2 _mta-sts records; exactly one is allowed");
}

TEST(MtaStsRecord, TheIdIsRequiredAndBounded) {
  EXPECT_EQ(id_of({"v=STSv1;"}), "error: the _mta-sts record has no id");
  EXPECT_EQ(id_of({"v=STSv1"}), "error: the _mta-sts record has no ';' after v=STSv1");
  EXPECT_EQ(id_of({"v=STSv1; id="}), "error: the _mta-sts record id '' is not 1-32 characters");
  EXPECT_EQ(id_of({"v=STSv1; id=" + std::string(32, 'a')}), std::string(32, 'a'));
  EXPECT_EQ(id_of({"v=STSv1; id=" + std::string(33, 'a')}),
            "error: the _mta-sts record id '" + std::string(33, 'a') + "' is not 1-32 characters");
  EXPECT_EQ(id_of({"v=STSv1; id=ab-c"}), "error: the _mta-sts record id 'ab-c' is not letters and digits only");
  EXPECT_EQ(id_of({"v=STSv1; id=1; id=2"}), "error: the _mta-sts record has more than one id");
}

TEST(MtaStsRecord, MalformedFieldsAreNamed) {
  EXPECT_EQ(id_of({"v=STSv1; id=1;; x=y"}), "error: the _mta-sts record has an empty field");
  EXPECT_EQ(id_of({"v=STSv1; id=1; junk"}), "error: the _mta-sts record field 'junk' has no '='");
  EXPECT_EQ(id_of({"v=STSv1; id=1; -x=y"}), "error: the _mta-sts record field '-x=y' is malformed");
  EXPECT_EQ(id_of({std::string("v=STSv1; id=1; x=\x01")}), "error: the _mta-sts record field 'x=?' is malformed");
}

}  // namespace
}  // namespace deliverd::tlspolicy
