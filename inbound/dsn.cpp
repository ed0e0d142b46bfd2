#include "inbound/dsn.h"

#include "core/ascii.h"
#include "inbound/headers.h"

namespace deliverd::inbound {

namespace {

constexpr std::string_view kActionNames[] = {"failed", "delayed", "delivered", "relayed", "expanded", "unknown"};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

size_t digits_at(std::string_view s, size_t i) {
  size_t n = 0;
  while (i + n < s.size() && core::ascii_is_digit(s[i + n])) ++n;
  return n;
}

}  // namespace

std::string_view to_string(DsnAction a) { return kActionNames[static_cast<size_t>(a)]; }

DsnAction parse_dsn_action(std::string_view value) {
  value = trim(value);
  size_t end = value.find_first_of(" \t(;");
  std::string_view word = value.substr(0, end);
  for (size_t i = 0; i + 1 < std::size(kActionNames); ++i)
    if (core::iequals(word, kActionNames[i])) return static_cast<DsnAction>(i);
  return DsnAction::Unknown;
}

std::string status_in(std::string_view text) {
  for (size_t i = 0; i + 5 <= text.size(); ++i) {
    char c = text[i];
    if (c != '2' && c != '4' && c != '5') continue;
    if (i > 0 && (core::ascii_is_digit(text[i - 1]) || text[i - 1] == '.')) continue;
    if (text[i + 1] != '.') continue;
    size_t y = digits_at(text, i + 2);
    if (y == 0 || y > 3) continue;
    size_t dot = i + 2 + y;
    if (dot >= text.size() || text[dot] != '.') continue;
    size_t z = digits_at(text, dot + 1);
    if (z == 0 || z > 3) continue;
    size_t end = dot + 1 + z;
    if (end < text.size() && (text[end] == '.' && end + 1 < text.size() && core::ascii_is_digit(text[end + 1])))
      continue;  // an IP address or a version number, not a status
    return std::string(text.substr(i, end - i));
  }
  return {};
}

std::string without_type(std::string_view value) {
  value = trim(value);
  size_t semi = value.find(';');
  if (semi == std::string_view::npos) return std::string(value);
  std::string_view type = trim(value.substr(0, semi));
  bool is_type = !type.empty() && type.size() <= 32;
  for (char c : type)
    if (!core::ascii_is_alnum(c) && c != '-' && c != '.' && c != '_') is_type = false;
  return std::string(is_type ? trim(value.substr(semi + 1)) : value);
}

core::Result<DeliveryStatus, std::string> parse_delivery_status(std::string_view body) {
  DeliveryStatus ds;
  bool first = true;
  size_t pos = 0;
  HeaderLimits limits;
  limits.max_fields = 64;
  limits.max_bytes = 16 * 1024;
  // Groups are header blocks separated by one or more empty lines.
  while (pos < body.size()) {
    // skip empty lines between groups
    while (pos < body.size() && (body[pos] == '\r' || body[pos] == '\n')) ++pos;
    if (pos >= body.size()) break;
    size_t used = 0;
    std::string_view rest = body.substr(pos);
    Headers g = parse_headers(rest, &used, limits);
    if (used == 0) used = rest.size();
    pos += used;
    if (g.fields.empty()) continue;
    bool per_recipient = g.has("Final-Recipient") || g.has("Action") || g.has("Original-Recipient");
    if (first && !per_recipient) {
      ds.reporting_mta = without_type(g.value("Reporting-MTA"));
      ds.original_envelope_id = std::string(trim(g.value("Original-Envelope-Id")));
      first = false;
      continue;
    }
    first = false;
    if (!per_recipient) continue;
    if (ds.recipients.size() >= kMaxDsnRecipients) {
      ds.truncated = true;
      break;
    }
    DsnRecipient r;
    r.final_recipient = address_in(without_type(g.value("Final-Recipient")));
    r.original_recipient = address_in(without_type(g.value("Original-Recipient")));
    if (r.final_recipient.empty()) r.final_recipient = r.original_recipient;
    r.action = parse_dsn_action(g.value("Action"));
    r.status = status_in(g.value("Status"));
    r.diagnostic = without_type(g.value("Diagnostic-Code"));
    r.remote_mta = without_type(g.value("Remote-MTA"));
    if (r.final_recipient.empty()) continue;
    ds.recipients.push_back(std::move(r));
  }
  if (ds.recipients.empty()) return core::Err{std::string("no recipient group with a Final-Recipient")};
  return ds;
}

}  // namespace deliverd::inbound
