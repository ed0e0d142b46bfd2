#pragma once
// Which IP addresses and ports deliverd may connect to (DESIGN.md "Security rules"). Every address
// is vetted here before use, and the connection goes to exactly the vetted sockaddr: nothing is
// resolved a second time between the check and the connect.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace deliverd::dns {

// One address in a family-independent form (IPv4 uses bytes[0..3]).
struct IpAddress {
  bool v4 = true;
  std::array<uint8_t, 16> bytes{};
  static std::optional<IpAddress> from_sockaddr(const sockaddr* addr);
};

struct Cidr {
  IpAddress net;
  int prefix = 0;
  bool contains(const IpAddress& ip) const;
};

// "10.0.0.0/8", "::1/128", "127.0.0.1" (a single host). Strict: dotted-quad only, host bits zero.
core::Result<Cidr, std::string> parse_cidr(std::string_view text);

class AddressPolicy {
 public:
  // The error names the bad CIDR. An empty list is the safe default.
  static core::Result<AddressPolicy, std::string> create(const std::vector<std::string>& allow_cidrs);

  struct Verdict {
    bool allowed;
    std::string reason;  // "public", "allowed_by_config", or why it was refused: "loopback", "private", …
  };
  Verdict check(const sockaddr* addr) const;
  Verdict check(const IpAddress& ip) const;
  bool has_allow_list() const { return !allow_.empty(); }
  const std::vector<std::string>& allow_list() const { return allow_text_; }

 private:
  std::vector<Cidr> allow_;
  std::vector<std::string> allow_text_;
};

// Why an address is refused by the built-in table, or "" if it is a public address. Ignores
// allow_private_targets; AddressPolicy::check applies that on top.
std::string_view refusal_reason(const IpAddress& ip);

// Any spelling an IP literal may take in a host field: dotted, short (127.1), octal (0177.0.0.1),
// hex (0x7f.1), one number (2130706433), trailing dot, [brackets], [IPv6:…], IPv6 zone ids
// (fe80::1%eth0, %25eth0). nullopt when the text is not an IP literal. Port is left 0.
std::optional<sockaddr_storage> parse_ip_literal(std::string_view host);

// SMTP 25, 465, 587, 2525; IMAP 143, 993.
bool port_allowed(int port);

// "1.2.3.4" / "2001:db8::1"; "" for other families.
std::string address_to_string(const sockaddr* addr);

// The port of an IPv4 or IPv6 sockaddr; 0 for other families.
int port_of(const sockaddr* addr);

// A sockaddr for ip with the given port, ready for connect().
sockaddr_storage with_port(const sockaddr_storage& addr, int port);

}  // namespace deliverd::dns
