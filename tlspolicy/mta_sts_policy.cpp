#include "tlspolicy/mta_sts_policy.h"

#include <optional>

#include "core/ascii.h"

namespace deliverd::tlspolicy {

namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 40) out += "...";
  return out;
}

// sts-policy-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool valid_key(std::string_view k) {
  if (k.empty() || k.size() > 32 || !core::ascii_is_alnum(k[0])) return false;
  for (char c : k)
    if (!core::ascii_is_alnum(c) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

// ["*."] Domain: labels of letters, digits and hyphens (A-labels for IDNs, as RFC 8461 3.2
// asks), 63 octets each, 253 in all. Returns the pattern lower-cased without a trailing dot.
std::optional<std::string> mx_pattern(std::string_view v) {
  if (!v.empty() && v.back() == '.') v.remove_suffix(1);
  std::string out;
  if (v.substr(0, 2) == "*.") {
    out = "*.";
    v.remove_prefix(2);
  }
  if (v.empty() || v.size() > 253) return std::nullopt;
  size_t label = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == '.') {
      if (label == 0 || v[i - 1] == '-') return std::nullopt;
      label = 0;
    } else if (core::ascii_is_alnum(c) || c == '-') {
      if (label == 0 && c == '-') return std::nullopt;
      if (++label > 63) return std::nullopt;
    } else {
      return std::nullopt;
    }
    out += core::ascii_lower(c);
  }
  if (label == 0 || v.back() == '-') return std::nullopt;
  return out;
}

}  // namespace

core::Result<MtaStsPolicy, std::string> parse_mta_sts_policy(std::string_view body) {
  if (body.size() > kMaxPolicyBytes)
    return core::Err("the policy is " + std::to_string(body.size()) + " bytes; at most " +
                     std::to_string(kMaxPolicyBytes) + " are allowed");
  MtaStsPolicy p;
  bool have_version = false, have_mode = false, have_max_age = false;
  size_t line_no = 0;
  while (!body.empty()) {
    size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body = nl == std::string_view::npos ? std::string_view() : body.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (!line.empty() && is_wsp(line.back())) line.remove_suffix(1);
    // A blank line is no field; tolerating one (often the last) costs nothing.
    if (line.empty()) continue;
    std::string where = "policy line " + std::to_string(line_no);
    for (char c : line)
      if ((c < 0x20 && c != '\t') || c == 0x7f) return core::Err(where + " has a control character");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return core::Err(where + " '" + shown(line) + "' is not 'key: value'");
    std::string_view key = line.substr(0, colon), value = line.substr(colon + 1);
    while (!value.empty() && is_wsp(value.front())) value.remove_prefix(1);
    if (!valid_key(key)) return core::Err(where + " has a malformed key '" + shown(key) + "'");
    // Keys and the values of version and mode are case-sensitive (%s in the ABNF).
    if (key == "version") {
      if (have_version) return core::Err(where + ": version is given twice");
      if (value != "STSv1") return core::Err(where + ": version '" + shown(value) + "' is not STSv1");
      have_version = true;
    } else if (key == "mode") {
      if (have_mode) return core::Err(where + ": mode is given twice");
      if (value == "enforce") p.mode = StsMode::Enforce;
      else if (value == "testing") p.mode = StsMode::Testing;
      else if (value == "none") p.mode = StsMode::None;
      else return core::Err(where + ": mode '" + shown(value) + "' is not enforce, testing or none");
      have_mode = true;
    } else if (key == "max_age") {
      if (have_max_age) return core::Err(where + ": max_age is given twice");
      if (value.empty() || value.size() > 10)
        return core::Err(where + ": max_age '" + shown(value) + "' is not 1-10 digits");
      int64_t n = 0;
      for (char c : value) {
        if (!core::ascii_is_digit(c)) return core::Err(where + ": max_age '" + shown(value) + "' is not digits only");
        n = n * 10 + (c - '0');
      }
      if (n > kMaxStsMaxAge)
        return core::Err(where + ": max_age " + std::string(value) + " is above " + std::to_string(kMaxStsMaxAge));
      p.max_age_s = n;
      have_max_age = true;
    } else if (key == "mx") {
      auto pattern = mx_pattern(value);
      if (!pattern) return core::Err(where + ": mx '" + shown(value) + "' is not a host name or *.domain");
      p.mx.push_back(std::move(*pattern));
    }
    // Any other key is an extension and ignored (RFC 8461 3.2).
  }
  if (!have_version) return core::Err(std::string("the policy has no version"));
  if (!have_mode) return core::Err(std::string("the policy has no mode"));
  if (!have_max_age) return core::Err(std::string("the policy has no max_age"));
  if (p.mx.empty() && p.mode != StsMode::None) return core::Err(std::string("the policy has no mx"));
  return p;
}

bool matches_mx(const MtaStsPolicy& policy, std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return false;
  for (const auto& pattern : policy.mx) {
    std::string_view pat = pattern;
    if (pat.substr(0, 2) == "*.") {
      // One label, then the pattern's domain: "*.example.com" is "mx.example.com" but neither
      // "example.com" nor "a.b.example.com".
      size_t dot = host.find('.');
      if (dot == 0 || dot == std::string_view::npos) continue;
      if (core::iequals(host.substr(dot + 1), pat.substr(2))) return true;
    } else if (core::iequals(host, pat)) {
      return true;
    }
  }
  return false;
}

}  // namespace deliverd::tlspolicy
