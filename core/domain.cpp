#include "core/domain.h"

#include <idn2.h>

#include <memory>

#include "core/ascii.h"
#include "core/utf8.h"

namespace deliverd::core {
namespace {

struct Idn2Free {
  void operator()(uint8_t* p) const { idn2_free(p); }
};

// Quoted into an error: the label as given, cut short so a hostile name cannot flood a log.
std::string quoted(std::string_view label) {
  std::string shown(label.substr(0, 64));
  if (label.size() > 64) shown += "…";
  return "'" + shown + "'";
}

Result<std::string, std::string> normalize_label(std::string_view label) {
  if (label.empty()) return Err{std::string("the domain has an empty label")};
  const bool idn = !is_ascii(label) || istarts_with(label, "xn--");
  if (!idn) {
    if (label.size() > kMaxLabelLength) return Err{"the domain label " + quoted(label) + " is longer than 63 octets"};
    for (char c : label)
      if (!ascii_is_alnum(c) && c != '-')
        return Err{"the domain label " + quoted(label) + " has a character other than letters, digits and hyphens"};
    if (label.front() == '-' || label.back() == '-')
      return Err{"the domain label " + quoted(label) + " starts or ends with a hyphen"};
    return ascii_lowercase(label);
  }
  if (!is_valid_utf8(label)) return Err{"the domain label " + quoted(label) + " is not valid UTF-8"};
  // libidn2 reads a C string: a NUL would cut the label short and let what follows it through.
  // The ASCII in an internationalised label follows the same letters-digits-hyphens rule.
  for (char c : label)
    if (static_cast<unsigned char>(c) < 0x80 && !ascii_is_alnum(c) && c != '-')
      return Err{"the domain label " + quoted(label) + " has a character other than letters, digits and hyphens"};
  const std::string z(label);  // libidn2 wants a NUL-terminated string
  uint8_t* out = nullptr;
  const int rc = idn2_lookup_u8(reinterpret_cast<const uint8_t*>(z.c_str()), &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
  std::unique_ptr<uint8_t, Idn2Free> owned(out);
  if (rc != IDN2_OK)
    return Err{"the domain label " + quoted(label) + " is not valid IDNA2008 (" + idn2_strerror(rc) + ")"};
  std::string a_label(reinterpret_cast<const char*>(out));
  // UTS #46 maps some characters to nothing (variation selectors, U+FE00…FE0F, and others): a
  // label of only those would become an empty label, which the name as written did not have.
  if (a_label.empty()) return Err{"the domain label " + quoted(label) + " maps to nothing under IDNA"};
  for (char c : a_label)
    if (!ascii_is_alnum(c) && c != '-' && c != '.')
      return Err{"the domain label " + quoted(label) + " maps to a character other than letters, digits and hyphens"};
  // UTS #46 maps some characters to a dot (U+3002 and friends): that would be a second label.
  if (a_label.find('.') != std::string::npos)
    return Err{"the domain label " + quoted(label) + " holds a character that stands for a dot"};
  if (a_label.size() > kMaxLabelLength)
    return Err{"the domain label " + quoted(label) + " is longer than 63 octets as an A-label"};
  return a_label;
}

constexpr std::string_view kSpecialUse[][2] = {
    {"localhost", "'localhost' names are the host itself (RFC 6761)"},
    {"invalid", "'.invalid' names never exist (RFC 6761)"},
    {"local", "'.local' names are multicast DNS on the local link (RFC 6762)"},
    {"onion", "'.onion' names are Tor onion services (RFC 7686)"},
    {"home.arpa", "'.home.arpa' names are home networks (RFC 8375)"},
    {"internal", "'.internal' names are private networks"},
};

}  // namespace

Result<std::string, std::string> normalize_domain(std::string_view name) {
  if (name.empty()) return Err{std::string("the domain is empty")};
  // Longer than any name can be even after mapping: refused before libidn2 sees it.
  if (name.size() > 4 * kMaxDomainLength) return Err{std::string("the domain is longer than 253 octets")};
  if (name.back() == '.') return Err{std::string("the domain ends with a dot")};
  std::string out;
  size_t start = 0;
  for (;;) {
    const size_t dot = name.find('.', start);
    auto label = normalize_label(name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (!label) return Err{label.error()};
    if (!out.empty()) out += '.';
    out += *label;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (out.size() > kMaxDomainLength) return Err{"the domain is longer than 253 octets (" + std::to_string(out.size()) + ")"};
  return out;
}

std::optional<std::string_view> special_use_rule(std::string_view name) {
  for (const auto& [suffix, rule] : kSpecialUse) {
    if (name == suffix) return rule;
    if (name.size() > suffix.size() && name.substr(name.size() - suffix.size()) == suffix &&
        name[name.size() - suffix.size() - 1] == '.')
      return rule;
  }
  if (name.find('.') == std::string_view::npos)
    return "single-label names are completed from the resolver's search list into internal names";
  return std::nullopt;
}

}  // namespace deliverd::core
