#include <gtest/gtest.h>

#include "queue/redis_client.h"

namespace deliverd::queue {
namespace {

TEST(ParseRedisUrl, HostOnlyUsesDefaults) {
  auto r = parse_redis_url("redis://10.0.0.5");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->host, "10.0.0.5");
  EXPECT_EQ(r->port, 6379);
  EXPECT_EQ(r->db, 0);
  EXPECT_FALSE(r->tls);
  EXPECT_TRUE(r->username.empty());
  EXPECT_TRUE(r->password.empty());
}

TEST(ParseRedisUrl, FullForm) {
  auto r = parse_redis_url("redis://deliverd:s3cr%40t@127.0.0.1:6380/3");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->username, "deliverd");
  EXPECT_EQ(r->password, "s3cr@t");
  EXPECT_EQ(r->host, "127.0.0.1");
  EXPECT_EQ(r->port, 6380);
  EXPECT_EQ(r->db, 3);
}

TEST(ParseRedisUrl, PasswordWithoutUser) {
  auto r = parse_redis_url("redis://:pw@localhost/");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(r->username.empty());
  EXPECT_EQ(r->password, "pw");
  EXPECT_EQ(r->host, "localhost");
  EXPECT_EQ(r->db, 0);
}

TEST(ParseRedisUrl, PasswordMayContainAt) {
  auto r = parse_redis_url("redis://u:p@ss@127.0.0.1");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->password, "p@ss");
}

TEST(ParseRedisUrl, RedissSetsTls) {
  auto r = parse_redis_url("rediss://127.0.0.1:6390");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(r->tls);
  EXPECT_EQ(r->port, 6390);
}

TEST(ParseRedisUrl, BracketedIpv6) {
  auto r = parse_redis_url("redis://[::1]:7000/2");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->host, "::1");
  EXPECT_EQ(r->port, 7000);
  EXPECT_EQ(r->db, 2);
}

TEST(ParseRedisUrl, RejectsBadInput) {
  EXPECT_FALSE(parse_redis_url("http://127.0.0.1").ok());
  EXPECT_FALSE(parse_redis_url("127.0.0.1:6379").ok());
  EXPECT_FALSE(parse_redis_url("redis://127.0.0.1:0").ok());
  EXPECT_FALSE(parse_redis_url("redis://127.0.0.1:65536").ok());
  EXPECT_FALSE(parse_redis_url("redis://127.0.0.1:abc").ok());
  EXPECT_FALSE(parse_redis_url("redis://127.0.0.1:").ok());
  EXPECT_FALSE(parse_redis_url("redis://127.0.0.1/x").ok());
  EXPECT_FALSE(parse_redis_url("redis://127.0.0.1/-1").ok());
  EXPECT_FALSE(parse_redis_url("redis://[::1").ok());
  EXPECT_FALSE(parse_redis_url("redis://u:%zz@127.0.0.1").ok());
  EXPECT_FALSE(parse_redis_url("redis://127.0.0.1/0?timeout=1").ok());
}

TEST(ParseRedisUrl, ErrorsSayWhatIsWrong) {
  auto r = parse_redis_url("redis://127.0.0.1:99999");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("port"), std::string::npos);
}

}  // namespace
}  // namespace deliverd::queue
