// Secrets at rest against a real PostgreSQL: rotated keys still open what they sealed, `deliverd
// rekey` reseals everything with the current key (and a second run changes nothing), and
// `deliverd mailbox add` keeps a stored secret with the server it was given for.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/hex.h"
#include "store/mailboxes.h"
#include "store/migrations.h"
#include "store/address_hash.h"
#include "store/rekey.h"
#include "tests/integration/fixtures/legacy_seal.h"
#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/process.h"

namespace deliverd::store {
namespace {

using deliverd::testing::PostgresServer;
using deliverd::testing::TempDir;

std::array<unsigned char, 32> key_of(unsigned char fill) {
  std::array<unsigned char, 32> k{};
  k.fill(fill);
  return k;
}

std::string hex_key(unsigned char fill) {
  auto k = key_of(fill);
  return core::to_hex(std::string_view(reinterpret_cast<const char*>(k.data()), k.size()));
}

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(migrate(pg_.conninfo()).ok());
    conn_ = PQconnectdb(pg_.conninfo().c_str());
    ASSERT_EQ(PQstatus(conn_), CONNECTION_OK);
  }
  void TearDown() override { PQfinish(conn_); }

  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    std::vector<std::vector<std::string>> out;
    EXPECT_TRUE(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)
        << PQresultErrorMessage(r) << sql;
    for (int i = 0; i < PQntuples(r); ++i) {
      out.emplace_back();
      for (int j = 0; j < PQnfields(r); ++j) out.back().emplace_back(PQgetisnull(r, i, j) ? "" : PQgetvalue(r, i, j));
    }
    PQclear(r);
    return out;
  }

  // Every stored secret opened with `box`, as "account/id/column=plaintext", or the error.
  std::vector<std::string> opened_with(const SecretBox& box) {
    std::vector<std::string> out;
    const std::pair<const char*, MailboxSecret> cols[] = {{"password_enc", MailboxSecret::Password},
                                                          {"oauth_token_enc", MailboxSecret::OAuthToken},
                                                          {"imap_password_enc", MailboxSecret::ImapPassword}};
    for (const auto& [col, which] : cols)
      for (const auto& row : rows(std::string("SELECT account, id, ") + col + " FROM mailboxes WHERE " + col +
                                  " IS NOT NULL ORDER BY account, id")) {
        auto plain = open_mailbox_secret(box, *decode_bytea(row[2]), row[0], row[1], which);
        out.push_back(row[0] + "/" + row[1] + "/" + col + "=" + (plain ? *plain : "ERROR " + plain.error()));
      }
    return out;
  }

  void insert_raw(const std::string& account, const std::string& id, const std::string& password_enc) {
    rows("INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port, security, username, password_enc) VALUES ('" +
         id + "', '" + account + "', 'x@acme.example', 'smtp.acme.example', 587, 'starttls', 'x', '" + password_enc +
         "'::bytea)");
  }

  PostgresServer pg_;
  PGconn* conn_ = nullptr;
};

Mailbox mailbox(const std::string& account, const std::string& id) {
  Mailbox m;
  m.account = account;
  m.id = id;
  m.email = "u@acme.example";
  m.smtp_host = "smtp.acme.example";
  m.username = "u";
  return m;
}

