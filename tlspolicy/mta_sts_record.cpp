#include "tlspolicy/mta_sts_record.h"

#include "core/ascii.h"

namespace deliverd::tlspolicy {

namespace {

constexpr std::string_view kVersion = "v=STSv1";

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim_wsp(std::string_view s) {
  while (!s.empty() && is_wsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_wsp(s.back())) s.remove_suffix(1);
  return s;
}

// What goes into an error: printable ASCII only, and not much of it, since a peer wrote it.
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) out += (c > 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 40) out += "...";
  return out;
}

// sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool valid_ext_name(std::string_view n) {
  if (n.empty() || n.size() > 32 || !core::ascii_is_alnum(n[0])) return false;
  for (char c : n)
    if (!core::ascii_is_alnum(c) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

// sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E): visible characters except ";" and "=".
bool valid_ext_value(std::string_view v) {
  if (v.empty()) return false;
  for (char c : v)
    if (c < 0x21 || c > 0x7e || c == ';' || c == '=') return false;
  return true;
}

core::Result<MtaStsRecord, std::string> parse_one(std::string_view text) {
  // The version must be the first field, spelled exactly (%s in the ABNF: case-sensitive).
  std::string_view rest = trim_wsp(text.substr(kVersion.size()));
  if (rest.empty() || rest[0] != ';') return core::Err(std::string("the _mta-sts record has no ';' after v=STSv1"));
  rest.remove_prefix(1);
  MtaStsRecord rec;
  bool have_id = false;
  while (true) {
    size_t semi = rest.find(';');
    std::string_view field = trim_wsp(rest.substr(0, semi));
    bool last = semi == std::string_view::npos;
    rest = last ? std::string_view() : rest.substr(semi + 1);
    if (field.empty()) {
      // A trailing delimiter is allowed (sts-field-delim at the end); an empty field inside is not.
      if (last) break;
      return core::Err(std::string("the _mta-sts record has an empty field"));
    }
    size_t eq = field.find('=');
    if (eq == std::string_view::npos)
      return core::Err("the _mta-sts record field '" + shown(field) + "' has no '='");
    std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
    if (name == "id") {
      if (have_id) return core::Err(std::string("the _mta-sts record has more than one id"));
      if (value.empty() || value.size() > kMaxStsIdLength)
        return core::Err("the _mta-sts record id '" + shown(value) + "' is not 1-32 characters");
      for (char c : value)
        if (!core::ascii_is_alnum(c))
          return core::Err("the _mta-sts record id '" + shown(value) + "' is not letters and digits only");
      rec.id = std::string(value);
      have_id = true;
    } else if (!valid_ext_name(name) || !valid_ext_value(value)) {
      return core::Err("the _mta-sts record field '" + shown(field) + "' is malformed");
    }
    // Extensions are ignored (RFC 8461 3.1).
    if (last) break;
  }
  if (!have_id) return core::Err(std::string("the _mta-sts record has no id"));
  return rec;
}

}  // namespace

core::Result<std::optional<MtaStsRecord>, std::string> parse_mta_sts_record(const std::vector<std::string>& answers) {
  const std::string* found = nullptr;
  size_t count = 0;
  for (const auto& a : answers) {
    // "v=STSv1" followed by a delimiter (or nothing); "v=STSv10" is another record.
    if (a.compare(0, kVersion.size(), kVersion) != 0) continue;
    std::string_view after = std::string_view(a).substr(kVersion.size());
    if (!after.empty() && !is_wsp(after[0]) && after[0] != ';') continue;
    ++count;
    found = &a;
  }
  if (count == 0) return std::optional<MtaStsRecord>();
  if (count > 1)
    return core::Err("the domain publishes " + std::to_string(count) + " _mta-sts records; exactly one is allowed");
  auto r = parse_one(*found);
  if (!r) return core::Err(r.error());
  return std::optional<MtaStsRecord>(std::move(r.value()));
}

}  // namespace deliverd::tlspolicy
