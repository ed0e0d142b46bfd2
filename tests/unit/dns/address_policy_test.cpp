#include "dns/address_policy.h"

#include <gtest/gtest.h>

namespace deliverd::dns {
namespace {

struct Case {
  const char* spelling;
  bool allowed;
  const char* reason;  // expected reason for refused spellings, or "public"
};

// Every spelling goes through parse_ip_literal and then the default policy, as a host field would.
const Case kCases[] = {
    // IPv4 refused ranges
    {"0.0.0.0", false, "unspecified"},
    {"0.1.2.3", false, "unspecified"},
    {"10.0.0.1", false, "private"},
    {"10.255.255.255", false, "private"},
    {"100.64.0.1", false, "cgnat"},
    {"100.127.255.254", false, "cgnat"},
    {"100.100.100.200", false, "metadata"},
    {"127.0.0.1", false, "loopback"},
    {"127.255.255.254", false, "loopback"},
    {"169.254.0.1", false, "link_local"},
    {"169.254.169.254", false, "metadata"},
    {"172.16.0.1", false, "private"},
    {"172.31.255.255", false, "private"},
    {"192.0.0.8", false, "ietf_protocol"},
    {"192.0.0.192", false, "ietf_protocol"},
    {"192.0.2.10", false, "documentation"},
    {"192.88.99.1", false, "reserved"},
    {"192.168.1.1", false, "private"},
    {"198.18.0.1", false, "benchmarking"},
    {"198.19.255.255", false, "benchmarking"},
    {"198.51.100.7", false, "documentation"},
    {"203.0.113.9", false, "documentation"},
    {"224.0.0.1", false, "multicast"},
    {"239.255.255.250", false, "multicast"},
    {"240.0.0.1", false, "reserved"},
    {"255.255.255.254", false, "reserved"},
    {"255.255.255.255", false, "broadcast"},
    {"168.63.129.16", false, "metadata"},
    // IPv4 just outside the refused ranges
    {"9.255.255.255", true, "public"},
    {"11.0.0.1", true, "public"},
    {"100.63.255.255", true, "public"},
    {"100.128.0.1", true, "public"},
    {"126.255.255.255", true, "public"},
    {"128.0.0.1", true, "public"},
    {"172.15.255.255", true, "public"},
    {"172.32.0.1", true, "public"},
    {"192.0.1.1", true, "public"},
    {"192.167.255.255", true, "public"},
    {"198.17.255.255", true, "public"},
    {"198.20.0.1", true, "public"},
    {"223.255.255.255", true, "public"},
    {"8.8.8.8", true, "public"},
    {"93.184.216.34", true, "public"},
    {"1.1.1.1", true, "public"},
    // IPv4 in other spellings
    {"127.1", false, "loopback"},
    {"127.0.1", false, "loopback"},
    {"0x7f.1", false, "loopback"},
    {"0X7F.0.0.1", false, "loopback"},
    {"0x7f000001", false, "loopback"},
    {"2130706433", false, "loopback"},
    {"017700000001", false, "loopback"},
    {"0177.0.0.1", false, "loopback"},
    {"0177.0.0.01", false, "loopback"},
    {"127.0.0.1.", false, "loopback"},
    {"[127.0.0.1]", false, "loopback"},
    {"0", false, "unspecified"},
    {"0x0", false, "unspecified"},
    {"012.0.0.1", false, "private"},  // octal 012 = 10
    {"0xa9.0xfe.0xa9.0xfe", false, "metadata"},
    {"2852039166", false, "metadata"},  // 169.254.169.254
    {"0251.0376.0251.0376", false, "metadata"},
    {"169.254.43518", false, "metadata"},
    {"0xc0.0xa8.1.1", false, "private"},
    {"3232235777", false, "private"},  // 192.168.1.1
    {"1572395042", true, "public"},    // 93.184.216.34
    {"0x5d.0xb8.0xd8.0x22", true, "public"},
    {"[93.184.216.34]", true, "public"},
    // IPv6 refused
    {"::", false, "unspecified"},
    {"::0", false, "unspecified"},
    {"0:0:0:0:0:0:0:0", false, "unspecified"},
    {"::1", false, "loopback"},
    {"0:0:0:0:0:0:0:1", false, "loopback"},
    {"[::1]", false, "loopback"},
    {"[IPv6:::1]", false, "loopback"},
    {"[ipv6:0::1]", false, "loopback"},
    {"::ffff:127.0.0.1", false, "loopback"},
    {"::ffff:7f00:1", false, "loopback"},
    {"[::ffff:10.1.2.3]", false, "private"},
    {"::ffff:169.254.169.254", false, "metadata"},
    {"::ffff:0:192.168.0.1", false, "private"},  // SIIT
    {"64:ff9b::127.0.0.1", false, "loopback"},
    {"64:ff9b::a00:1", false, "private"},
    {"64:ff9b::a9fe:a9fe", false, "metadata"},
    {"64:ff9b:1::1", false, "nat64_local"},
    {"::127.0.0.1", false, "loopback"},
    {"::10.0.0.1", false, "private"},
    {"::93.184.216.34", false, "ipv4_compatible"},
    {"2002:7f00:1::1", false, "loopback"},
    {"2002:a00:1::", false, "private"},
    {"2002:a9fe:a9fe::1", false, "metadata"},
    {"2001:0:4136:e378:8000:63bf:80ff:fffe", false, "loopback"},  // Teredo, client 127.0.0.1
    {"fc00::1", false, "private"},
    {"fd12:3456:789a::1", false, "private"},
    {"fd00:ec2::254", false, "metadata"},
    {"fe80::1", false, "link_local"},
    {"fe80::1%eth0", false, "link_local"},
    {"fe80::1%25eth0", false, "link_local"},
    {"[fe80::1%lo]", false, "link_local"},
    {"febf:ffff::1", false, "link_local"},
    {"fec0::1", false, "site_local"},
    {"ff02::1", false, "multicast"},
    {"ff05::1:3", false, "multicast"},
    {"2001:db8::1", false, "documentation"},
    {"2001:DB8:ffff::1", false, "documentation"},
    {"3fff::1", false, "documentation"},
    {"100::1", false, "discard"},
    {"2001:2::1", false, "benchmarking"},
    {"2001:10::1", false, "reserved"},
    {"4000::1", false, "reserved"},
    {"::2", false, "unspecified"},
    // IPv6 allowed
    {"2606:2800:220:1::1", true, "public"},
    {"2606:2800:220:1:248:1893:25c8:1946", true, "public"},
    {"[2606:2800:220:1::1]", true, "public"},
    {"2a00:1450:4001:80b::200e", true, "public"},
    {"2001:4860:4860::8888", true, "public"},
    {"::ffff:93.184.216.34", true, "public"},
    {"64:ff9b::93.184.216.34", true, "public"},
    {"2002:5db8:d822::1", true, "public"},
    {"2001:db9::1", true, "public"},
    {"fbff:ffff::1", false, "reserved"},
};

TEST(AddressPolicy, TableOfSpellings) {
  ASSERT_GE(std::size(kCases), 80u);
  auto policy = AddressPolicy::create({});
  ASSERT_TRUE(policy);
  for (const auto& c : kCases) {
    auto ss = parse_ip_literal(c.spelling);
    ASSERT_TRUE(ss.has_value()) << c.spelling << " should parse as an IP literal";
    auto v = policy->check(reinterpret_cast<const sockaddr*>(&*ss));
    EXPECT_EQ(v.allowed, c.allowed) << c.spelling;
    EXPECT_EQ(v.reason, c.reason) << c.spelling;
  }
}

TEST(AddressPolicy, NotIpLiterals) {
  for (const char* s : {"",
                        "example.com",
                        "mx.example.org",
                        "256.0.0.1",
                        "1.2.3.4.5",
                        "08.0.0.1",
                        "0x1g.0.0.1",
                        "1..2",
                        ".1.2.3",
                        "1.2.3.4 ",
                        " 1.2.3.4",
                        "4294967296",
                        "1.16777216",
                        "[1.2.3.4",
                        "[]",
                        "[IPv6:1.2.3.4]",
                        ":::",
                        "1::2::3",
                        "fe80::1%",
                        "gggg::1",
                        "[::1]:25",
                        "127.0.0.1:25",
                        "１２７.0.0.1",
                        "127.0.0.1\n",
                        "1.2.3.4..",
                        "a"}) {
    EXPECT_FALSE(parse_ip_literal(s).has_value()) << "'" << s << "'";
  }
}

TEST(AddressPolicy, ShortFormsFillFromTheRight) {
  auto a = parse_ip_literal("10.1");
  ASSERT_TRUE(a);
  EXPECT_EQ(address_to_string(reinterpret_cast<const sockaddr*>(&*a)), "10.0.0.1");
  auto b = parse_ip_literal("1.2.3");
  ASSERT_TRUE(b);
  EXPECT_EQ(address_to_string(reinterpret_cast<const sockaddr*>(&*b)), "1.2.0.3");
  auto c = parse_ip_literal("0x7f.0x1.65535");
  ASSERT_TRUE(c);
  EXPECT_EQ(address_to_string(reinterpret_cast<const sockaddr*>(&*c)), "127.1.255.255");
}

TEST(AddressPolicy, AllowListOverridesARefusal) {
  auto policy = AddressPolicy::create({"127.0.0.0/8", "fd00::/8", "192.168.1.5"});
  ASSERT_TRUE(policy);
  EXPECT_TRUE(policy->has_allow_list());
  auto check = [&](const char* s) {
    auto ss = parse_ip_literal(s);
    EXPECT_TRUE(ss) << s;
    return policy->check(reinterpret_cast<const sockaddr*>(&*ss));
  };
  EXPECT_EQ(check("127.0.0.1").reason, "allowed_by_config");
  EXPECT_TRUE(check("127.0.0.1").allowed);
  EXPECT_TRUE(check("::ffff:127.0.0.1").allowed);  // the mapped form reaches the same host
  EXPECT_TRUE(check("fd00:ec2::254").allowed);
  EXPECT_TRUE(check("192.168.1.5").allowed);
  EXPECT_FALSE(check("192.168.1.6").allowed);
  EXPECT_FALSE(check("::1").allowed);  // 127/8 does not cover IPv6 loopback
  EXPECT_FALSE(check("10.0.0.1").allowed);
  EXPECT_EQ(check("93.184.216.34").reason, "public");
}

TEST(AddressPolicy, BadCidrIsNamedInTheError) {
  for (const char* bad :
       {"10.0.0.0/33", "10.0.0.1/8", "nonsense", "::1/129", "10.0.0.0/", "10.0.0.0/-1", "0x7f.1/8", "fe80::/abc"}) {
    auto p = AddressPolicy::create({"127.0.0.0/8", bad});
    ASSERT_FALSE(p) << bad;
    EXPECT_NE(p.error().find(bad), std::string::npos) << p.error();
  }
  EXPECT_FALSE(AddressPolicy::create({}).value().has_allow_list());
}

TEST(AddressPolicy, UnsupportedFamilyIsRefused) {
  sockaddr_storage ss{};
  ss.ss_family = AF_UNIX;
  auto policy = AddressPolicy::create({});
  EXPECT_FALSE(policy->check(reinterpret_cast<const sockaddr*>(&ss)).allowed);
  EXPECT_FALSE(policy->check(static_cast<const sockaddr*>(nullptr)).allowed);
}

TEST(PortPolicy, OnlyMailPortsAreAllowed) {
  for (int p : {25, 465, 587, 2525, 143, 993}) EXPECT_TRUE(port_allowed(p)) << p;
  for (int p : {0, -1, 22, 80, 443, 110, 995, 6379, 5432, 8080, 24, 26, 65536, 2526})
    EXPECT_FALSE(port_allowed(p)) << p;
}

TEST(AddressToString, RoundTripsWithPort) {
  auto ss = parse_ip_literal("2606:2800:220:1::1");
  ASSERT_TRUE(ss);
  auto with = with_port(*ss, 25);
  EXPECT_EQ(ntohs(reinterpret_cast<sockaddr_in6*>(&with)->sin6_port), 25);
  EXPECT_EQ(address_to_string(reinterpret_cast<const sockaddr*>(&with)), "2606:2800:220:1::1");
  EXPECT_EQ(port_of(reinterpret_cast<const sockaddr*>(&with)), 25);
  auto v4 = with_port(*parse_ip_literal("192.0.2.1"), 993);
  EXPECT_EQ(port_of(reinterpret_cast<const sockaddr*>(&v4)), 993);
  EXPECT_EQ(port_of(nullptr), 0);
}

}  // namespace
}  // namespace deliverd::dns
