#include "store/mailboxes.h"

#include <gtest/gtest.h>

#include "tests/unit/support/names_check.h"

namespace deliverd::store {
namespace {

Mailbox good() {
  Mailbox m;
  m.id = "mbx_7";
  m.account = "acct_42";
  m.email = "alice@acme.example";
  m.smtp_host = "smtp.acme.example";
  m.username = "alice";
  m.password = "s3cret";
  return m;
}

std::string error_of(const Mailbox& m) {
  auto r = validate_mailbox(m);
  return r.ok() ? "" : r.error();
}

TEST(ValidateMailbox, AcceptsATypicalMailbox) {
  EXPECT_EQ(error_of(good()), "");
  Mailbox direct = good();
  direct.mode = parse_mode("direct").value();  // the old spelling of "mx"
  direct.smtp_port = 25;
  direct.security = parse_security("none").value();
  direct.username.clear();
  direct.password.clear();
  EXPECT_EQ(error_of(direct), "");
  Mailbox v6 = good();
  v6.smtp_host = "2001:db8::25";
  EXPECT_EQ(error_of(v6), "");
}

TEST(ValidateMailbox, PortPolicyAllowsOnlySmtpPorts) {
  for (int port : {25, 465, 587, 2525}) {
    Mailbox m = good();
    m.smtp_port = port;
    EXPECT_EQ(error_of(m), "") << port;
  }
  for (int port : {0, 22, 80, 443, 6379, 5432, 65535, -1}) {
    Mailbox m = good();
    m.smtp_port = port;
    EXPECT_NE(error_of(m).find("smtp_port: " + std::to_string(port) + " is not allowed"), std::string::npos);
  }
}

TEST(ValidateMailbox, ErrorsNameTheField) {
  auto with = [](auto edit) {
    Mailbox m = good();
    edit(m);
    return error_of(m);
  };
  EXPECT_EQ(with([](Mailbox& m) { m.id = ""; }).rfind("id:", 0), 0u);
  EXPECT_EQ(with([](Mailbox& m) { m.id = "a b"; }).rfind("id:", 0), 0u);
  EXPECT_EQ(with([](Mailbox& m) { m.account = ""; }).rfind("account:", 0), 0u);
  // Security and mode are enums inside: their text is checked where it comes in.
  EXPECT_EQ(parse_security("ssl").error().rfind("security: 'ssl'", 0), 0u);
  EXPECT_EQ(parse_mode("bulk").error().rfind("mode:", 0), 0u);
  EXPECT_EQ(with([](Mailbox& m) { m.smtp_host = "bad host"; }).rfind("smtp_host:", 0), 0u);
  EXPECT_EQ(with([](Mailbox& m) { m.username = "a\r\nb"; }).rfind("username:", 0), 0u);
  EXPECT_EQ(with([](Mailbox& m) { m.username = ""; }).rfind("username: required", 0), 0u);
}

TEST(ValidateMailbox, EmailSyntax) {
  for (const char* bad : {"", "alice", "@acme.example", "alice@", "alice@localhost", "a b@acme.example",
                          "alice@acme..example", ".alice@acme.example", "alice@-acme.example",
                          "alice@acme.example\r\nBcc: x@y.z", "<alice@acme.example>"}) {
    Mailbox m = good();
    m.email = bad;
    EXPECT_EQ(error_of(m).rfind("email:", 0), 0u) << bad;
  }
  for (const char* ok : {"a@b.co", "first.last+tag@sub.acme.example", "x_y-z@acme-mail.example"}) {
    Mailbox m = good();
    m.email = ok;
    EXPECT_EQ(error_of(m), "") << ok;
  }
}

TEST(ValidateMailbox, PasswordErrorDoesNotEchoIt) {
  Mailbox m = good();
  m.password = "topsecret\nINJECT";
  std::string e = error_of(m);
  EXPECT_EQ(e.rfind("password:", 0), 0u);
  EXPECT_EQ(e.find("topsecret"), std::string::npos);
}

TEST(Bytea, HexRoundTrip) {
  std::string bytes("\x00\x01\xfe\xff" "abc", 7);
  EXPECT_EQ(encode_bytea(bytes), "\\x0001feff616263");
  EXPECT_EQ(decode_bytea(encode_bytea(bytes)), bytes);
  EXPECT_EQ(decode_bytea("\\x"), std::string());
  EXPECT_FALSE(decode_bytea("\\x0"));
  EXPECT_FALSE(decode_bytea("\\xzz"));
  EXPECT_FALSE(decode_bytea("0001"));
}

}  // namespace
}  // namespace deliverd::store

