#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

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

TEST(ParseRedisUrl, DefaultsKeepTheOwnerInChargeOfReconnecting) {
  auto r = parse_redis_url("rediss://127.0.0.1");
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_FALSE(r->reconnect);
  EXPECT_EQ(r->name, "main");
  EXPECT_TRUE(r->ca_file.empty());
  EXPECT_EQ(r->reconnect_min_ms, 100);
  EXPECT_EQ(r->reconnect_max_ms, 5000);
}

// A scratch directory for password files, removed afterwards.
class PasswordFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "deliverd-pwfile-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string write(const std::string& name, const std::string& content) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }
  std::filesystem::path dir_;
};

TEST_F(PasswordFile, TrailingLineEndingIsStripped) {
  RedisConfig cfg;
  ASSERT_TRUE(apply_password_file(cfg, write("lf", "s3cret\n")).ok());
  EXPECT_EQ(cfg.password, "s3cret");
  ASSERT_TRUE(apply_password_file(cfg, write("crlf", "other pw\r\n")).ok());
  EXPECT_EQ(cfg.password, "other pw");
  ASSERT_TRUE(apply_password_file(cfg, write("bare", " spaced out ")).ok());
  EXPECT_EQ(cfg.password, " spaced out ") << "only line endings are trimmed, spaces may be part of it";
}

TEST_F(PasswordFile, EmptyFileIsAnErrorNamingThePath) {
  RedisConfig cfg;
  cfg.password = "before";
  for (const char* content : {"", "\n", "\r\n\n"}) {
    const std::string path = write("empty", content);
    auto r = apply_password_file(cfg, path);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().find(path), std::string::npos) << r.error();
    EXPECT_NE(r.error().find("empty"), std::string::npos) << r.error();
  }
  EXPECT_EQ(cfg.password, "before") << "a failed read leaves the config as it was";
}

TEST_F(PasswordFile, MissingOrUnreadableFileIsAnErrorNamingThePath) {
  RedisConfig cfg;
  const std::string missing = (dir_ / "nope").string();
  auto r = apply_password_file(cfg, missing);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find(missing), std::string::npos) << r.error();

  auto d = apply_password_file(cfg, dir_.string());  // a directory opens but cannot be read
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().find(dir_.string()), std::string::npos) << d.error();
  EXPECT_TRUE(cfg.password.empty());
}

TEST_F(PasswordFile, OversizedFileIsRefusedWithoutEchoingIt) {
  RedisConfig cfg;
  const std::string path = write("big", "TOPSECRET" + std::string(70000, 'x'));
  auto r = apply_password_file(cfg, path);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find(path), std::string::npos) << r.error();
  EXPECT_EQ(r.error().find("TOPSECRET"), std::string::npos) << "the secret never appears in errors";
  EXPECT_TRUE(cfg.password.empty());
}

TEST(ReconnectDelay, DoublesFromTheMinimumUpToTheCap) {
  RedisConfig cfg;  // 100 ms … 5000 ms
  EXPECT_EQ(reconnect_delay_ms(cfg, 1, 0.5), 100);
  EXPECT_EQ(reconnect_delay_ms(cfg, 2, 0.5), 200);
  EXPECT_EQ(reconnect_delay_ms(cfg, 3, 0.5), 400);
  EXPECT_EQ(reconnect_delay_ms(cfg, 6, 0.5), 3200);
  EXPECT_EQ(reconnect_delay_ms(cfg, 7, 0.5), 5000);
  EXPECT_EQ(reconnect_delay_ms(cfg, 1000000, 0.5), 5000) << "no overflow after a long outage";
}

TEST(ReconnectDelay, JitterIsTwentyPercentEitherWay) {
  RedisConfig cfg;
  EXPECT_EQ(reconnect_delay_ms(cfg, 1, 0.0), 80);
  EXPECT_EQ(reconnect_delay_ms(cfg, 1, 0.999999), 120);
  EXPECT_EQ(reconnect_delay_ms(cfg, 50, 0.0), 4000);
  EXPECT_EQ(reconnect_delay_ms(cfg, 50, 0.999999), 6000);
  for (double j = 0; j < 1; j += 0.01) {
    const int d = reconnect_delay_ms(cfg, 4, j);
    EXPECT_GE(d, 640);
    EXPECT_LE(d, 960);
  }
}

TEST(ReconnectDelay, NonsenseSettingsStillGiveAPositiveDelay) {
  RedisConfig cfg;
  cfg.reconnect_min_ms = 0;
  cfg.reconnect_max_ms = -5;
  EXPECT_GE(reconnect_delay_ms(cfg, 1, 0.0), 1);
  EXPECT_GE(reconnect_delay_ms(cfg, 30, 0.0), 1);
  cfg.reconnect_min_ms = 500;
  cfg.reconnect_max_ms = 100;  // max below min: min wins
  EXPECT_EQ(reconnect_delay_ms(cfg, 5, 0.5), 500);
}

}  // namespace
}  // namespace deliverd::queue
