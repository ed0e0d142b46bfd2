#include "admin/client_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "core/ascii.h"

namespace deliverd::admin {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "1.2.3.4", "1.2.3.4:5678", "2001:db8::1", "[2001:db8::1]" or "[2001:db8::1]:5678" (what
// proxies write), as an address in canonical text; nullopt for anything else ("unknown", names).
std::optional<std::pair<dns::IpAddress, std::string>> parse_hop(std::string_view hop) {
  std::string host;
  if (!hop.empty() && hop.front() == '[') {
    size_t close = hop.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = std::string(hop.substr(1, close - 1));
  } else if (std::count(hop.begin(), hop.end(), ':') == 1) {
    host = std::string(hop.substr(0, hop.find(':')));
  } else {
    host = std::string(hop);
  }
  dns::IpAddress ip;
  in_addr a4{};
  in6_addr a6{};
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    ip.v4 = true;
    std::memcpy(ip.bytes.data(), &a4, 4);
    inet_ntop(AF_INET, &a4, buf, sizeof buf);
  } else if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a6.s6_addr, mapped, 12) == 0) {
      ip.v4 = true;
      std::memcpy(ip.bytes.data(), a6.s6_addr + 12, 4);
      inet_ntop(AF_INET, a6.s6_addr + 12, buf, sizeof buf);
    } else {
      ip.v4 = false;
      std::memcpy(ip.bytes.data(), a6.s6_addr, 16);
      inet_ntop(AF_INET6, &a6, buf, sizeof buf);
    }
  } else {
    return std::nullopt;
  }
  return std::make_pair(ip, std::string(buf));
}

bool is_trusted(const dns::IpAddress& ip, const std::vector<dns::Cidr>& trusted) {
  for (const auto& c : trusted)
    if (c.contains(ip)) return true;
  return false;
}

}  // namespace

core::Result<std::vector<dns::Cidr>, std::string> parse_trusted_proxies(const std::vector<std::string>& cidrs) {
  std::vector<dns::Cidr> out;
  for (const auto& text : cidrs) {
    auto c = dns::parse_cidr(text);
    if (!c) return core::Err(c.error());
    out.push_back(*c);
  }
  return out;
}

std::string client_address(const std::string& socket_peer, const HeaderList& headers,
                           const std::vector<dns::Cidr>& trusted) {
  if (trusted.empty()) return socket_peer;
  auto peer = parse_hop(socket_peer);
  if (!peer || !is_trusted(peer->first, trusted)) return socket_peer;
  std::vector<std::string_view> hops;
  for (const auto& [name, value] : headers) {
    if (!core::iequals(name, "X-Forwarded-For")) continue;
    std::string_view v = value;
    while (true) {
      size_t comma = v.find(',');
      hops.push_back(trim(v.substr(0, comma)));
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
  }
  std::string client = peer->second;
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    auto hop = parse_hop(*it);
    if (!hop) return client;
    if (!is_trusted(hop->first, trusted)) return hop->second;
    client = hop->second;
  }
  return client;
}

}  // namespace deliverd::admin