TEST_F(SecretsTest, RotatedKeysStillOpenOldSecretsAndRekeyResealsEverything) {
  SecretBox old_box = SecretBox::from_key(key_of(1));
  // Stored by the earlier release: format 1, bound to the id alone.
  insert_raw("acct_a", "mbx_legacy",
             encode_bytea(testing::seal_legacy_v1(key_of(1), "legacy-pw", "mbx_legacy")));
  Mailbox a = mailbox("acct_a", "mbx_1");
  a.password = "pw-a1";
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), a, old_box).ok());
  // The same id in another account, with every kind of secret.
  Mailbox b = mailbox("acct_b", "mbx_1");
  b.oauth_token = "token-b1";
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), b, old_box).ok());
  rows("UPDATE mailboxes SET imap_host = 'imap.acme.example', imap_port = 993, imap_username = 'u', imap_password_enc = '" +
       encode_bytea(seal_mailbox_secret(old_box, "imap-b1", "acct_b", "mbx_1", MailboxSecret::ImapPassword)) +
       "'::bytea WHERE account = 'acct_b'");
  const std::vector<std::string> plain = {"acct_a/mbx_1/password_enc=pw-a1", "acct_a/mbx_legacy/password_enc=legacy-pw",
                                          "acct_b/mbx_1/oauth_token_enc=token-b1",
                                          "acct_b/mbx_1/imap_password_enc=imap-b1"};
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };

  // The new key seals; the old one, listed read-only, still opens everything.
  SecretBox rotated = SecretBox::from_key(key_of(2), {key_of(1)});
  EXPECT_EQ(sorted(opened_with(rotated)), sorted(plain));
  // Before rekey the new key alone cannot.
  for (const auto& s : opened_with(SecretBox::from_key(key_of(2)))) EXPECT_NE(s.find("ERROR"), std::string::npos) << s;

  size_t batches = 0;
  auto report = rekey_secrets(pg_.conninfo(), rotated, 2, [&](const RekeyReport&) { ++batches; });
  ASSERT_TRUE(report) << report.error();
  EXPECT_EQ(report->mailboxes, 3);
  EXPECT_EQ(report->resealed, 4);
  EXPECT_EQ(report->already_current, 0);
  EXPECT_TRUE(report->failures.empty());
  EXPECT_EQ(batches, 2u) << "3 mailboxes in batches of 2";
  // Everything opens with the new key alone, in the current format.
  EXPECT_EQ(sorted(opened_with(SecretBox::from_key(key_of(2)))), sorted(plain));
  for (const auto& row : rows("SELECT get_byte(password_enc, 0) FROM mailboxes WHERE password_enc IS NOT NULL"))
    EXPECT_EQ(row[0], "2");

  // Idempotent: a second run finds nothing to do.
  auto again = rekey_secrets(pg_.conninfo(), rotated);
  ASSERT_TRUE(again) << again.error();
  EXPECT_EQ(again->resealed, 0);
  EXPECT_EQ(again->already_current, 4);

  // A value no configured key opens is reported by name; the others are still done.
  insert_raw("acct_c", "mbx_bad", encode_bytea(SecretBox::from_key(key_of(9)).seal("lost")));
  auto partial = rekey_secrets(pg_.conninfo(), SecretBox::from_key(key_of(3), {key_of(2)}));
  ASSERT_TRUE(partial) << partial.error();
  EXPECT_EQ(partial->resealed, 4);
  ASSERT_EQ(partial->failures.size(), 1u);
  EXPECT_NE(partial->failures[0].find("acct_c/mbx_bad password"), std::string::npos) << partial->failures[0];
}

class SecretsCli : public SecretsTest {
 protected:
  void SetUp() override {
    SecretsTest::SetUp();
    const char* bin = std::getenv("DELIVERD_BINARY");
    ASSERT_NE(bin, nullptr) << "DELIVERD_BINARY not set";
    binary_ = bin;
    std::string out;
    ASSERT_EQ(testing::run_command({"openssl", "genpkey", "-algorithm", "ED25519", "-out", dir_.file("dkim.pem")}, &out),
              0)
        << out;
    testing::write_secret_file(dir_.file("k1"), hex_key(1) + "\n");
    testing::write_secret_file(dir_.file("k2"), hex_key(2) + "\n");
    write_config("k1", {});
  }

  void write_config(const std::string& key, const std::vector<std::string>& old) {
    std::string olds;
    for (const auto& o : old) olds += (olds.empty() ? "\"" : ", \"") + dir_.file(o) + "\"";
    testing::write_file(dir_.file("deliverd.toml"),
                        "[redis]\nurl = \"redis://127.0.0.1:1\"\n[postgres]\nconninfo = \"" + pg_.conninfo() +
                            "\"\n[security]\nsecret_key_file = \"" + dir_.file(key) + "\"\nold_secret_key_files = [" +
                            olds + "]\n[[dkim]]\ndomain = \"victim.example\"\nselector = \"s\"\nkey_file = \"" +
                            dir_.file("dkim.pem") + "\"\nalgorithm = \"ed25519-sha256\"\naccounts = [\"acct_victim\"]\n");
  }

