#include "oauth/token_response.h"

#include <gtest/gtest.h>

namespace deliverd::oauth {
namespace {

TEST(TokenAnswer, AGrantCarriesTheTokenItsLifetimeAndARotatedRefreshToken) {
  auto r = parse_token_answer(200, R"({"access_token":"ya29.a0Af","expires_in":3599,"refresh_token":"1//0new",
      "scope":"https://mail.google.com/","token_type":"Bearer"})");
  ASSERT_TRUE(r.ok()) << r.error().code;
  EXPECT_EQ(r->access_token, "ya29.a0Af");
  EXPECT_EQ(r->expires_in_s, 3599);
  EXPECT_EQ(r->refresh_token, "1//0new");
  EXPECT_EQ(r->scope, "https://mail.google.com/");
}

TEST(TokenAnswer, LifetimeMayBeAStringOrMissing) {
  auto s = parse_token_answer(200, R"({"access_token":"t","expires_in":"5","token_type":"bearer"})");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->expires_in_s, 5);
  EXPECT_EQ(s->refresh_token, "");
  auto missing = parse_token_answer(200, R"({"access_token":"t","token_type":"Bearer"})");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->expires_in_s, kDefaultExpiresInS);
}

TEST(TokenAnswer, InvalidGrantMeansRevoked) {
  auto r = parse_token_answer(400, R"({"error":"invalid_grant","error_description":"Token has been expired or revoked."})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, TokenErrorKind::Revoked);
  EXPECT_EQ(r.error().code, "invalid_grant");
  EXPECT_EQ(r.error().description, "Token has been expired or revoked.");
}

TEST(TokenAnswer, ClientErrorsAreTheOperatorsNotTheMailboxs) {
  for (const char* e : {"invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type"}) {
    auto r = parse_token_answer(401, std::string(R"({"error":")") + e + R"("})");
    ASSERT_FALSE(r.ok()) << e;
    EXPECT_EQ(r.error().kind, TokenErrorKind::ClientRejected) << e;
    EXPECT_EQ(r.error().code, e);
  }
}

TEST(TokenAnswer, ThrottlingAndServerErrorsAreUnavailable) {
  for (int status : {429, 500, 502, 503}) {
    auto r = parse_token_answer(status, "<html>busy</html>");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, TokenErrorKind::Unavailable);
    EXPECT_EQ(r.error().code, "http_" + std::to_string(status));
  }
  auto unknown = parse_token_answer(400, R"({"error":"temporarily_unavailable"})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().kind, TokenErrorKind::Unavailable);
}

TEST(TokenAnswer, MalformedAnswersAreNamed) {
  struct Case {
    int status;
    const char* body;
    const char* code;
  } cases[] = {
      {200, "not json", "not_json"},
      {200, R"({"access_token":"t","token_type":"Bearer"} trailing)", "not_json"},
      {200, R"(["access_token"])", "not_json"},
      {200, R"({"token_type":"Bearer","expires_in":5})", "no_access_token"},
      {200, R"({"access_token":"","token_type":"Bearer"})", "bad_access_token"},
      {200, R"({"access_token":"a b","token_type":"Bearer"})", "bad_access_token"},
      {200, R"({"access_token":"a\r\nAUTH","token_type":"Bearer"})", "bad_access_token"},
      {200, R"({"access_token":42,"token_type":"Bearer"})", "bad_access_token"},
      {200, R"({"access_token":"t"})", "bad_token_type"},
      {200, R"({"access_token":"t","token_type":"MAC"})", "bad_token_type"},
      {200, R"({"access_token":"t","token_type":"Bearer","expires_in":-5})", "bad_expires_in"},
      {200, R"({"access_token":"t","token_type":"Bearer","expires_in":1e300})", "bad_expires_in"},
      {200, R"({"access_token":"t","token_type":"Bearer","expires_in":"soon"})", "bad_expires_in"},
      {200, R"({"access_token":"t","token_type":"Bearer","refresh_token":"x\ny"})", "bad_refresh_token"},
      {400, "{}", "bad_error"},
      {400, R"({"error":7})", "bad_error"},
      {400, R"({"error":"a b"})", "bad_error"},
  };
  for (const auto& c : cases) {
    auto r = parse_token_answer(c.status, c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.error().kind, TokenErrorKind::Malformed) << c.body;
    EXPECT_EQ(r.error().code, c.code) << c.body;
  }
  std::string huge = R"({"access_token":")" + std::string(kMaxTokenBytes + 1, 'a') + R"(","token_type":"Bearer"})";
  EXPECT_EQ(parse_token_answer(200, huge).error().code, "bad_access_token");
}

TEST(TokenAnswer, TheDescriptionIsBoundedAndOnOneLine) {
  auto r = parse_token_answer(400, R"({"error":"invalid_grant","error_description":")" + std::string(500, 'x') +
                                       R"(\r\nX-Injected: 1"})");
  ASSERT_FALSE(r.ok());
  EXPECT_LE(r.error().description.size(), 200u * 4);
  EXPECT_EQ(r.error().description.find_first_of("\r\n"), std::string::npos);
  auto nl = parse_token_answer(400, R"({"error":"invalid_grant","error_description":"a\r\nb"})");
  EXPECT_EQ(nl.error().description, "a  b");
}

}  // namespace
}  // namespace deliverd::oauth
