// The client address behind trusted proxies: the rightmost X-Forwarded-For hop no trusted proxy
// wrote, and never what an untrusted peer claims.
#include "admin/client_address.h"

#include <gtest/gtest.h>

namespace deliverd::admin {
namespace {

std::vector<dns::Cidr> proxies(const std::vector<std::string>& cidrs) {
  auto p = parse_trusted_proxies(cidrs);
  EXPECT_TRUE(p) << p.error();
  return p ? *p : std::vector<dns::Cidr>{};
}

HeaderList xff(std::initializer_list<std::string> values) {
  HeaderList h;
  for (const auto& v : values) h.emplace_back("X-Forwarded-For", v);
  return h;
}

TEST(ClientAddress, WithoutTrustedProxiesTheHeaderIsIgnored) {
  EXPECT_EQ(client_address("203.0.113.5", xff({"198.51.100.1"}), {}), "203.0.113.5");
}

TEST(ClientAddress, AnUntrustedPeerCannotClaimAnotherAddress) {
  EXPECT_EQ(client_address("203.0.113.5", xff({"198.51.100.1"}), proxies({"10.0.0.0/8"})), "203.0.113.5");
}

TEST(ClientAddress, TheRightmostUntrustedHopIsTheClient) {
  auto trusted = proxies({"10.0.0.0/8", "192.168.1.0/24"});
  // The client forged "1.1.1.1"; the edge proxy appended the address it saw, the inner one its own.
  EXPECT_EQ(client_address("10.0.0.2", xff({"1.1.1.1, 198.51.100.7, 192.168.1.4"}), trusted), "198.51.100.7");
  // Several headers count as one list, in order.
  EXPECT_EQ(client_address("10.0.0.2", xff({"1.1.1.1", "198.51.100.7", "192.168.1.4"}), trusted), "198.51.100.7");
  // Only the peer is trusted: the last hop is the client.
  EXPECT_EQ(client_address("10.0.0.2", xff({"1.1.1.1, 198.51.100.8"}), trusted), "198.51.100.8");
}

TEST(ClientAddress, HopsWithPortsBracketsAndMappedAddressesAreCanonical) {
  auto trusted = proxies({"127.0.0.1"});
  EXPECT_EQ(client_address("127.0.0.1", xff({"198.51.100.9:4711"}), trusted), "198.51.100.9");
  EXPECT_EQ(client_address("127.0.0.1", xff({"[2001:DB8::1]:443"}), trusted), "2001:db8::1");
  EXPECT_EQ(client_address("127.0.0.1", xff({"2001:db8:0:0::2"}), trusted), "2001:db8::2");
  EXPECT_EQ(client_address("127.0.0.1", xff({"::ffff:198.51.100.3"}), trusted), "198.51.100.3");
}

TEST(ClientAddress, AHopThatIsNotAnAddressStopsAtTheTrustedHopThatReportedIt) {
  auto trusted = proxies({"10.0.0.0/8"});
  EXPECT_EQ(client_address("10.0.0.2", xff({"unknown"}), trusted), "10.0.0.2");
  EXPECT_EQ(client_address("10.0.0.2", xff({"198.51.100.1, garbage, 10.0.0.9"}), trusted), "10.0.0.9");
  EXPECT_EQ(client_address("10.0.0.2", xff({""}), trusted), "10.0.0.2");
}

TEST(ClientAddress, EveryHopTrustedMeansTheLeftmostIsTheClient) {
  EXPECT_EQ(client_address("10.0.0.2", xff({"10.1.1.1, 10.2.2.2"}), proxies({"10.0.0.0/8"})), "10.1.1.1");
  EXPECT_EQ(client_address("10.0.0.2", {}, proxies({"10.0.0.0/8"})), "10.0.0.2");
}

TEST(ClientAddress, BadProxyRangesAreNamed) {
  auto bad = parse_trusted_proxies({"10.0.0.0/8", "10.0.0.1/8"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("10.0.0.1/8"), std::string::npos);
}

}  // namespace
}  // namespace deliverd::admin