  int cli(std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), binary_);
    args.insert(args.end(), {"--config", dir_.file("deliverd.toml")});
    return testing::run_command(args, out);
  }

  std::vector<std::string> add(const std::string& host, const std::string& email = "a@sender.example") {
    return {"mailbox", "add", "--id", "mbx_1", "--account", "acct_1", "--email", email, "--smtp-host", host,
            "--smtp-port", "587", "--username", "a"};
  }

  TempDir dir_{"deliverd-secrets-cli"};
  std::string binary_;
};

TEST_F(SecretsCli, MailboxAddKeepsAStoredSecretWithItsServer) {
  std::string out;
  testing::write_file(dir_.file("pw"), "first-pw\n");
  auto with_password = add("smtp.sender.example");
  with_password.insert(with_password.end(), {"--password-file", dir_.file("pw")});
  ASSERT_EQ(cli(with_password, &out), 0) << out;
  // Same server, no secret given: the stored one stays.
  ASSERT_EQ(cli(add("smtp.sender.example"), &out), 0) << out;
  EXPECT_EQ(opened_with(SecretBox::from_key(key_of(1))),
            std::vector<std::string>{"acct_1/mbx_1/password_enc=first-pw"});
  // Another server without the secret again: refused, nothing changes.
  EXPECT_EQ(cli(add("smtp.elsewhere.example"), &out), 2);
  EXPECT_NE(out.find("--password-file"), std::string::npos) << out;
  EXPECT_EQ(rows("SELECT smtp_host FROM mailboxes")[0][0], "smtp.sender.example");
  // Credentials without TLS: refused, naming security.
  auto plaintext = with_password;
  plaintext.insert(plaintext.end(), {"--security", "none"});
  EXPECT_EQ(cli(plaintext, &out), 2);
  EXPECT_NE(out.find("security"), std::string::npos) << out;
  // Another account's signing domain: refused, naming --email.
  EXPECT_EQ(cli(add("smtp.sender.example", "ceo@mail.victim.example"), &out), 2);
  EXPECT_NE(out.find("--email: victim.example"), std::string::npos) << out;
  EXPECT_EQ(rows("SELECT email FROM mailboxes")[0][0], "a@sender.example");
}

TEST_F(SecretsCli, RekeyCommandResealsWithTheNewKeyAndKeyFilesMustBePrivate) {
  std::string out;
  testing::write_file(dir_.file("pw"), "cli-pw\n");
  auto m = add("smtp.sender.example");
  m.insert(m.end(), {"--password-file", dir_.file("pw")});
  ASSERT_EQ(cli(m, &out), 0) << out;
  write_config("k2", {"k1"});
  ASSERT_EQ(cli({"rekey", "--batch", "10"}, &out), 0) << out;
  EXPECT_NE(out.find("1 secrets resealed with key " + core::key_id_hex(core::key_id(key_of(2)))), std::string::npos)
      << out;
  ASSERT_EQ(cli({"rekey"}, &out), 0) << out;
  EXPECT_NE(out.find("0 secrets resealed"), std::string::npos) << out;
  EXPECT_NE(out.find("1 already were"), std::string::npos) << out;
  write_config("k2", {});
  EXPECT_EQ(opened_with(SecretBox::from_key(key_of(2))), std::vector<std::string>{"acct_1/mbx_1/password_enc=cli-pw"});
  // A key file others may read is refused by every command, naming file and mode.
  ::chmod(dir_.file("k2").c_str(), 0644);
  EXPECT_EQ(cli({"check-config"}, &out), 2);
  EXPECT_NE(out.find(dir_.file("k2") + " is readable by group or others (mode 0644)"), std::string::npos) << out;
}

