#pragma once
// The wire format of one TLSA question (RFC 6698) to a validating resolver, built and read by
// hand because c-ares 1.18 has neither a TLSA parser nor a way to ask for DNSSEC (the DO and AD
// bits) through ares_query. Everything is bounds-checked: a response is untrusted input.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tls_context.h"

namespace deliverd::dns {

inline constexpr uint16_t kTypeTlsa = 52;
inline constexpr uint16_t kEdnsUdpSize = 1232;  // the DNS flag day 2020 size: no IP fragmentation
inline constexpr int kMaxCnameHops = 8;         // in-answer CNAME chain followed at most this far

// One TLSA record as DANE verification takes it (core/tls_context.h): usage, selector, matching
// type and the association data as raw bytes.
using TlsaRecord = core::DaneRecord;

// A query for <name> TLSA IN: RD=1, AD=1 (RFC 6840 §5.7: asks a validator to say whether the
// answer was authenticated), and an EDNS0 OPT record (RFC 6891) with UDP size kEdnsUdpSize and
// the DO bit. name is a host name as normalize_host_name accepts it ("_25._tcp.mx.example.org",
// a trailing dot allowed). Empty with *error set when the name cannot be sent.
std::string build_tlsa_query(uint16_t id, std::string_view name, std::string* error = nullptr);

enum class Rcode : uint8_t { NoError, NxDomain, ServFail, Refused, Other };

struct TlsaResponse {
  std::string error;  // non-empty: the message is malformed or does not answer the question
  uint16_t id = 0;
  Rcode rcode = Rcode::Other;
  int rcode_value = 0;                   // the header's 4-bit RCODE as sent
  bool truncated = false;                // TC: the answer did not fit (c-ares normally retries over TCP)
  bool authenticated = false;            // AD: the validating resolver vouches for the answer (RFC 4035 §3.2.3)
  std::string owner;                     // the name the TLSA records belong to, after in-answer CNAMEs
  std::vector<TlsaRecord> records;       // TLSA RRs of class IN at owner, in message order
  size_t malformed_records = 0;          // TLSA RRs at owner shorter than 3 octets (unusable, RFC 7672 §2.2)
  uint32_t answer_ttl = 0;               // smallest TTL of the CNAMEs followed and the records (0: none)
  std::optional<uint32_t> negative_ttl;  // from the authority SOA: min(its TTL, MINIMUM), RFC 2308
  bool ok() const { return error.empty(); }
};

// Reads a response to build_tlsa_query(expected_id, qname). expected_id nullopt skips the id
// check (c-ares' ares_send assigns its own id and matches replies to queries itself). Names are
// compared without regard to ASCII case; compression pointers are followed a bounded number of
// times and must point before the name they occur in, so no message can loop.
TlsaResponse parse_tlsa_response(const unsigned char* msg, size_t len, std::optional<uint16_t> expected_id,
                                 std::string_view qname);

}  // namespace deliverd::dns
