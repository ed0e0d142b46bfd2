#include "dns/tlsa_message.h"

#include <algorithm>

#include "dns/dns_message.h"

namespace deliverd::dns {

namespace {

constexpr uint16_t kTypeCname = 5;
constexpr uint16_t kTypeSoa = 6;
constexpr uint16_t kTypeOpt = 41;
constexpr uint16_t kClassIn = 1;
constexpr int kMaxPointerJumps = 32;
constexpr size_t kMaxNameOctets = 255;  // RFC 1035 §2.3.4, wire form

uint16_t u16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t u32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
void put16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xff));
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Reads the (possibly compressed) name at *off into text form: labels joined by '.', ASCII
// lower-cased, octets that would make the text ambiguous ('.', '\\', controls, non-ASCII) as
// \DDD; the root is "". On success *off is just past the name in the message.
bool read_name(const unsigned char* m, size_t len, size_t* off, std::string* out, std::string* error,
               const char* where) {
  out->clear();
  size_t pos = *off;
  size_t end = 0;  // where the name ends in place (set at the first pointer)
  bool jumped = false;
  int jumps = 0;
  size_t octets = 0;
  for (;;) {
    if (pos >= len) {
      *error = std::string(where) + ": name runs past the end of the message";
      return false;
    }
    unsigned char c = m[pos];
    if ((c & 0xc0) == 0xc0) {
      if (pos + 2 > len) {
        *error = std::string(where) + ": compression pointer cut short";
        return false;
      }
      size_t target = static_cast<size_t>(u16(m + pos) & 0x3fff);
      // Strictly backwards, and a bounded number of times: no message can make this loop.
      if (target >= pos || ++jumps > kMaxPointerJumps) {
        *error = std::string(where) + ": compression pointer does not point backwards";
        return false;
      }
      if (!jumped) end = pos + 2;
      jumped = true;
      pos = target;
      continue;
    }
    if ((c & 0xc0) != 0) {
      *error = std::string(where) + ": unknown label type";
      return false;
    }
    octets += 1 + c;
    if (octets > kMaxNameOctets) {
      *error = std::string(where) + ": name longer than 255 octets";
      return false;
    }
    if (c == 0) {
      *off = jumped ? end : pos + 1;
      return true;
    }
    if (pos + 1 + c > len) {
      *error = std::string(where) + ": label runs past the end of the message";
      return false;
    }
    if (!out->empty()) out->push_back('.');
    for (size_t i = pos + 1; i < pos + 1 + c; ++i) {
      unsigned char b = m[i];
      if (b <= 0x20 || b >= 0x7f || b == '.' || b == '\\') {
        out->push_back('\\');
        out->push_back(static_cast<char>('0' + b / 100));
        out->push_back(static_cast<char>('0' + b / 10 % 10));
        out->push_back(static_cast<char>('0' + b % 10));
      } else {
        out->push_back(lower(static_cast<char>(b)));
      }
    }
    pos += 1 + c;
  }
}

struct Rr {
  std::string owner;
  uint16_t type = 0, klass = 0;
  uint32_t ttl = 0;
  size_t rdata = 0, rdlen = 0;  // offset and length of the RDATA in the message
};

bool read_rr(const unsigned char* m, size_t len, size_t* off, Rr* rr, std::string* error, const char* where) {
  if (!read_name(m, len, off, &rr->owner, error, where)) return false;
  if (*off + 10 > len) {
    *error = std::string(where) + ": record header cut short";
    return false;
  }
  rr->type = u16(m + *off);
  rr->klass = u16(m + *off + 2);
  rr->ttl = u32(m + *off + 4);
  if (rr->ttl > 0x7fffffff) rr->ttl = 0;  // RFC 2181 §8: a TTL with the top bit set means zero
  rr->rdlen = u16(m + *off + 8);
  rr->rdata = *off + 10;
  if (rr->rdata + rr->rdlen > len) {
    *error = std::string(where) + ": record data runs past the end of the message";
    return false;
  }
  *off = rr->rdata + rr->rdlen;
  return true;
}

}  // namespace

std::string build_tlsa_query(uint16_t id, std::string_view name, std::string* error) {
  auto host = normalize_host_name(name);
  if (!host) {
    if (error) *error = "not a valid DNS name: '" + std::string(name.substr(0, 300)) + "'";
    return {};
  }
  std::string q;
  q.reserve(12 + host->size() + 2 + 4 + 11);
  put16(q, id);
  put16(q, 0x0120);  // RD (recursion desired) and AD (RFC 6840 §5.7); opcode QUERY
  put16(q, 1);       // QDCOUNT
  put16(q, 0);       // ANCOUNT
  put16(q, 0);       // NSCOUNT
  put16(q, 1);       // ARCOUNT: the OPT record
  size_t start = 0;
  while (start <= host->size()) {
    size_t dot = host->find('.', start);
    if (dot == std::string::npos) dot = host->size();
    q.push_back(static_cast<char>(dot - start));
    q.append(*host, start, dot - start);
    start = dot + 1;
  }
  q.push_back('\0');
  put16(q, kTypeTlsa);
  put16(q, kClassIn);
  q.push_back('\0');  // OPT owner: the root
  put16(q, kTypeOpt);
  put16(q, kEdnsUdpSize);  // CLASS of OPT: the requester's UDP payload size
  put16(q, 0);             // extended RCODE 0, EDNS version 0
  put16(q, 0x8000);        // DO: DNSSEC OK (RFC 3225)
  put16(q, 0);             // no options
  return q;
}

