#include "smtp/dkim.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>
#include <string>

namespace deliverd::smtp {
namespace {

std::string pem_of(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(key);
  return out;
}

std::string rsa_pem(size_t bits = 2048) { return pem_of(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits)); }
std::string ed25519_pem() { return pem_of(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")); }

const std::string kMessage =
    "From: Alice <alice@acme.example>\r\nTo: bob@example.org\r\nSubject: hello\r\n"
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <1@acme.example>\r\nX-Other: not signed\r\n"
    "\r\nHi Bob\r\n";

std::string tag(const std::string& sig, const std::string& name) {
  std::string unfolded;
  for (char c : sig)
    if (c != '\r' && c != '\n' && c != '\t' && c != ' ') unfolded += c;
  size_t at = unfolded.find(";" + name + "=");
  if (at == std::string::npos) at = unfolded.find(":" + name + "=");
  if (at == std::string::npos) return "";
  size_t start = at + name.size() + 2;
  return unfolded.substr(start, unfolded.find(';', start) - start);
}

TEST(DkimCanonicalization, RelaxedHeaderMatchesRfc6376Example) {
  EXPECT_EQ(dkim_relaxed_header("A", " X"), "a:X\r\n");
  EXPECT_EQ(dkim_relaxed_header("B ", " Y\t\r\n\tZ  "), "b:Y Z\r\n");
}

TEST(DkimCanonicalization, RelaxedBodyMatchesRfc6376Example) {
  EXPECT_EQ(dkim_relaxed_body(" C \r\nD \t E\r\n\r\n\r\n"), " C\r\nD E\r\n");
  EXPECT_EQ(dkim_relaxed_body(""), "");
  EXPECT_EQ(dkim_relaxed_body("\r\n\r\n"), "");
  EXPECT_EQ(dkim_relaxed_body("x"), "x\r\n");
}

TEST(DkimSigner, RsaSignatureHasTheExpectedTags) {
  auto s = DkimSigner::from_pem("Acme.Example", "s1", DkimAlgorithm::RsaSha256, rsa_pem());
  ASSERT_TRUE(s.ok()) << s.error();
  auto sig = s->signature(kMessage, 1700000000);
  ASSERT_TRUE(sig.ok()) << sig.error();
  EXPECT_EQ(sig->rfind("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=acme.example; s=s1;", 0), 0u) << *sig;
  EXPECT_EQ(tag(*sig, "h"), "from:to:subject:date:message-id");
  EXPECT_EQ(tag(*sig, "t"), "1700000000");
  EXPECT_EQ(tag(*sig, "b").size(), 344u);  // 256 bytes of RSA-2048 signature in base64
  for (size_t i = 0, e; i < sig->size(); i = e + 2) {
    e = sig->find("\r\n", i);
    ASSERT_NE(e, std::string::npos);
    EXPECT_LE(e - i, 78u);
  }
  auto signed_msg = s->sign(kMessage, 1700000000);
  ASSERT_TRUE(signed_msg.ok());
  EXPECT_EQ(signed_msg->substr(sig->size()), kMessage);
}

TEST(DkimSigner, Ed25519SignaturesAreDeterministicAndCoverTheBody) {
  auto s = DkimSigner::from_pem("acme.example", "ed", DkimAlgorithm::Ed25519Sha256, ed25519_pem());
  ASSERT_TRUE(s.ok()) << s.error();
  auto a = s->signature(kMessage, 1700000000), b = s->signature(kMessage, 1700000000);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(tag(*a, "a"), "ed25519-sha256");
  EXPECT_EQ(tag(*a, "b").size(), 88u);  // 64-byte signature
  auto changed = s->signature(kMessage + "more\r\n", 1700000000);
  EXPECT_NE(tag(*a, "bh"), tag(*changed, "bh"));
  // Relaxed canonicalization: trailing blank lines and whitespace runs do not change the hash.
  auto same = s->signature(kMessage + "\r\n\r\n", 1700000000);
  EXPECT_EQ(tag(*a, "bh"), tag(*same, "bh"));
  EXPECT_EQ(tag(*a, "b"), tag(*same, "b"));
}

TEST(DkimSigner, KeyMustMatchTheAlgorithm) {
  EXPECT_FALSE(DkimSigner::from_pem("acme.example", "s", DkimAlgorithm::Ed25519Sha256, rsa_pem()).ok());
  EXPECT_FALSE(DkimSigner::from_pem("acme.example", "s", DkimAlgorithm::RsaSha256, ed25519_pem()).ok());
  auto small = DkimSigner::from_pem("acme.example", "s", DkimAlgorithm::RsaSha256, rsa_pem(512));
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.error().find("1024"), std::string::npos);
  EXPECT_FALSE(DkimSigner::from_pem("acme.example", "s", DkimAlgorithm::RsaSha256, "garbage").ok());
  EXPECT_FALSE(DkimSigner::from_pem("bad domain", "s", DkimAlgorithm::RsaSha256, rsa_pem()).ok());
  EXPECT_FALSE(DkimSigner::from_pem("acme.example", "s;x=1", DkimAlgorithm::RsaSha256, rsa_pem()).ok());
  auto missing = DkimSigner::from_key_file("acme.example", "s", DkimAlgorithm::RsaSha256, "/nonexistent/key.pem");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("/nonexistent/key.pem"), std::string::npos);
}

TEST(DkimSigner, MessageWithoutFromIsRefused) {
  auto s = DkimSigner::from_pem("acme.example", "ed", DkimAlgorithm::Ed25519Sha256, ed25519_pem());
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->signature("To: b@example.org\r\n\r\nx\r\n", 1).ok());
}

TEST(DkimAlgorithmNames, ParseAndPrint) {
  DkimAlgorithm a{};
  EXPECT_TRUE(parse_dkim_algorithm("ed25519-sha256", a));
  EXPECT_EQ(to_string(a), "ed25519-sha256");
  EXPECT_TRUE(parse_dkim_algorithm("rsa-sha256", a));
  EXPECT_EQ(to_string(a), "rsa-sha256");
  EXPECT_FALSE(parse_dkim_algorithm("rsa-sha1", a));
}

}  // namespace
}  // namespace deliverd::smtp
