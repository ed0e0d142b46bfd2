#include "core/address.h"

#include <unicase.h>
#include <uninorm.h>

#include <cstdlib>
#include <memory>

#include "core/ascii.h"
#include "core/domain.h"
#include "core/utf8.h"

namespace deliverd::core {
namespace {

constexpr size_t kMaxDomainAsGiven = 255;  // RFC 5321 4.5.3.1.2

bool is_atext(char c) {
  return ascii_is_alnum(c) || std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

// RFC 6531's UTF8-non-ascii, less the C1 controls (U+0080-U+009F), which no mailbox name holds.
// Returns the length of the sequence at s[i], 0 if it is not acceptable.
size_t utf8_char(std::string_view s, size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  const size_t n = utf8_sequence_length(lead);
  if (n == 1 || i + n > s.size() || !is_valid_utf8(s.substr(i, n))) return 0;
  if (lead == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) return 0;
  return n;
}

// A dot-string: atoms of atext (or UTF-8) separated by single dots.
Result<Ok, std::string> check_dot_string(std::string_view local) {
  if (local.front() == '.' || local.back() == '.') return Err{std::string("the local part starts or ends with a dot")};
  if (local.find("..") != std::string_view::npos) return Err{std::string("the local part has two dots in a row")};
  for (size_t i = 0; i < local.size();) {
    const char c = local[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      const size_t n = utf8_char(local, i);
      if (n == 0) return Err{std::string("the local part is not valid UTF-8")};
      i += n;
      continue;
    }
    if (!is_atext(c) && c != '.') {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
        return Err{std::string("the local part has a control character")};
      return Err{"the local part has the character '" + std::string(1, c) + "', which needs quotes"};
    }
    ++i;
  }
  return Ok{};
}

struct Local {
  std::string text;  // as it goes on the wire
  size_t end = 0;    // offset of the '@'
};

// A quoted local part starting at text[0]: RFC 5321 qtextSMTP and quoted-pairSMTP, plus UTF-8.
Result<Local, std::string> quoted_local(std::string_view text) {
  std::string content;
  size_t i = 1;
  for (;;) {
    if (i >= text.size()) return Err{std::string("the quoted local part has no closing quote")};
    const char c = text[i];
    if (c == '"') break;
    if (c == '\\') {
      if (i + 1 >= text.size() || text[i + 1] < 0x20 || text[i + 1] == 0x7f)
        return Err{std::string("the quoted local part has a bad backslash escape")};
      content += text[i + 1];
      i += 2;
      continue;
    }
    if (static_cast<unsigned char>(c) >= 0x80) {
      const size_t n = utf8_char(text, i);
      if (n == 0) return Err{std::string("the local part is not valid UTF-8")};
      content.append(text.substr(i, n));
      i += n;
      continue;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return Err{std::string("the local part has a control character")};
    content += c;
    ++i;
  }
  Local l;
  l.end = i + 1;
  if (l.end >= text.size() || text[l.end] != '@') return Err{std::string("the quoted local part is not followed by '@'")};
  if (content.empty()) return Err{std::string("the local part is empty")};
  // Quotes that protect nothing go (RFC 5321 4.1.2: SHOULD NOT quote a dot-string).
  if (check_dot_string(content)) l.text = content;
  else l.text = std::string(text.substr(0, l.end));
  return l;
}

}  // namespace

Result<Address, std::string> parse_address(std::string_view text) {
  if (text.empty()) return Err{std::string("the address is empty")};
  if (text.size() > kMaxLocalPartLength + 1 + kMaxDomainAsGiven)
    return Err{"the address is longer than " + std::to_string(kMaxAddressLength) + " octets"};
  Local local;
  if (text.front() == '"') {
    auto q = quoted_local(text);
    if (!q) return Err{q.error()};
    local = std::move(*q);
  } else {
    local.end = text.find('@');
    if (local.end == std::string_view::npos) return Err{std::string("the address has no '@'")};
    local.text = std::string(text.substr(0, local.end));
    if (local.text.empty()) return Err{std::string("the local part is empty")};
    if (auto r = check_dot_string(local.text); !r) return Err{r.error()};
  }
  if (local.end > kMaxLocalPartLength)
    return Err{"the local part is longer than " + std::to_string(kMaxLocalPartLength) + " octets"};

  std::string_view domain = text.substr(local.end + 1);
  if (domain.empty()) return Err{std::string("the domain is empty")};
  if (domain.front() == '[') return Err{std::string("address literals ([…]) are not accepted; use a domain name")};
  if (domain.find('@') != std::string_view::npos) return Err{std::string("the address has more than one '@'")};
  if (domain.size() > kMaxDomainAsGiven) return Err{std::string("the domain is longer than 255 octets")};
  auto normalized = normalize_domain(domain);
  if (!normalized) return Err{normalized.error()};
  const size_t last_dot = normalized->rfind('.');
  if (last_dot == std::string::npos) return Err{"the domain '" + *normalized + "' has only one label"};
  std::string_view tld = std::string_view(*normalized).substr(last_dot + 1);
  if (tld.find_first_not_of("0123456789") == std::string_view::npos)
    return Err{std::string("the domain ends in a number; address literals are not accepted")};

  Address a;
  a.local = std::move(local.text);
  a.domain = std::move(*normalized);
  a.smtputf8 = !is_ascii(a.local);
  if (a.local.size() + 1 + a.domain.size() > kMaxAddressLength)
    return Err{"the address is longer than " + std::to_string(kMaxAddressLength) + " octets"};
  return a;
}

std::string case_folded(const Address& a) {
  if (!a.smtputf8) return ascii_lowercase(a.local) + "@" + a.domain;
  size_t n = 0;
  uint8_t* lower = u8_tolower(reinterpret_cast<const uint8_t*>(a.local.data()), a.local.size(), nullptr, UNINORM_NFC,
                              nullptr, &n);
  // Allocation failure is the only way this can fail on valid UTF-8; the ASCII fold still holds.
  if (!lower) return ascii_lowercase(a.local) + "@" + a.domain;
  std::unique_ptr<uint8_t, decltype(&std::free)> owned(lower, &std::free);
  return std::string(reinterpret_cast<const char*>(lower), n) + "@" + a.domain;
}

}  // namespace deliverd::core