namespace deliverd::store {
namespace {

TEST(MailboxNames, ModesRoundTripAndDirectMeansMx) {
  testing::expect_names_round_trip(kModeNames, [](Mode m) { return to_string(m); }, mode_from_name);
  EXPECT_EQ(parse_mode("direct").value(), Mode::Mx);
  EXPECT_EQ(parse_security("tls").value(), core::Security::Tls);
}

TEST(MailboxRefs, NoTwoPairsSpellTheSameKey) {
  EXPECT_NE((MailboxRef{"a:b", "c"}.key()), (MailboxRef{"a", "b:c"}.key()));
  EXPECT_NE((MailboxRef{"12", "x"}.key()), (MailboxRef{"1", "2:x"}.key()));
  EXPECT_EQ((MailboxRef{"acct_1", "mbx_7"}.key()), "6:acct_1:mbx_7");
}

TEST(MailboxRefs, AKeyGivesItsPairBackAndNothingElseParses) {
  for (const MailboxRef& ref : {MailboxRef{"acct_1", "mbx_7"}, MailboxRef{"a:b", "c"}, MailboxRef{"", "x:y"}}) {
    auto back = MailboxRef::from_key(ref.key());
    ASSERT_TRUE(back) << ref.key();
    EXPECT_EQ(*back, ref);
  }
  for (const char* bad : {"", "6:acct_1", "6:acct_1mbx_7", ":a:b", "x:a:b", "99:a:b", "12345:a:b"})
    EXPECT_FALSE(MailboxRef::from_key(bad)) << bad;
}

TEST(MailboxRefs, ChangeNotificationsNameAccountAndId) {
  auto r = parse_mailbox_notification("5:mbx_7acct:with:colons");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->id, "mbx_7");
  EXPECT_EQ(r->account, "acct:with:colons");
  for (const char* bad : {"", "mbx_7", ":x", "9:short", "0:x", "x:abc", "1234567:x"})
    EXPECT_FALSE(parse_mailbox_notification(bad)) << bad;
}

TEST(MailboxSecrets, CredentialsWithoutTlsAreRefusedUnlessALabAllowsThem) {
  Mailbox m;
  m.security = core::Security::None;
  EXPECT_FALSE(plaintext_credentials_error(m, false)) << "no credentials: nothing to protect";
  m.password = "pw";
  auto e = plaintext_credentials_error(m, false);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->rfind("security: ", 0), 0u) << *e;
  EXPECT_FALSE(plaintext_credentials_error(m, true));
  m.password.clear();
  m.oauth_token = "tok";
  EXPECT_TRUE(plaintext_credentials_error(m, false));
  m.security = core::Security::StartTls;
  EXPECT_FALSE(plaintext_credentials_error(m, false));
}

TEST(MailboxSecrets, ASecretIsBoundToItsAccountIdAndKind) {
  SecretBox box = SecretBox::from_key(std::array<unsigned char, 32>{});
  std::string sealed = seal_mailbox_secret(box, "pw", "acct_a", "mbx_1", MailboxSecret::Password);
  EXPECT_EQ(*open_mailbox_secret(box, sealed, "acct_a", "mbx_1", MailboxSecret::Password), "pw");
  EXPECT_FALSE(open_mailbox_secret(box, sealed, "acct_b", "mbx_1", MailboxSecret::Password));
  EXPECT_FALSE(open_mailbox_secret(box, sealed, "acct_a", "mbx_2", MailboxSecret::Password));
  EXPECT_FALSE(open_mailbox_secret(box, sealed, "acct_a", "mbx_1", MailboxSecret::ImapPassword));
  // What was sealed before ids were per account (bound to the id alone) still opens.
  std::string legacy_shape = box.seal("old", "mbx_1/oauth");
  EXPECT_FALSE(open_mailbox_secret(box, legacy_shape, "acct_a", "mbx_1", MailboxSecret::OAuthToken))
      << "version 2 values always carry the account";
}

}  // namespace
}  // namespace deliverd::store
