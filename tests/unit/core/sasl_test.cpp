#include "core/sasl.h"

#include <gtest/gtest.h>

#include <string>

#include "core/base64.h"

namespace deliverd::core {
namespace {

using namespace std::string_literals;

TEST(Sasl, PlainIsNulUserNulPassword) {
  EXPECT_EQ(sasl_plain("alice@acme.example", "s3cret"), "\0alice@acme.example\0s3cret"s);
  // RFC 4616's example, base64 as it goes on the wire.
  EXPECT_EQ(base64_encode(sasl_plain("tim", "tanstaaftanstaaf")), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
}

TEST(Sasl, Xoauth2AsGoogleAndMicrosoftDocumentIt) {
  EXPECT_EQ(sasl_xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
            "user=someuser@example.com\x01"
            "auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01");
  EXPECT_EQ(base64_encode(kXoauth2ErrorAnswer), "");
}

TEST(Sasl, OauthbearerFollowsRfc7628) {
  // RFC 7628 section 4.1's example.
  EXPECT_EQ(
      sasl_oauthbearer("user@example.com", "server.example.com", 143, "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg=="),
      "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
      "auth=Bearer vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==\x01\x01");
  // "," and "=" in the authorisation identity are escaped (RFC 5801 saslname).
  EXPECT_EQ(sasl_oauthbearer("a,b=c", "h", 993, "t").substr(0, 14), "n,a=a=2Cb=3Dc,");
  EXPECT_EQ(base64_encode(kOauthbearerErrorAnswer), "AQ==");
}

}  // namespace
}  // namespace deliverd::core
