#include <gtest/gtest.h>

#include "core/https_client.h"

namespace deliverd::core {
namespace {

TEST(HttpsUrl, SplitsHostPortAndTarget) {
  auto u = parse_https_url("HTTPS://Login.MicrosoftOnline.com/common/oauth2/v2.0/token?x=1#frag");
  ASSERT_TRUE(u.ok()) << u.error();
  EXPECT_EQ(u->host, "login.microsoftonline.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/common/oauth2/v2.0/token?x=1");
  EXPECT_FALSE(u->host_is_literal);
  auto p = parse_https_url("https://mta-sts.example.org.:8443");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->host, "mta-sts.example.org");
  EXPECT_EQ(p->port, 8443);
  EXPECT_EQ(p->target, "/");
  auto q = parse_https_url("https://a.example?x");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->target, "/?x");
}

TEST(HttpsUrl, IpLiteralsAreMarked) {
  auto v4 = parse_https_url("https://192.0.2.1/t");
  ASSERT_TRUE(v4.ok());
  EXPECT_TRUE(v4->host_is_literal);
  auto v6 = parse_https_url("https://[2001:db8::1]:443/t");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "2001:db8::1");
  EXPECT_TRUE(v6->host_is_literal);
}

TEST(HttpsUrl, AnythingButPlainHttpsIsRefusedWithAReason) {
  for (const char* bad : {"http://a.example/", "ftp://a.example/", "https://", "https:///x", "https://u:p@a.example/",
                          "https://a.example:0/", "https://a.example:65536/", "https://a.example:/", "https://a.example:x/",
                          "https://a b.example/", "https://a.example/\r\nHost: b", "https://[::1/", "https://[zz]/",
                          "https://a_b%2e.example/"}) {
    auto u = parse_https_url(bad);
    EXPECT_FALSE(u.ok()) << bad;
    if (!u.ok()) {
      EXPECT_FALSE(u.error().empty());
    }
  }
}

}  // namespace
}  // namespace deliverd::core
