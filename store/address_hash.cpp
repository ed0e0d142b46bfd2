#include "store/address_hash.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <stdexcept>

#include "core/address.h"
#include "core/ascii.h"
#include "core/hex.h"
#include "store/secret_box.h"
#include "store/suppressions.h"

namespace deliverd::store {

// An HMAC-SHA-256 context keyed once; each hash works on a copy, so the key schedule is paid at
// start-up and a hash costs two SHA-256 compressions of a short input plus the copy.
struct AddressHasher::Mac {
  EVP_MAC_CTX* ctx = nullptr;
  ~Mac() { EVP_MAC_CTX_free(ctx); }
  std::string hash(std::string_view data) const {
    EVP_MAC_CTX* c = EVP_MAC_CTX_dup(ctx);
    unsigned char out[32];
    size_t len = 0;
    const bool ok = c && EVP_MAC_update(c, reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1 &&
                    EVP_MAC_final(c, out, &len, sizeof out) == 1 && len == sizeof out;
    EVP_MAC_CTX_free(c);
    // Never depends on input: a failing MAC is a broken library, not bad data.
    if (!ok) throw std::runtime_error("HMAC-SHA-256 failed");
    return std::string(reinterpret_cast<char*>(out), sizeof out);
  }
};

namespace {

std::string sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

// The normalisation rows written before migration 0008 had: white space trimmed, only the
// domain's ASCII letters lower-cased. "" when it is the case-folded form anyway.
std::string legacy_form(std::string_view address, const std::string& folded) {
  // Surrounding blanks go, as parse_listed_address drops them.
  const size_t first = address.find_first_not_of(" \t"), last = address.find_last_not_of(" \t");
  if (first == std::string_view::npos) return {};
  const std::string_view given = address.substr(first, last - first + 1);
  const size_t at = given.rfind('@');
  if (at == std::string_view::npos) return {};
  std::string old = std::string(given.substr(0, at + 1)) + core::ascii_lowercase(given.substr(at + 1));
  return old == folded ? std::string() : old;
}

}  // namespace

AddressHasher AddressHasher::from(const SecretBox& box) {
  std::vector<core::Key256> keys = box.derive_all(kSalt, kInfo);
  AddressHasher h = from_hash_keys(keys);
  for (auto& k : keys) OPENSSL_cleanse(k.data(), k.size());
  return h;
}

AddressHasher AddressHasher::from_hash_keys(const std::vector<core::Key256>& keys) {
  if (keys.empty()) throw std::invalid_argument("AddressHasher needs a key");
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (!mac) throw std::runtime_error("HMAC is not available");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  std::vector<std::shared_ptr<const Mac>> macs;
  for (const auto& k : keys) {
    auto m = std::make_shared<Mac>();
    m->ctx = EVP_MAC_CTX_new(mac);
    if (!m->ctx || EVP_MAC_init(m->ctx, k.data(), k.size(), params) != 1) {
      EVP_MAC_free(mac);
      throw std::runtime_error("cannot key HMAC-SHA-256");
    }
    macs.push_back(std::move(m));
  }
  EVP_MAC_free(mac);
  return AddressHasher(std::move(macs));
}

std::string AddressHasher::key(std::string_view address) const {
  auto parsed = parse_listed_address(address);
  return parsed ? macs_.front()->hash(core::case_folded(*parsed)) : std::string();
}

std::vector<std::string> AddressHasher::candidates(std::string_view address) const {
  auto parsed = parse_listed_address(address);
  if (!parsed) return {};
  const std::string folded = core::case_folded(*parsed);
  std::vector<std::string> out;
  out.reserve(macs_.size() + 2);
  for (const auto& m : macs_) out.push_back(m->hash(folded));
  // Frozen: the rows from before keyed hashes hold these, whatever key() becomes.
  out.push_back(sha256(folded));
  if (std::string old = legacy_form(address, folded); !old.empty()) out.push_back(sha256(old));
  return out;  // distinct: distinct keys (SecretBox refuses a key given twice) and a plain hash
}

std::string AddressHasher::sql_list(const std::vector<std::string>& hashes) {
  std::string out;
  for (const auto& h : hashes) {
    if (!out.empty()) out += ',';
    out += core::to_hex(h);
  }
  return out;
}

std::string any_candidate_sql(int n) {
  return "= ANY(ARRAY(SELECT decode(unnest(string_to_array($" + std::to_string(n) + "::text, ',')), 'hex')))";
}

}  // namespace deliverd::store
