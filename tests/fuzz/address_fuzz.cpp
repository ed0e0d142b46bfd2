// Fuzz target: the address parser (core/address.h), which every job, API request and CLI call
// goes through. A hostile address is refused with a message or yields an address that is within
// the limits, holds nothing that could end or extend an SMTP command or a header, parses again
// to itself, and has a case-folded key that folding leaves alone.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/address.h"
#include "core/domain.h"
#include "core/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace deliverd::core;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto a = parse_address(in);
  if (!a) {
    if (a.error().empty()) std::abort();
    (void)special_use_rule(in);
    return 0;
  }
  const std::string s = a->str();
  if (s.size() > kMaxAddressLength || a->local.empty() || a->local.size() > kMaxLocalPartLength) std::abort();
  if (!is_valid_utf8(s) || a->smtputf8 == is_ascii(a->local) || !is_ascii(a->domain)) std::abort();
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) std::abort();
  auto again = parse_address(s);
  if (!again || again->str() != s || again->smtputf8 != a->smtputf8) std::abort();
  // Lower-casing may lengthen a UTF-8 local part (U+0130 becomes two code points), so the key
  // need not be a valid address itself; folding it again must change nothing.
  const std::string key = case_folded(*a);
  Address folded = *a;
  folded.local = key.substr(0, key.rfind('@'));
  folded.smtputf8 = !is_ascii(folded.local);
  if (key.substr(key.rfind('@') + 1) != a->domain || case_folded(folded) != key) std::abort();
  if (normalize_domain(a->domain).value() != a->domain) std::abort();
  return 0;
}
