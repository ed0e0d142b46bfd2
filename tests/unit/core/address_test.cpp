#include "core/address.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/domain.h"

namespace deliverd::core {
namespace {

struct Valid {
  std::string in, normalized;
  bool smtputf8;
};

TEST(Address, AcceptsRfc5321MailboxesAndNormalisesThem) {
  for (const auto& v : std::vector<Valid>{
           {"bob@example.org", "bob@example.org", false},
           {"Bob.Smith+news@Example.ORG", "Bob.Smith+news@example.org", false},  // local case kept
           {"a!#$%&'*+-/=?^_`{|}~z@x.example", "a!#$%&'*+-/=?^_`{|}~z@x.example", false},
           {"\"bob\"@example.org", "bob@example.org", false},  // needless quotes go
           {"\"john doe\"@example.org", "\"john doe\"@example.org", false},
           {"\"a\\\"b\"@example.org", "\"a\\\"b\"@example.org", false},
           {"\"a@b\"@example.org", "\"a@b\"@example.org", false},
           {"bob@b\xc3\xbc" "cher.example", "bob@xn--bcher-kva.example", false},
           {"bob@B\xc3\x9c" "CHER.example", "bob@xn--bcher-kva.example", false},  // UTS #46 lower-cases
           {"bob@xn--bcher-kva.example", "bob@xn--bcher-kva.example", false},
           {"bob@XN--BCHER-KVA.Example", "bob@xn--bcher-kva.example", false},
           {"j\xc3\xb6s\xc3\xa9@example.org", "j\xc3\xb6s\xc3\xa9@example.org", true},
           {"\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95", "\xe7\x94\xa8\xe6\x88\xb7@xn--fsqu00a.xn--0zwm56d", true},  // 用户@例子.测试
           {"bob@1.example", "bob@1.example", false},
           {"x@a-b.c-d.example", "x@a-b.c-d.example", false},
       }) {
    auto a = parse_address(v.in);
    ASSERT_TRUE(a.ok()) << v.in << ": " << a.error();
    EXPECT_EQ(a->str(), v.normalized) << v.in;
    EXPECT_EQ(a->smtputf8, v.smtputf8) << v.in;
  }
}

struct Invalid {
  std::string in, why;
};

TEST(Address, RefusesWhatIsNotAMailboxAndSaysWhy) {
  for (const auto& v : std::vector<Invalid>{
           {"", "the address is empty"},
           {"bob", "no '@'"},
           {"@example.org", "the local part is empty"},
           {"bob@", "the domain is empty"},
           {"bob@@example.org", "more than one '@'"},
           {"a@b@example.org", "more than one '@'"},
           {".bob@example.org", "starts or ends with a dot"},
           {"bob.@example.org", "starts or ends with a dot"},
           {"bo..b@example.org", "two dots in a row"},
           {"bo b@example.org", "the character ' ', which needs quotes"},
           {"bo<b@example.org", "the character '<'"},
           {"bob,eve@example.org", "the character ','"},
           {"bob\r\n@example.org", "control character"},
           {std::string("bo\0b@example.org", 16), "control character"},
           {"\"bob@example.org", "no closing quote"},
           {"\"bob\"x@example.org", "not followed by '@'"},
           {"\"bo\rb\"@example.org", "control character"},
           {"\"\"@example.org", "the local part is empty"},
           {"bob@[192.0.2.1]", "address literals"},
           {"bob@[IPv6:2001:db8::1]", "address literals"},
           {"bob@192.0.2.1", "ends in a number"},
           {"bob@localhost", "only one label"},
           {"bob@example..org", "empty label"},
           {"bob@.example.org", "empty label"},
           {"bob@example.org.", "ends with a dot"},
           {"bob@-x.example", "starts or ends with a hyphen"},
           {"bob@x_y.example", "other than letters, digits and hyphens"},
           {"bob@xn--ls8h.example", "the domain label 'xn--ls8h' is not valid IDNA2008"},
           {"bob@xn--a.example", "the domain label 'xn--a' is not valid IDNA2008"},
           {"bob@\xe2\x98\x83.example", "is not valid IDNA2008"},  // a snowman
           {"j\xc3@example.org", "not valid UTF-8"},
           {"j\xc2\x85@example.org", "not valid UTF-8"},  // a C1 control
           {"bob@b\xc3.example", "not valid UTF-8"},
           // Found by address_fuzz: a NUL inside an internationalised label once cut it short.
           {std::string("bob@b\x01\0\0\0\xc3\xbc" "cher.ex", 18), "other than letters, digits and hyphens"},
           {"bob@b_\xc3\xbc" "cher.example", "other than letters, digits and hyphens"},
           // Found by address_fuzz: a label of only a variation selector (U+FE06) mapped to an
           // empty label, and the address did not parse again from its own output.
           {"b@\xef\xb8\x86.b.\xef\xb8\x86.b.example", "maps to nothing under IDNA"},
       }) {
    auto a = parse_address(v.in);
    ASSERT_FALSE(a.ok()) << v.in << " was accepted as " << a->str();
    EXPECT_NE(a.error().find(v.why), std::string::npos) << v.in << ": " << a.error();
  }
}

TEST(Address, EnforcesTheLengthLimits) {
  const std::string l64(64, 'l'), l65(65, 'l');
  EXPECT_TRUE(parse_address(l64 + "@example.org").ok());
  EXPECT_NE(parse_address(l65 + "@example.org").error().find("longer than 64 octets"), std::string::npos);
  // 64 + 1 + 189 = 254 octets in all: the most a path can hold.
  std::string domain;
  while (domain.size() < 189 - 8) domain += std::string(9, 'd') + ".";
  domain = domain.substr(0, 189 - 8) + "example";
  domain = std::string(189 - domain.size(), 'e') + domain;
  ASSERT_EQ(domain.size(), 189u);
  EXPECT_TRUE(parse_address(l64 + "@" + domain).ok()) << parse_address(l64 + "@" + domain).error();
  EXPECT_NE(parse_address(l64 + "@e" + domain).error().find("longer than 254 octets"), std::string::npos);
  // A label of 64 octets, a domain of 254.
  EXPECT_NE(parse_address("bob@" + std::string(64, 'a') + ".example").error().find("longer than 63 octets"),
            std::string::npos);
  std::string long_domain;
  while (long_domain.size() < 250) long_domain += "abcdefghi.";
  long_domain += "example";
  EXPECT_NE(parse_address("b@" + long_domain).error().find("longer than"), std::string::npos);
  // UTF-8 counts in octets: 22 three-octet characters are 66 octets.
  std::string cjk;
  for (int i = 0; i < 22; ++i) cjk += "\xe7\x94\xa8";
  EXPECT_NE(parse_address(cjk + "@example.org").error().find("longer than 64 octets"), std::string::npos);
}

TEST(Address, IdnRoundTripsBetweenULabelsAndALabels) {
  auto u = parse_address("bob@b\xc3\xbc" "cher.example");
  auto a = parse_address("bob@xn--bcher-kva.example");
  ASSERT_TRUE(u.ok() && a.ok());
  EXPECT_EQ(u->str(), a->str());
  EXPECT_EQ(parse_address("x@fa\xc3\x9f.example")->domain, "xn--fa-hia.example");  // ß kept (non-transitional)
  EXPECT_EQ(parse_address(u->str())->str(), u->str());                              // normalising is idempotent
}

TEST(Address, CaseFoldedKeyIgnoresCaseAcrossTheWholeAddress) {
  auto key = [](std::string_view s) { return case_folded(parse_address(s).value()); };
  EXPECT_EQ(key("Bob@X.org"), "bob@x.org");
  EXPECT_EQ(key("BOB+News@Example.ORG"), key("bob+news@example.org"));
  EXPECT_EQ(key("J\xc3\x96S\xc3\x89@example.org"), "j\xc3\xb6s\xc3\xa9@example.org");
  EXPECT_EQ(key("jo\xcc\x88s\xc3\xa9@example.org"), "j\xc3\xb6s\xc3\xa9@example.org");  // NFD becomes NFC
  EXPECT_EQ(key("Stra\xc3\x9f" "e@example.org"), "stra\xc3\x9f" "e@example.org");      // ß stays ß
  EXPECT_NE(key("strasse@example.org"), key("stra\xc3\x9f" "e@example.org"));
  EXPECT_EQ(key("bob@B\xc3\x9c" "cher.example"), "bob@xn--bcher-kva.example");
}

TEST(Domain, SpecialUseNamesAreRefusedByRule) {
  for (const char* name : {"localhost", "mail.localhost", "x.y.localhost", "printer.local", "nothing.invalid",
                           "abc.onion", "nas.home.arpa", "db.internal", "intranet"})
    EXPECT_TRUE(special_use_rule(name).has_value()) << name;
  for (const char* name : {"mail.test", "mx.example", "example.org", "localhost.example", "local.example.org",
                           "x.notlocalhost.org", "home.arpa.example", "onion.example"})
    EXPECT_FALSE(special_use_rule(name).has_value()) << name;
  EXPECT_NE(special_use_rule("mail.localhost")->find("RFC 6761"), std::string_view::npos);
  EXPECT_NE(special_use_rule("intranet")->find("single-label"), std::string_view::npos);
}

TEST(Domain, NormalisesHostNames) {
  EXPECT_EQ(normalize_domain("SMTP.Example.COM").value(), "smtp.example.com");
  EXPECT_EQ(normalize_domain("m\xc3\xbcnchen.example").value(), "xn--mnchen-3ya.example");
  EXPECT_FALSE(normalize_domain("a\xe3\x80\x82" "b").ok());  // an ideographic full stop inside a label
  EXPECT_FALSE(normalize_domain("").ok());
}

}  // namespace
}  // namespace deliverd::core
