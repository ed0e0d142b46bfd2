#include "dns/address_policy.h"

#include <arpa/inet.h>

#include <cstring>

#include "core/ascii.h"

namespace deliverd::dns {

namespace {

struct V4Range {
  uint32_t net;
  int prefix;
  std::string_view reason;
};

constexpr uint32_t ip4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return a << 24 | b << 16 | c << 8 | d; }

// First match wins, so single metadata addresses come before the ranges that hold them.
constexpr V4Range kV4Refused[] = {
    {ip4(169, 254, 169, 254), 32, "metadata"},  // AWS, GCP, Azure, OpenStack instance metadata
    {ip4(100, 100, 100, 200), 32, "metadata"},  // Alibaba Cloud
    {ip4(168, 63, 129, 16), 32, "metadata"},    // Azure wire server (a public address)
    {ip4(0, 0, 0, 0), 8, "unspecified"},         {ip4(10, 0, 0, 0), 8, "private"},
    {ip4(100, 64, 0, 0), 10, "cgnat"},           {ip4(127, 0, 0, 0), 8, "loopback"},
    {ip4(169, 254, 0, 0), 16, "link_local"},     {ip4(172, 16, 0, 0), 12, "private"},
    {ip4(192, 0, 0, 0), 24, "ietf_protocol"},    {ip4(192, 0, 2, 0), 24, "documentation"},
    {ip4(192, 88, 99, 0), 24, "reserved"},  // former 6to4 relay anycast
    {ip4(192, 168, 0, 0), 16, "private"},        {ip4(198, 18, 0, 0), 15, "benchmarking"},
    {ip4(198, 51, 100, 0), 24, "documentation"}, {ip4(203, 0, 113, 0), 24, "documentation"},
    {ip4(224, 0, 0, 0), 4, "multicast"},         {ip4(255, 255, 255, 255), 32, "broadcast"},
    {ip4(240, 0, 0, 0), 4, "reserved"},
};

uint32_t v4_word(const uint8_t* b) {
  return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | uint32_t{b[3]};
}

std::string_view v4_reason(uint32_t a) {
  for (const auto& r : kV4Refused) {
    uint32_t mask = r.prefix == 0 ? 0 : ~uint32_t{0} << (32 - r.prefix);
    if ((a & mask) == r.net) return r.reason;
  }
  return {};
}

bool prefix_match(const uint8_t* a, const uint8_t* net, int prefix) {
  int full = prefix / 8;
  if (std::memcmp(a, net, static_cast<size_t>(full)) != 0) return false;
  int rest = prefix % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[full] & mask) == (net[full] & mask);
}

struct V6Range {
  std::array<uint8_t, 16> net;
  int prefix;
  std::string_view reason;
};

constexpr std::array<uint8_t, 16> v6(std::initializer_list<uint16_t> groups) {
  std::array<uint8_t, 16> b{};
  size_t i = 0;
  for (uint16_t g : groups) {
    b[i++] = static_cast<uint8_t>(g >> 8);
    b[i++] = static_cast<uint8_t>(g & 0xff);
  }
  return b;
}

const V6Range kV6Refused[] = {
    {v6({0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254}), 128, "metadata"},  // AWS IPv6 instance metadata
    {v6({0x0064, 0xff9b, 0x0001}), 48, "nat64_local"},
    {v6({0x0100, 0, 0, 0}), 64, "discard"},
    {v6({0x2001, 0x0db8}), 32, "documentation"},
    {v6({0x3fff, 0}), 20, "documentation"},
    {v6({0x2001, 0x0002, 0}), 48, "benchmarking"},
    {v6({0x2001, 0x0010}), 28, "reserved"},  // ORCHID
    {v6({0x2001, 0x0020}), 28, "reserved"},  // ORCHIDv2
    {v6({0xfc00}), 7, "private"},
    {v6({0xfe80}), 10, "link_local"},
    {v6({0xfec0}), 10, "site_local"},
    {v6({0xff00}), 8, "multicast"},
};

// IPv6 forms that carry an IPv4 address a packet may end up at: mapped, SIIT-translated,
// well-known NAT64, deprecated compatible, 6to4, Teredo (client, stored inverted).
std::optional<uint32_t> embedded_v4(const std::array<uint8_t, 16>& b, bool* compatible) {
  static const uint8_t zeros[12] = {};
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static const uint8_t siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
  static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  *compatible = false;
  if (std::memcmp(b.data(), mapped, 12) == 0 || std::memcmp(b.data(), siit, 12) == 0 ||
      std::memcmp(b.data(), nat64, 12) == 0)
    return v4_word(b.data() + 12);
  if (std::memcmp(b.data(), zeros, 12) == 0) {
    *compatible = true;
    return v4_word(b.data() + 12);
  }
  if (b[0] == 0x20 && b[1] == 0x02) return v4_word(b.data() + 2);
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) return ~v4_word(b.data() + 12);
  return std::nullopt;
}

