#pragma once
// E-mail addresses: the one place that says what deliverd accepts as an address, how it is
// spelled inside, and how two spellings of one mailbox are recognised as the same.
//
// Accepted: an RFC 5321 Mailbox, "local-part@domain", where the local part is a dot-string
// (atoms of RFC 5322 atext joined by single dots) or a quoted string, and may hold UTF-8
// (RFC 6531: such an address needs SMTPUTF8 end to end). Limits in octets: local part 64, domain
// 255 as given and 253 as A-labels, whole address 254. The domain has at least two labels, and
// its last is not all digits.
//
// Refused on purpose: address literals ("bob@[192.0.2.1]", "bob@[IPv6:…]"). An outbound
// platform has no use for them, and they would skip MX routing and the name rules that keep
// delivery away from internal hosts; every target comes from a name.
//
// Normalised: the domain becomes lower-case A-labels (core/domain.h), so "bob@Bücher.example" is
// sent as "bob@xn--bcher-kva.example" and needs no SMTPUTF8. The local part is kept as given
// (RFC 5321 2.4: only the receiving host knows what its case means), except that quotes are
// dropped where the content is a dot-string anyway ("\"bob\"@x" is "bob@x", RFC 5321 4.1.2).
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::core {

inline constexpr size_t kMaxLocalPartLength = 64;
inline constexpr size_t kMaxAddressLength = 254;

struct Address {
  std::string local;   // as given, needless quotes dropped
  std::string domain;  // lower-case A-labels
  bool smtputf8 = false;  // the local part has UTF-8: RFC 6531 transactions and RFC 6532 headers only

  std::string str() const { return local + "@" + domain; }
};

// The error says what is wrong without the field name, for the caller to prefix:
// "to.email: " + "the local part is longer than 64 octets".
Result<Address, std::string> parse_address(std::string_view text);

// The form two spellings of one mailbox share, for suppression and erasure: the address with its
// local part lower-cased as well. Most mailbox providers ignore case in local parts, and one
// recipient who asked not to be mailed must not be mailed again as "Bob" after "bob". ASCII
// letters fold as ASCII; a UTF-8 local part is brought to NFC and lower-cased with Unicode's
// default case mapping (libunistring), so "JÖSÉ", "jösé" and "jo\u0308sé" are one key. Lower-case
// mapping rather than full case folding: "ß" stays "ß" (folding would merge it with "ss", which
// servers treat as another mailbox). Over-matching errs on the safe side for a suppression list.
std::string case_folded(const Address& a);

}  // namespace deliverd::core
