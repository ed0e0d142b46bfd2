// Fuzzes the TLSA response reader (dns/tlsa_message.h) and what an answer means for DANE
// (tlsa_result_from): every byte of a response comes from the network.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dns/tlsa_lookup.h"
#include "dns/tlsa_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace deliverd::dns;
  constexpr std::string_view kName = "_25._tcp.mx.dane.test";
  for (std::optional<uint16_t> id : {std::optional<uint16_t>(), std::optional<uint16_t>(0x4242)}) {
    TlsaResponse r = parse_tlsa_response(data, size, id, kName);
    TlsaResult res = tlsa_result_from(r);
    if (!r.ok()) {
      if (res.status != TlsaResult::Status::Failed) __builtin_trap();
      continue;
    }
    // Records are usable only when the resolver vouched for them.
    if (res.status == TlsaResult::Status::Secure && (!r.authenticated || res.records.empty())) __builtin_trap();
    if (res.status != TlsaResult::Status::Secure && !res.records.empty()) __builtin_trap();
    // A failed lookup is never "no DANE".
    if (res.status == TlsaResult::Status::NoRecords && r.rcode != Rcode::NoError && r.rcode != Rcode::NxDomain)
      __builtin_trap();
    for (const auto& rec : r.records)
      if (rec.data.size() + 3 > size) __builtin_trap();
  }
  // The query builder with the input as a name: either refused or a well-formed query that the
  // reader recognises as its own question once the QR bit is set.
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;
  std::string q = build_tlsa_query(0x4242, text, &error);
  if (q.empty() != !error.empty()) __builtin_trap();
  if (!q.empty()) {
    q[2] = static_cast<char>(q[2] | 0x80);
    q[11] = 0;  // no OPT in a response we read back
    TlsaResponse back = parse_tlsa_response(reinterpret_cast<const unsigned char*>(q.data()), q.size(), 0x4242, text);
    if (!back.ok()) __builtin_trap();
  }
  return 0;
}
