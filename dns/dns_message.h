#pragma once
// Small pieces of DNS wire format and host-name handling that c-ares does not give us.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace deliverd::dns {

// The smallest TTL among the answer records of a DNS response (c-ares' MX parser drops TTLs).
// nullopt if the message is malformed or has no answers.
std::optional<uint32_t> min_answer_ttl(const unsigned char* msg, size_t len);

// Lower-cased host name without its trailing dot, or nullopt if it is not a valid name:
// LDH labels (underscore allowed) of 1–63 octets, 253 in all, and a last label that does not
// start with a digit — "1.2.3.999" or "0x7f.1.1.1x" must never be sent to DNS as if names.
std::optional<std::string> normalize_host_name(std::string_view host);

}  // namespace deliverd::dns
