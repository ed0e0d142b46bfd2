// Fuzzes everything in dns/ that reads untrusted text or bytes: IP literal parsing in every
// spelling, the address policy, CIDR parsing, host-name normalisation and the DNS answer scan.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dns/address_policy.h"
#include "dns/dns_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace deliverd::dns;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  static const AddressPolicy strict = AddressPolicy::create({}).value();
  static const AddressPolicy loose = AddressPolicy::create({"127.0.0.0/8", "fc00::/7"}).value();

  if (auto ss = parse_ip_literal(text)) {
    const auto* sa = reinterpret_cast<const sockaddr*>(&*ss);
    auto v = strict.check(sa);
    auto w = loose.check(sa);
    // An allow list can only widen what is allowed.
    if (v.allowed && !w.allowed) __builtin_trap();
    std::string s = address_to_string(sa);
    if (s.empty()) __builtin_trap();
    // The canonical spelling must parse back to a verdict no kinder than the original.
    auto again = parse_ip_literal(s);
    if (!again || strict.check(reinterpret_cast<const sockaddr*>(&*again)).allowed != v.allowed) __builtin_trap();
  }
  (void)parse_cidr(text);
  if (auto name = normalize_host_name(text)) {
    // A name we would send to DNS is never also an IPv4 literal.
    if (auto lit = parse_ip_literal(*name); lit && lit->ss_family == AF_INET) __builtin_trap();
  }
  (void)min_answer_ttl(data, size);
  return 0;
}
