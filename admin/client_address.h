#pragma once
// Who sent a request. Behind a reverse proxy every connection comes from the proxy, so a
// per-client limit would be one limit for everyone; with the proxies named ([admin]
// trusted_proxies), the client is the rightmost X-Forwarded-For hop that is not one of them —
// the hops to its right were appended by proxies we trust, those to its left came from the
// client and may be forged. Without trusted proxies the header is ignored.
#include <string>
#include <string_view>
#include <vector>

#include "admin/http_types.h"
#include "core/result.h"
#include "dns/address_policy.h"

namespace deliverd::admin {

// Parses the CIDRs; the error names the bad one.
core::Result<std::vector<dns::Cidr>, std::string> parse_trusted_proxies(const std::vector<std::string>& cidrs);

// The client's address for a request that arrived from socket_peer: socket_peer itself unless it
// is a trusted proxy; then, walking X-Forwarded-For (every such header, in order) from the
// right, the first hop that is not trusted. A hop that is not an IP address ends the walk at the
// trusted hop that reported it; when every hop is trusted, the leftmost is the client. Addresses
// come back in canonical text form (IPv4-mapped IPv6 as IPv4).
std::string client_address(const std::string& socket_peer, const HeaderList& headers,
                           const std::vector<dns::Cidr>& trusted);

}  // namespace deliverd::admin
