// Address hashes are keyed: what a suppression or a scrubbed event keeps cannot be reversed with
// a dictionary of plain SHA-256 hashes, yet every earlier form still matches.
#include "store/address_hash.h"

#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <set>

#include "core/hex.h"
#include "store/secret_box.h"
#include "tests/integration/fixtures/address_hashes.h"

namespace deliverd::store {
namespace {

using deliverd::testing::hash_key;
using deliverd::testing::plain_sha256;
using deliverd::testing::test_hasher;

std::string hmac(const core::Key256& key, std::string_view data) {
  unsigned char out[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

TEST(AddressHasher, KeyIsTheHmacOfTheCaseFoldedAddressNotItsSha256) {
  const AddressHasher h = test_hasher();
  const std::string k = h.key("Bob@X.org");
  ASSERT_EQ(k.size(), 32u);
  EXPECT_EQ(k, hmac(hash_key(1), "bob@x.org"));
  EXPECT_NE(k, plain_sha256("bob@x.org")) << "a dictionary of plain hashes must not find it";
  EXPECT_EQ(h.key(" BOB@x.ORG\t"), k);
  EXPECT_EQ(h.key("bob@b\xc3\xbc" "cher.example"), h.key("bob@xn--bcher-kva.example"));
  EXPECT_NE(test_hasher(2).key("bob@x.org"), k) << "another secret key, another hash";
  EXPECT_EQ(h.key("not an address"), "");
  EXPECT_TRUE(h.candidates("not an address").empty());
}

TEST(AddressHasher, CandidatesAreKeyedThenPlainThenLegacy) {
  const AddressHasher h = test_hasher();
  // Nothing to fold: the keyed hash and the plain one of before keys.
  EXPECT_EQ(h.candidates("bob@x.org"), (std::vector<std::string>{h.key("bob@x.org"), plain_sha256("bob@x.org")}));
  // Mixed case: also the normalisation from before migration 0008 (local part as given).
  EXPECT_EQ(h.candidates(" Bob@X.org"),
            (std::vector<std::string>{h.key("bob@x.org"), plain_sha256("bob@x.org"), plain_sha256("Bob@x.org")}));
}

TEST(AddressHasher, OldSecretKeysStillMatchWhatTheyHashed) {
  const SecretBox before = SecretBox::from_key(hash_key(7));
  const SecretBox rotated = SecretBox::from_key(hash_key(8), {hash_key(7)});
  const AddressHasher old_h = AddressHasher::from(before), new_h = AddressHasher::from(rotated);
  const std::string written = old_h.key("carol@x.org");
  EXPECT_NE(new_h.key("carol@x.org"), written) << "new rows are hashed under the new key";
  auto c = new_h.candidates("Carol@X.ORG");
  ASSERT_EQ(c.size(), 4u);  // new key, old key, plain, legacy
  EXPECT_EQ(c[0], new_h.key("carol@x.org"));
  EXPECT_EQ(c[1], written);
  EXPECT_EQ(std::set<std::string>(c.begin(), c.end()).size(), c.size()) << "no repeats";
  // Derived from the secret key, not the secret key itself.
  EXPECT_NE(written, hmac(hash_key(7), "carol@x.org"));
  EXPECT_NE(AddressHasher::from(SecretBox::from_key(hash_key(8))).candidates("carol@x.org")[1], written)
      << "once the old key is gone, its hashes no longer match";
}

TEST(AddressHasher, SqlListIsCommaSeparatedHex) {
  EXPECT_EQ(AddressHasher::sql_list({std::string("\x01\xab", 2), std::string("\xff", 1)}), "01ab,ff");
  EXPECT_EQ(any_candidate_sql(3), "= ANY(ARRAY(SELECT decode(unnest(string_to_array($3::text, ',')), 'hex')))");
}

}  // namespace
}  // namespace deliverd::store