// An OAuth grant from the command line: the refresh token from a file, sealed; check-config names
// a provider that a mailbox uses but the config lacks; rekey reseals the refresh token too.
TEST_F(SecretsCli, AnOAuthGrantFromTheCommandLineIsSealedCheckedAndResealed) {
  std::string out;
  testing::write_secret_file(dir_.file("refresh"), "1//cli-refresh-token\n");
  auto args = add("smtp.gmail.example", "alice@sender.example");
  args.insert(args.end(), {"--oauth-provider", "google", "--oauth-user", "alice@sender.example",
                           "--refresh-token-file", dir_.file("refresh")});
  ASSERT_EQ(cli(args, &out), 0) << out;
  auto row = rows("SELECT oauth_provider, username, oauth_refresh_enc, password_enc FROM mailboxes");
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0][0], "google");
  EXPECT_EQ(row[0][1], "alice@sender.example");
  EXPECT_EQ(row[0][3], "") << "no password alongside the grant";
  auto opened = open_mailbox_secret(SecretBox::from_key(key_of(1)), *decode_bytea(row[0][2]), "acct_1", "mbx_1",
                                    MailboxSecret::OAuthRefresh);
  ASSERT_TRUE(opened) << opened.error();
  EXPECT_EQ(*opened, "1//cli-refresh-token");
  EXPECT_EQ(row[0][2].find(store::encode_bytea("cli-refresh").substr(2)), std::string::npos);

  // The config has no [[oauth]] google: named, and the command fails.
  EXPECT_EQ(cli({"check-config"}, &out), 2);
  EXPECT_NE(out.find("[[oauth]]: no provider \"google\", which 1 mailbox(es) use"), std::string::npos) << out;
  testing::write_secret_file(dir_.file("google-secret"), "client-secret\n");
  std::string conf;
  ASSERT_EQ(testing::run_command({"cat", dir_.file("deliverd.toml")}, &conf), 0);
  testing::write_file(dir_.file("deliverd.toml"),
                      conf + "[[oauth]]\nname = \"google\"\ntoken_url = \"https://oauth2.googleapis.com/token\"\n"
                             "client_id = \"id\"\nclient_secret_file = \"" + dir_.file("google-secret") + "\"\n");
  EXPECT_EQ(cli({"check-config"}, &out), 0) << out;

  // Half a grant is refused, naming what is missing.
  auto half = add("smtp.gmail.example");
  half.insert(half.end(), {"--oauth-provider", "google"});
  EXPECT_EQ(cli(half, &out), 2);
  EXPECT_NE(out.find("--oauth-provider and --refresh-token-file go together"), std::string::npos) << out;

  // Key rotation reseals the refresh token with the new key.
  write_config("k2", {"k1"});
  ASSERT_EQ(cli({"rekey"}, &out), 0) << out;
  auto resealed = rows("SELECT oauth_refresh_enc FROM mailboxes");
  auto with_new = open_mailbox_secret(SecretBox::from_key(key_of(2)), *decode_bytea(resealed[0][0]), "acct_1",
                                      "mbx_1", MailboxSecret::OAuthRefresh);
  ASSERT_TRUE(with_new) << with_new.error();
  EXPECT_EQ(*with_new, "1//cli-refresh-token");
}

// The suppress commands hash as the daemon does (keyed by the secret key); after a rotation the
// old row still counts, and rekey moves it to the new key.
TEST_F(SecretsCli, SuppressCommandsWriteKeyedRowsThatRekeyMovesToTheNewKey) {
  std::string out;
  ASSERT_EQ(cli({"suppress", "add", "--account", "acct_1", "Mia@Example.org"}, &out), 0) << out;
  auto hash = [&] { return rows("SELECT encode(address_sha256, 'hex') FROM suppressions")[0][0]; };
  const std::string under_k1 = hash();
  EXPECT_EQ(under_k1, core::to_hex(AddressHasher::from(SecretBox::from_key(key_of(1))).key("mia@example.org")));
  EXPECT_EQ(rows("SELECT address_sha256 = sha256('mia@example.org') FROM suppressions")[0][0], "f");
  write_config("k2", {"k1"});
  ASSERT_EQ(cli({"suppress", "list", "--account", "acct_1", "mia@example.org"}, &out), 0) << out;
  EXPECT_NE(out.find("Mia@example.org"), std::string::npos) << "found through the old key: " << out;
  ASSERT_EQ(cli({"rekey", "--batch", "10"}, &out), 0) << out;
  EXPECT_NE(out.find("1 suppressions rehashed"), std::string::npos) << out;
  EXPECT_EQ(hash(), core::to_hex(AddressHasher::from(SecretBox::from_key(key_of(2))).key("mia@example.org")));
  write_config("k2", {});
  ASSERT_EQ(cli({"suppress", "remove", "--account", "acct_1", "MIA@example.org"}, &out), 0) << out;
  EXPECT_EQ(rows("SELECT count(*) FROM suppressions")[0][0], "0");
}

}  // namespace
}  // namespace deliverd::store