TlsaResponse parse_tlsa_response(const unsigned char* msg, size_t len, std::optional<uint16_t> expected_id,
                                 std::string_view qname) {
  TlsaResponse r;
  if (!msg || len < 12) {
    r.error = "response shorter than a DNS header (" + std::to_string(msg ? len : 0) + " octets)";
    return r;
  }
  std::string want = normalize_host_name(qname).value_or("");
  if (want.empty()) {
    r.error = "question name is not a valid DNS name";
    return r;
  }
  r.id = u16(msg);
  uint16_t flags = u16(msg + 2);
  if (expected_id && r.id != *expected_id) {
    r.error = "response id " + std::to_string(r.id) + " does not match query id " + std::to_string(*expected_id);
    return r;
  }
  if (!(flags & 0x8000)) {
    r.error = "message is a query, not a response (QR=0)";
    return r;
  }
  if (((flags >> 11) & 0xf) != 0) {
    r.error = "response opcode " + std::to_string((flags >> 11) & 0xf) + " is not QUERY";
    return r;
  }
  r.truncated = (flags & 0x0200) != 0;
  r.authenticated = (flags & 0x0020) != 0;
  r.rcode_value = flags & 0xf;
  switch (r.rcode_value) {
    case 0:
      r.rcode = Rcode::NoError;
      break;
    case 2:
      r.rcode = Rcode::ServFail;
      break;
    case 3:
      r.rcode = Rcode::NxDomain;
      break;
    case 5:
      r.rcode = Rcode::Refused;
      break;
    default:
      r.rcode = Rcode::Other;
      break;
  }
  uint16_t qd = u16(msg + 4), an = u16(msg + 6), ns = u16(msg + 8);
  if (qd != 1) {
    r.error = "response has " + std::to_string(qd) + " questions, not 1";
    return r;
  }
  size_t off = 12;
  std::string name;
  if (!read_name(msg, len, &off, &name, &r.error, "question")) return r;
  if (off + 4 > len) {
    r.error = "question: type and class cut short";
    return r;
  }
  if (name != want || u16(msg + off) != kTypeTlsa || u16(msg + off + 2) != kClassIn) {
    r.error = "response question '" + name.substr(0, 300) + "' type " + std::to_string(u16(msg + off)) +
              " does not echo '" + want + "' TLSA";
    return r;
  }
  off += 4;

  std::vector<Rr> answers;
  answers.reserve(std::min<size_t>(an, 64));
  for (uint16_t i = 0; i < an; ++i) {
    Rr rr;
    if (!read_rr(msg, len, &off, &rr, &r.error, "answer")) return r;
    if (rr.klass == kClassIn && (rr.type == kTypeCname || rr.type == kTypeTlsa)) answers.push_back(std::move(rr));
  }

  // Follow the CNAME chain the answer carries from the question name (RFC 1034 §3.6.2).
  std::string owner = want;
  std::optional<uint32_t> ttl;
  auto take_ttl = [&](uint32_t t) { ttl = ttl ? std::min(*ttl, t) : t; };
  for (int hops = 0;; ++hops) {
    auto cname = std::find_if(answers.begin(), answers.end(),
                              [&](const Rr& rr) { return rr.type == kTypeCname && rr.owner == owner; });
    if (cname == answers.end()) break;
    if (hops == kMaxCnameHops) {
      r.error = "answer: CNAME chain longer than " + std::to_string(kMaxCnameHops);
      return r;
    }
    size_t p = cname->rdata;
    std::string target;
    if (!read_name(msg, len, &p, &target, &r.error, "answer CNAME")) return r;
    if (p != cname->rdata + cname->rdlen) {
      r.error = "answer CNAME: data length does not match its name";
      return r;
    }
    take_ttl(cname->ttl);
    owner = std::move(target);
  }
  r.owner = owner;
  for (const Rr& rr : answers) {
    if (rr.type != kTypeTlsa || rr.owner != owner) continue;
    if (rr.rdlen < 3) {
      ++r.malformed_records;
      continue;
    }
    const unsigned char* d = msg + rr.rdata;
    r.records.push_back(TlsaRecord{d[0], d[1], d[2], std::string(reinterpret_cast<const char*>(d + 3), rr.rdlen - 3)});
    take_ttl(rr.ttl);
  }
  if (!r.records.empty() || ttl) r.answer_ttl = ttl.value_or(0);

  // The authority section's SOA bounds how long a denial may be cached (RFC 2308 §5).
  for (uint16_t i = 0; i < ns; ++i) {
    Rr rr;
    if (!read_rr(msg, len, &off, &rr, &r.error, "authority")) return r;
    if (rr.type != kTypeSoa || rr.klass != kClassIn) continue;
    size_t p = rr.rdata;
    std::string skip;
    if (!read_name(msg, len, &p, &skip, &r.error, "authority SOA") ||
        !read_name(msg, len, &p, &skip, &r.error, "authority SOA"))
      return r;
    if (p + 20 != rr.rdata + rr.rdlen) {
      r.error = "authority SOA: data length does not match its fields";
      return r;
    }
    uint32_t minimum = u32(msg + p + 16);
    uint32_t t = std::min(rr.ttl, minimum);
    r.negative_ttl = r.negative_ttl ? std::min(*r.negative_ttl, t) : t;
  }
  return r;
}

}  // namespace deliverd::dns