IpAddress from_v4_word(uint32_t a) {
  IpAddress ip;
  ip.v4 = true;
  ip.bytes[0] = static_cast<uint8_t>(a >> 24);
  ip.bytes[1] = static_cast<uint8_t>(a >> 16);
  ip.bytes[2] = static_cast<uint8_t>(a >> 8);
  ip.bytes[3] = static_cast<uint8_t>(a);
  return ip;
}

// One part of an inet_aton-style address: decimal, 0-prefixed octal or 0x-prefixed hex.
std::optional<uint64_t> parse_v4_part(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int base = 10;
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  } else if (s.size() >= 2 && s[0] == '0') {
    base = 8;
    s.remove_prefix(1);
  }
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (base == 16 && c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (base == 16 && c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return std::nullopt;
    if (d >= base) return std::nullopt;
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
    if (v > 0xffffffffULL) return std::nullopt;
  }
  return v;
}

std::optional<uint32_t> parse_v4_any(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty()) return std::nullopt;
  uint64_t parts[4];
  size_t n = 0;
  while (true) {
    size_t dot = s.find('.');
    std::string_view part = s.substr(0, dot);
    if (n == 4) return std::nullopt;
    auto v = parse_v4_part(part);
    if (!v) return std::nullopt;
    parts[n++] = *v;
    if (dot == std::string_view::npos) break;
    s.remove_prefix(dot + 1);
  }
  uint64_t addr = 0;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (parts[i] > 0xff) return std::nullopt;
    addr |= parts[i] << (24 - 8 * i);
  }
  uint64_t last_max = 0xffffffffULL >> (8 * (n - 1));
  if (parts[n - 1] > last_max) return std::nullopt;
  addr |= parts[n - 1];
  return static_cast<uint32_t>(addr);
}

std::optional<in6_addr> parse_v6(std::string_view s) {
  size_t pct = s.find('%');
  if (pct != std::string_view::npos) {
    std::string_view zone = s.substr(pct + 1);
    if (zone.size() > 2 && zone.substr(0, 2) == "25") zone.remove_prefix(2);  // URL-encoded '%'
    if (zone.empty() || zone.size() > 64) return std::nullopt;
    for (char c : zone)
      if (static_cast<unsigned char>(c) <= ' ' || static_cast<unsigned char>(c) >= 0x7f || c == '[' || c == ']')
        return std::nullopt;
    s = s.substr(0, pct);
  }
  if (s.empty() || s.size() > INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN + 1];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  in6_addr a{};
  if (::inet_pton(AF_INET6, buf, &a) != 1) return std::nullopt;
  return a;
}

}  // namespace

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* addr) {
  if (!addr) return std::nullopt;
  IpAddress ip;
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    ip.v4 = true;
    std::memcpy(ip.bytes.data(), &in->sin_addr, 4);
    return ip;
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    ip.v4 = false;
    std::memcpy(ip.bytes.data(), &in6->sin6_addr, 16);
    return ip;
  }
  return std::nullopt;
}

bool Cidr::contains(const IpAddress& ip) const {
  if (ip.v4 != net.v4) return false;
  return prefix_match(ip.bytes.data(), net.bytes.data(), prefix);
}

core::Result<Cidr, std::string> parse_cidr(std::string_view text) {
  std::string t(text);
  size_t slash = t.find('/');
  std::string addr = t.substr(0, slash);
  Cidr c;
  in6_addr a6{};
  in_addr a4{};
  if (::inet_pton(AF_INET, addr.c_str(), &a4) == 1) {
    c.net.v4 = true;
    std::memcpy(c.net.bytes.data(), &a4, 4);
  } else if (::inet_pton(AF_INET6, addr.c_str(), &a6) == 1) {
    c.net.v4 = false;
    std::memcpy(c.net.bytes.data(), &a6, 16);
  } else {
    return core::Err<std::string>{"bad CIDR '" + t + "': not an IP address"};
  }
  int max = c.net.v4 ? 32 : 128;
  c.prefix = max;
  if (slash != std::string::npos) {
    std::string p = t.substr(slash + 1);
    if (p.empty() || p.size() > 3 || p.find_first_not_of("0123456789") != std::string::npos)
      return core::Err<std::string>{"bad CIDR '" + t + "': bad prefix length"};
    c.prefix = std::stoi(p);
    if (c.prefix > max)
      return core::Err<std::string>{"bad CIDR '" + t + "': prefix length over " + std::to_string(max)};
  }
  IpAddress masked = c.net;
  for (int bit = c.prefix; bit < max; ++bit) masked.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  if (masked.bytes != c.net.bytes) return core::Err<std::string>{"bad CIDR '" + t + "': host bits set"};
  return c;
}

