#include "dns/dns_message.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace deliverd::dns {
namespace {

// A response to "MX example.test" with the given answer TTLs (each an MX 10 record, compressed).
std::vector<unsigned char> mx_response(const std::vector<uint32_t>& ttls) {
  std::vector<unsigned char> m = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, static_cast<unsigned char>(ttls.size()), 0, 0, 0, 0};
  for (const char* l : {"example", "test"}) {
    m.push_back(static_cast<unsigned char>(std::strlen(l)));
    m.insert(m.end(), l, l + std::strlen(l));
  }
  m.insert(m.end(), {0, 0, 15, 0, 1});
  for (uint32_t ttl : ttls) {
    m.insert(m.end(), {0xc0, 12, 0, 15, 0, 1});
    for (int s = 24; s >= 0; s -= 8) m.push_back(static_cast<unsigned char>(ttl >> s));
    m.insert(m.end(), {0, 4, 0, 10, 0xc0, 12});
  }
  return m;
}

TEST(MinAnswerTtl, TakesTheSmallestAnswerTtl) {
  auto m = mx_response({300, 60, 3600});
  EXPECT_EQ(min_answer_ttl(m.data(), m.size()), 60u);
}

TEST(MinAnswerTtl, TreatsTopBitTtlAsZero) {
  auto m = mx_response({0x80000000u});
  EXPECT_EQ(min_answer_ttl(m.data(), m.size()), 0u);
}

TEST(MinAnswerTtl, RejectsTruncatedAndEmpty) {
  auto m = mx_response({300});
  for (size_t cut = 0; cut < m.size(); ++cut) EXPECT_FALSE(min_answer_ttl(m.data(), cut).has_value()) << cut;
  auto none = mx_response({});
  EXPECT_FALSE(min_answer_ttl(none.data(), none.size()).has_value());
  EXPECT_FALSE(min_answer_ttl(nullptr, 0).has_value());
}

TEST(NormalizeHostName, LowerCasesAndDropsTheTrailingDot) {
  EXPECT_EQ(normalize_host_name("MX1.Example.ORG."), "mx1.example.org");
  EXPECT_EQ(normalize_host_name("_dmarc.example.com"), "_dmarc.example.com");
  EXPECT_EQ(normalize_host_name("localhost"), "localhost");
}

TEST(NormalizeHostName, RejectsInvalidNames) {
  for (const char* bad : {"", ".", "a..b", ".a", "a b", "a/b", "ex@mple.com", "1.2.3.999", "10.0.0.1x", "0x7f.1.1.1x",
                          "host.123", "caf\xc3\xa9.fr"}) {
    EXPECT_FALSE(normalize_host_name(bad).has_value()) << bad;
  }
  EXPECT_FALSE(normalize_host_name(std::string(64, 'a') + ".com").has_value());
  EXPECT_TRUE(normalize_host_name(std::string(63, 'a') + ".com").has_value());
  std::string long_name;
  for (int i = 0; i < 64; ++i) long_name += "abc.";
  long_name += "com";
  EXPECT_FALSE(normalize_host_name(long_name).has_value());
}

}  // namespace
}  // namespace deliverd::dns
