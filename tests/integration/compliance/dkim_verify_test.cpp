// Composed and signed messages checked by independent implementations: python3-dkim verifies the
// signature (RSA and Ed25519 keys made by `openssl genpkey` for each run) and Python's email
// package parses the message without defects.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <string>
#include <vector>

#include "smtp/composer.h"
#include "smtp/dkim.h"
#include "tests/integration/fixtures/process.h"

namespace deliverd::testing {
namespace {

constexpr std::time_t kNow = 1700000000;

struct Key {
  std::string kind, pem_path, der_path;
};

class DkimVerify : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("deliverd-dkim");
    rsa_ = make_key("rsa", {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"});
    ed_ = make_key("ed25519", {"-algorithm", "ED25519"});
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static Key make_key(const std::string& kind, std::vector<std::string> args) {
    Key k{kind, dir_->file(kind + ".pem"), dir_->file(kind + ".der")};
    std::vector<std::string> gen = {"openssl", "genpkey"};
    gen.insert(gen.end(), args.begin(), args.end());
    gen.insert(gen.end(), {"-out", k.pem_path});
    std::string out;
    EXPECT_EQ(run_command(gen, &out), 0) << out;
    EXPECT_EQ(run_command({"openssl", "pkey", "-in", k.pem_path, "-pubout", "-outform", "DER", "-out", k.der_path}, &out), 0)
        << out;
    return k;
  }

  struct Verdict {
    bool dkim = false;
    std::vector<std::string> defects;
    std::string subject, from, to, list_unsubscribe, text, html, raw_json;
  };

  // Composes, signs with `key`, and has Python verify and parse the result.
  Verdict check(const smtp::MessageSpec& spec, const Key& key) {
    auto msg = smtp::compose(spec, kNow);
    EXPECT_TRUE(msg.ok()) << msg.error();
    if (!msg.ok()) return {};
    smtp::DkimAlgorithm alg = key.kind == "rsa" ? smtp::DkimAlgorithm::RsaSha256 : smtp::DkimAlgorithm::Ed25519Sha256;
    auto signer = smtp::DkimSigner::from_key_file("acme.example", "sel1", alg, key.pem_path);
    EXPECT_TRUE(signer.ok()) << signer.error();
    if (!signer.ok()) return {};
    auto signed_msg = signer->sign(*msg, kNow);
    EXPECT_TRUE(signed_msg.ok()) << signed_msg.error();
    if (!signed_msg.ok()) return {};
    EXPECT_TRUE(smtp::validate_message(*signed_msg).ok()) << smtp::validate_message(*signed_msg).error();
    std::string file = dir_->file("msg-" + std::to_string(++counter_) + ".eml");
    write_file(file, *signed_msg);
    std::string script = std::string(getenv("DELIVERD_SOURCE_DIR") ? getenv("DELIVERD_SOURCE_DIR") : ".") +
                         "/tests/integration/compliance/verify_message.py";
    std::string out;
    int rc = run_command({"/usr/bin/python3", script, file, key.kind, key.der_path, "acme.example", "sel1"}, &out);
    EXPECT_EQ(rc, 0) << out;
    Verdict v;
    v.raw_json = out;
    simdjson::dom::parser parser;
    simdjson::dom::element e;
    if (parser.parse(out).get(e)) {
      ADD_FAILURE() << "not JSON: " << out;
      return v;
    }
    v.dkim = e["dkim"].get_bool().value();
    for (auto d : e["defects"].get_array()) v.defects.emplace_back(d.get_string().value());
    v.subject = std::string(e["subject"].get_string().value());
    v.from = std::string(e["from"].get_string().value());
    v.to = std::string(e["to"].get_string().value());
    v.list_unsubscribe = std::string(e["list_unsubscribe"].get_string().value());
    v.text = std::string(e["text"].get_string().value());
    v.html = std::string(e["html"].get_string().value());
    return v;
  }

  static smtp::MessageSpec base() {
    smtp::MessageSpec m;
    m.from_email = "alice@acme.example";
    m.from_name = "Alice from Acme";
    m.to_email = "bob@example.org";
    m.to_name = "Bob";
    m.subject = "Quick question";
    m.text = "Hello Bob,\nhow are you?\n";
    return m;
  }

  static smtp::MessageSpec hard() {
    smtp::MessageSpec m = base();
    m.from_name = "Zo\xc3\xab M\xc3\xbcller-\xc5\x81\xc3\xb3" "d\xc5\xba";                         // Zoë Müller-Łódź
    m.to_name = "\xe5\xb1\xb1\xe7\x94\xb0 \xe5\xa4\xaa\xe9\x83\x8e, \"Bob\"";                  // 山田 太郎, "Bob"
    m.subject.clear();
    for (int i = 0; i < 12; ++i) m.subject += "R\xc3\xa9sum\xc3\xa9 \xe2\x82\xac" + std::to_string(i) + " ";
    m.text = "Gr\xc3\xbc\xc3\x9f" "e!\n" + std::string(1500, 'x') + "\n.leading dot\n\ttabbed  line  \n";
    m.html = "<html><body><p>" + std::string(1200, 'y') + "</p><p>\xe6\x97\xa5\xe6\x9c\xac</p></body></html>";
    std::string long_value;
    for (int i = 0; i < 60; ++i) long_value += "segment-" + std::to_string(i) + " ";
    m.headers = {{"X-Campaign-Id", "cmp_1"}, {"X-Long", long_value}, {"X-Unicode", "\xc3\xa9t\xc3\xa9"}};
    m.reply_to = "replies@acme.example";
    m.campaign = "cmp_1";
    m.unsubscribe_url = "https://u.acme.example/u/abc.def";
    m.unsubscribe_mailto = "unsub@acme.example";
    m.postal_address = "Acme Inc., 1 Main St, Springfield, \xc3\x89tat 12345";
    return m;
  }

  static TempDir* dir_;
  static Key rsa_, ed_;
  int counter_ = 0;
};

TempDir* DkimVerify::dir_ = nullptr;
Key DkimVerify::rsa_, DkimVerify::ed_;

TEST_F(DkimVerify, PlainMessageVerifiesWithRsaAndEd25519) {
  for (const Key* k : {&rsa_, &ed_}) {
    auto v = check(base(), *k);
    EXPECT_TRUE(v.dkim) << k->kind << " " << v.raw_json;
    EXPECT_TRUE(v.defects.empty()) << v.raw_json;
    EXPECT_EQ(v.subject, "Quick question");
  }
}

TEST_F(DkimVerify, NonAsciiNamesLongLinesAndCampaignFooterVerifyAndParseCleanly) {
  for (const Key* k : {&rsa_, &ed_}) {
    auto m = hard();
    auto v = check(m, *k);
    EXPECT_TRUE(v.dkim) << k->kind << " " << v.raw_json;
    EXPECT_TRUE(v.defects.empty()) << v.raw_json;
    EXPECT_TRUE(v.subject == m.subject) << "encoded words must decode to the subject: " << v.subject;
    EXPECT_NE(v.from.find("Zo\xc3\xab M\xc3\xbcller"), std::string::npos) << v.from;
    EXPECT_NE(v.to.find("\xe5\xb1\xb1\xe7\x94\xb0"), std::string::npos) << v.to;
    EXPECT_EQ(v.list_unsubscribe, "<mailto:unsub@acme.example?subject=unsubscribe>, <https://u.acme.example/u/abc.def>");
    EXPECT_NE(v.text.find(std::string(1500, 'x')), std::string::npos) << "long line must survive encoding";
    EXPECT_NE(v.text.find("Unsubscribe: https://u.acme.example/u/abc.def"), std::string::npos);
    EXPECT_NE(v.text.find("\xc3\x89tat 12345"), std::string::npos);
    EXPECT_NE(v.html.find("href=\"https://u.acme.example/u/abc.def\""), std::string::npos);
    EXPECT_NE(v.html.find("\xe6\x97\xa5\xe6\x9c\xac"), std::string::npos);
  }
}

TEST_F(DkimVerify, Base64BodyAndRawPassThroughVerify) {
  auto m = base();
  m.text.clear();
  for (int i = 0; i < 200; ++i) m.text += "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 ";  // Привет
  auto v = check(m, ed_);
  EXPECT_TRUE(v.dkim) << v.raw_json;
  EXPECT_TRUE(v.defects.empty()) << v.raw_json;
  EXPECT_TRUE(v.text == m.text + "\r\n") << "base64 body must decode to the text";

  auto raw = base();
  raw.raw = "From: Alice <alice@acme.example>\nTo: bob@example.org\nSubject: from the producer\n"
            "Content-Type: text/plain; charset=us-ascii\n\nA raw body.\n";
  raw.campaign = "cmp_9";
  raw.unsubscribe_url = "https://u.acme.example/u/raw";
  auto r = check(raw, rsa_);
  EXPECT_TRUE(r.dkim) << r.raw_json;
  EXPECT_TRUE(r.defects.empty()) << r.raw_json;
  EXPECT_EQ(r.subject, "from the producer");
  EXPECT_EQ(r.list_unsubscribe, "<https://u.acme.example/u/raw>");
}

TEST_F(DkimVerify, TamperedMessageFailsVerification) {
  auto msg = smtp::compose(base(), kNow);
  ASSERT_TRUE(msg.ok());
  auto signer = smtp::DkimSigner::from_key_file("acme.example", "sel1", smtp::DkimAlgorithm::Ed25519Sha256, ed_.pem_path);
  ASSERT_TRUE(signer.ok());
  std::string signed_msg = *signer->sign(*msg, kNow);
  size_t at = signed_msg.find("how are you?");
  ASSERT_NE(at, std::string::npos);
  signed_msg.replace(at, 3, "who");
  std::string file = dir_->file("tampered.eml");
  write_file(file, signed_msg);
  std::string out;
  run_command({"/usr/bin/python3",
               std::string(getenv("DELIVERD_SOURCE_DIR") ? getenv("DELIVERD_SOURCE_DIR") : ".") +
                   "/tests/integration/compliance/verify_message.py",
               file, "ed25519", ed_.der_path, "acme.example", "sel1"},
              &out);
  EXPECT_NE(out.find("\"dkim\": false"), std::string::npos) << out;
}

}  // namespace
}  // namespace deliverd::testing