std::string_view refusal_reason(const IpAddress& ip) {
  if (ip.v4) return v4_reason(v4_word(ip.bytes.data()));
  static const std::array<uint8_t, 16> zero{};
  std::array<uint8_t, 16> one{};
  one[15] = 1;
  if (ip.bytes == zero) return "unspecified";
  if (ip.bytes == one) return "loopback";
  for (const auto& r : kV6Refused)
    if (prefix_match(ip.bytes.data(), r.net.data(), r.prefix)) return r.reason;
  bool compatible = false;
  if (auto v4 = embedded_v4(ip.bytes, &compatible)) {
    std::string_view inner = v4_reason(*v4);
    if (!inner.empty()) return inner;
    if (compatible) return "ipv4_compatible";                // deprecated (RFC 4291); nothing routes it honestly
    if (ip.bytes[0] == 0 && ip.bytes[1] == 0) return {};     // mapped / SIIT of a public address
    if (ip.bytes[0] == 0 && ip.bytes[1] == 0x64) return {};  // NAT64 of a public address
  }
  // Outside 2000::/3 everything left is unassigned by IANA.
  if ((ip.bytes[0] & 0xe0) != 0x20) return "reserved";
  return {};
}

core::Result<AddressPolicy, std::string> AddressPolicy::create(const std::vector<std::string>& allow_cidrs) {
  AddressPolicy p;
  for (const auto& text : allow_cidrs) {
    auto c = parse_cidr(text);
    if (!c) return core::Err<std::string>{c.error()};
    p.allow_.push_back(*c);
    p.allow_text_.push_back(text);
  }
  // The daemon logs the allow list loudly once at start; the CLI commands that validate a
  // config must not repeat it.
  return p;
}

AddressPolicy::Verdict AddressPolicy::check(const sockaddr* addr) const {
  auto ip = IpAddress::from_sockaddr(addr);
  if (!ip) return {false, "unsupported_family"};
  return check(*ip);
}

AddressPolicy::Verdict AddressPolicy::check(const IpAddress& ip) const {
  std::string_view reason = refusal_reason(ip);
  if (reason.empty()) return {true, "public"};
  for (const auto& c : allow_) {
    if (c.contains(ip)) return {true, "allowed_by_config"};
  }
  if (!ip.v4) {
    bool compatible = false;
    if (auto v4 = embedded_v4(ip.bytes, &compatible)) {
      IpAddress inner = from_v4_word(*v4);
      for (const auto& c : allow_)
        if (c.contains(inner)) return {true, "allowed_by_config"};
    }
  }
  return {false, std::string(reason)};
}

std::optional<sockaddr_storage> parse_ip_literal(std::string_view host) {
  if (host.empty() || host.size() > 300) return std::nullopt;
  bool v6_tag = false;
  if (host.front() == '[') {
    if (host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
    if (core::istarts_with(host, "ipv6:")) {
      host.remove_prefix(5);
      v6_tag = true;
    }
  }
  sockaddr_storage ss{};
  if (host.find(':') != std::string_view::npos) {
    auto a6 = parse_v6(host);
    if (!a6) return std::nullopt;
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = *a6;
    return ss;
  }
  if (v6_tag) return std::nullopt;
  auto a4 = parse_v4_any(host);
  if (!a4) return std::nullopt;
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(*a4);
  return ss;
}

bool port_allowed(int port) {
  switch (port) {
    case 25:
    case 465:
    case 587:
    case 2525:
    case 143:
    case 993:
      return true;
    default:
      return false;
  }
}

std::string address_to_string(const sockaddr* addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr && addr->sa_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, buf, sizeof buf);
    return buf;
  }
  if (addr && addr->sa_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, buf, sizeof buf);
    return buf;
  }
  return {};
}

int port_of(const sockaddr* addr) {
  if (addr && addr->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(addr)->sin_port);
  if (addr && addr->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_port);
  return 0;
}

sockaddr_storage with_port(const sockaddr_storage& addr, int port) {
  sockaddr_storage out = addr;
  if (out.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&out)->sin_port = htons(static_cast<uint16_t>(port));
  if (out.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6*>(&out)->sin6_port = htons(static_cast<uint16_t>(port));
  return out;
}

}  // namespace deliverd::dns
