#include "dns/dns_message.h"

#include <algorithm>

#include "core/ascii.h"

namespace deliverd::dns {

namespace {

// Skips a (possibly compressed) name; returns the offset after it or nullopt.
std::optional<size_t> skip_name(const unsigned char* m, size_t len, size_t off) {
  for (int labels = 0; labels < 128; ++labels) {
    if (off >= len) return std::nullopt;
    unsigned char c = m[off];
    if (c == 0) return off + 1;
    if ((c & 0xc0) == 0xc0) {
      if (off + 2 > len) return std::nullopt;
      return off + 2;  // a pointer ends the name in place
    }
    if ((c & 0xc0) != 0) return std::nullopt;
    off += 1 + c;
  }
  return std::nullopt;
}

uint16_t u16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t u32(const unsigned char* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

}  // namespace

std::optional<uint32_t> min_answer_ttl(const unsigned char* msg, size_t len) {
  if (!msg || len < 12) return std::nullopt;
  uint16_t qd = u16(msg + 4), an = u16(msg + 6);
  size_t off = 12;
  for (uint16_t i = 0; i < qd; ++i) {
    auto o = skip_name(msg, len, off);
    if (!o || *o + 4 > len) return std::nullopt;
    off = *o + 4;
  }
  std::optional<uint32_t> best;
  for (uint16_t i = 0; i < an; ++i) {
    auto o = skip_name(msg, len, off);
    if (!o || *o + 10 > len) return std::nullopt;
    uint32_t ttl = u32(msg + *o + 4);
    if (ttl > 0x7fffffffu) ttl = 0;  // RFC 2181 §8: a TTL with the top bit set means zero
    uint16_t rdlen = u16(msg + *o + 8);
    if (*o + 10 + rdlen > len) return std::nullopt;
    best = best ? std::min(*best, ttl) : ttl;
    off = *o + 10 + rdlen;
  }
  return best;
}

std::optional<std::string> normalize_host_name(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty() || host.size() > 253) return std::nullopt;
  std::string out;
  out.reserve(host.size());
  size_t label_len = 0;
  size_t last_label_start = 0;
  for (size_t i = 0; i < host.size(); ++i) {
    char c = host[i];
    if (c == '.') {
      if (label_len == 0) return std::nullopt;
      label_len = 0;
      last_label_start = i + 1;
      out.push_back('.');
      continue;
    }
    bool ok = core::ascii_is_alnum(c) || c == '-' || c == '_';
    if (!ok) return std::nullopt;
    if (++label_len > 63) return std::nullopt;
    out.push_back(core::ascii_lower(c));
  }
  if (label_len == 0) return std::nullopt;
  std::string_view last = std::string_view(out).substr(last_label_start);
  // No top-level domain starts with a digit; anything that does is a mangled IP literal.
  if (last[0] >= '0' && last[0] <= '9') return std::nullopt;
  return out;
}

}  // namespace deliverd::dns
