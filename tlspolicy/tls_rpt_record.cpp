#include "tlspolicy/tls_rpt_record.h"

#include <string_view>

#include "core/address.h"
#include "core/ascii.h"
#include "core/https_client.h"
#include "core/percent.h"

namespace deliverd::tlspolicy {

namespace {

constexpr std::string_view kVersion = "v=TLSRPTv1";

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

// tlsrpt-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
bool valid_ext_name(std::string_view n) {
  if (n.empty() || n.size() > 32 || !core::ascii_is_alnum(n[0])) return false;
  for (char c : n)
    if (!core::ascii_is_alnum(c) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

// tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E): visible characters except ";" and "=".
bool valid_ext_value(std::string_view v) {
  if (v.empty()) return false;
  for (char c : v)
    if (c < 0x21 || c > 0x7e || c == ';' || c == '=') return false;
  return true;
}

// One URI of rua=. A kept one goes into rec; another scheme is counted as ignored; a mailto: or
// https: URI that is not usable is an error, since the domain meant it and would get nothing.
core::Result<core::Ok, std::string> add_uri(std::string_view uri, TlsRptRecord& rec) {
  if (uri.empty()) return core::Err(std::string("the _smtp._tls record has an empty rua URI"));
  for (char c : uri)
    if (c < 0x21 || c > 0x7e) return core::Err("the _smtp._tls rua URI '" + shown(uri) + "' has a space or control");
  ReportUri out;
  if (core::istarts_with(uri, "mailto:")) {
    // mailto:addr[?hfields] (RFC 6068): header fields are not ours to set, only the address counts.
    std::string_view addr = uri.substr(7);
    addr = addr.substr(0, addr.find('?'));
    auto decoded = core::percent_decode(addr);
    if (!decoded) return core::Err("the _smtp._tls rua URI '" + shown(uri) + "' has a bad percent-encoding");
    auto parsed = core::parse_address(*decoded);
    if (!parsed) return core::Err("the _smtp._tls rua URI '" + shown(uri) + "': " + parsed.error());
    out.scheme = ReportUri::Scheme::Mailto;
    out.target = std::move(*decoded);
  } else if (core::istarts_with(uri, "https:")) {
    auto url = core::parse_https_url(uri);
    if (!url) return core::Err("the _smtp._tls rua URI '" + shown(uri) + "': " + url.error());
    out.scheme = ReportUri::Scheme::Https;
    out.target = std::string(uri);
  } else {
    ++rec.ignored;  // another scheme: not one RFC 8460 defines
    return core::Ok{};
  }
  if (rec.rua.size() >= kMaxTlsRptUris) {
    ++rec.ignored;
    return core::Ok{};
  }
  for (const auto& have : rec.rua)
    if (have == out) return core::Ok{};  // listed twice: one report is enough
  rec.rua.push_back(std::move(out));
  return core::Ok{};
}

core::Result<TlsRptRecord, std::string> parse_one(std::string_view text) {
  // The version must be the first field, spelled exactly (%s in the ABNF: case-sensitive).
  std::string_view rest = trim_wsp(text.substr(kVersion.size()));
  if (rest.empty() || rest[0] != ';') return core::Err(std::string("the _smtp._tls record has no ';' after v=TLSRPTv1"));
  rest.remove_prefix(1);
  TlsRptRecord rec;
  bool have_rua = false;
  while (true) {
    size_t semi = rest.find(';');
    std::string_view field = trim_wsp(rest.substr(0, semi));
    bool last = semi == std::string_view::npos;
    rest = last ? std::string_view() : rest.substr(semi + 1);
    if (field.empty()) {
      if (last) break;  // a trailing delimiter is allowed, an empty field inside is not
      return core::Err(std::string("the _smtp._tls record has an empty field"));
    }
    size_t eq = field.find('=');
    if (eq == std::string_view::npos)
      return core::Err("the _smtp._tls record field '" + shown(field) + "' has no '='");
    std::string_view name = field.substr(0, eq), value = field.substr(eq + 1);
    if (name == "rua") {
      if (have_rua) return core::Err(std::string("the _smtp._tls record has more than one rua"));
      have_rua = true;
      while (true) {
        size_t comma = value.find(',');
        auto added = add_uri(trim_wsp(value.substr(0, comma)), rec);
        if (!added) return core::Err(added.error());
        if (comma == std::string_view::npos) break;
        value = value.substr(comma + 1);
      }
    } else if (!valid_ext_name(name) || !valid_ext_value(value)) {
      return core::Err("the _smtp._tls record field '" + shown(field) + "' is malformed");
    }
    if (last) break;
  }
  if (!have_rua) return core::Err(std::string("the _smtp._tls record has no rua"));
  if (rec.rua.empty()) return core::Err(std::string("the _smtp._tls record names no mailto: or https: URI"));
  return rec;
}

}  // namespace

core::Result<std::optional<TlsRptRecord>, std::string> parse_tls_rpt_record(const std::vector<std::string>& answers) {
  if (answers.size() > kMaxTlsRptAnswers)
    return core::Err("the domain publishes " + std::to_string(answers.size()) + " _smtp._tls TXT records; at most " +
                     std::to_string(kMaxTlsRptAnswers) + " are read");
  const std::string* found = nullptr;
  size_t count = 0;
  for (const auto& a : answers) {
    if (a.compare(0, kVersion.size(), kVersion) != 0) continue;
    // "v=TLSRPTv1" followed by a delimiter (or nothing); "v=TLSRPTv10" is another record.
    std::string_view after = std::string_view(a).substr(kVersion.size());
    if (!after.empty() && !is_wsp(after[0]) && after[0] != ';') continue;
    if (a.size() > kMaxTlsRptRecordBytes)
      return core::Err("the _smtp._tls record is " + std::to_string(a.size()) + " bytes; at most " +
                       std::to_string(kMaxTlsRptRecordBytes) + " are read");
    ++count;
    found = &a;
  }
  if (count == 0) return std::optional<TlsRptRecord>();
  if (count > 1)
    return core::Err("the domain publishes " + std::to_string(count) + " _smtp._tls records; exactly one is allowed");
  auto r = parse_one(*found);
  if (!r) return core::Err(r.error());
  return std::optional<TlsRptRecord>(std::move(r.value()));
}

}  // namespace deliverd::tlspolicy
