#include "store/secret_box.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>

#include "core/hex.h"

namespace deliverd::store {
namespace {

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

void put_u32(unsigned char* p, uint32_t v) {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}

uint32_t get_u32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// AES-256-GCM decryption of ct||tag under key with aad; nullopt when the tag does not verify.
std::optional<std::string> gcm_open(const core::Key256& key, const unsigned char* nonce, const unsigned char* ct,
                                    size_t ct_len, const unsigned char* tag_in, std::string_view aad) {
  unsigned char tag[SecretBox::kTagBytes];
  std::memcpy(tag, tag_in, sizeof tag);
  std::string out(ct_len, '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, SecretBox::kNonceBytes, nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), nonce) == 1;
  if (ok && !aad.empty())
    ok = EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                           static_cast<int>(aad.size())) == 1;
  if (ok && ct_len > 0)
    ok = EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, ct,
                           static_cast<int>(ct_len)) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, SecretBox::kTagBytes, tag) == 1 &&
       EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + ct_len, &len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    return std::nullopt;
  }
  return out;
}

}  // namespace

SecretBox::~SecretBox() {
  for (auto& k : keys_) OPENSSL_cleanse(k.bytes.data(), k.bytes.size());
}

SecretBox SecretBox::from_key(std::array<unsigned char, 32> key, std::vector<std::array<unsigned char, 32>> old) {
  std::vector<Key> keys;
  keys.push_back(Key{key, core::key_id(key)});
  for (auto& k : old) {
    keys.push_back(Key{k, core::key_id(k)});
    OPENSSL_cleanse(k.data(), k.size());
  }
  OPENSSL_cleanse(key.data(), key.size());
  return SecretBox(std::move(keys));
}

core::Result<SecretBox, std::string> SecretBox::from_key_file(const std::string& path,
                                                              const std::vector<std::string>& old_paths) {
  std::vector<Key> keys;
  auto wipe = [&keys] {
    for (auto& k : keys) OPENSSL_cleanse(k.bytes.data(), k.bytes.size());
  };
  std::vector<std::string> paths = {path};
  paths.insert(paths.end(), old_paths.begin(), old_paths.end());
  for (const auto& p : paths) {
    auto k = core::read_key_file(p);
    if (!k) {
      wipe();
      return core::Err(k.error());
    }
    Key key{*k, core::key_id(*k)};
    OPENSSL_cleanse(k->data(), k->size());
    for (const auto& other : keys)
      if (other.id == key.id) {
        wipe();
        OPENSSL_cleanse(key.bytes.data(), key.bytes.size());
        return core::Err("key file " + p + " holds a key already given (key id " + core::key_id_hex(other.id) + ")");
      }
    keys.push_back(key);
    OPENSSL_cleanse(key.bytes.data(), key.bytes.size());
  }
  return SecretBox(std::move(keys));
}

const SecretBox::Key* SecretBox::find(uint32_t id) const {
  for (const auto& k : keys_)
    if (k.id == id) return &k;
  return nullptr;
}

unsigned char SecretBox::version_of(std::string_view sealed) {
  if (sealed.empty()) return 0;
  auto v = static_cast<unsigned char>(sealed[0]);
  if (v == kVersion && sealed.size() >= kOverhead) return v;
  if (v == kLegacyVersion && sealed.size() >= kLegacyOverhead) return v;
  return 0;
}

bool SecretBox::is_current(std::string_view sealed) const {
  return version_of(sealed) == kVersion &&
         get_u32(reinterpret_cast<const unsigned char*>(sealed.data()) + 1) == keys_.front().id;
}

core::Key256 SecretBox::derive(std::string_view salt, std::string_view info) const {
  return core::hkdf_sha256(keys_.front().bytes, salt, info);
}

std::vector<core::Key256> SecretBox::derive_all(std::string_view salt, std::string_view info) const {
  std::vector<core::Key256> out;
  out.reserve(keys_.size());
  for (const auto& k : keys_) out.push_back(core::hkdf_sha256(k.bytes, salt, info));
  return out;
}

std::string SecretBox::generate_hex_key() {
  unsigned char key[32];
  if (RAND_bytes(key, sizeof key) != 1) throw std::runtime_error("RAND_bytes failed");
  std::string out = core::to_hex(std::string_view(reinterpret_cast<const char*>(key), sizeof key));
  OPENSSL_cleanse(key, sizeof key);
  return out;
}

std::string SecretBox::seal(std::string_view plaintext, std::string_view aad) const {
  const Key& key = keys_.front();
  std::string out(kOverhead + plaintext.size(), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = kVersion;
  put_u32(p + 1, key.id);
  unsigned char* nonce = p + 1 + kKeyIdBytes;
  unsigned char* ct = nonce + kNonceBytes;
  unsigned char* tag = ct + plaintext.size();
  // The header is authenticated too: a value cannot be relabelled with another key id.
  std::string full_aad(out.data(), 1 + kKeyIdBytes);
  full_aad.append(aad);
  // A failing CSPRNG or cipher is not a recoverable condition; it never depends on input.
  if (RAND_bytes(nonce, kNonceBytes) != 1) throw std::runtime_error("RAND_bytes failed");
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.bytes.data(), nonce) == 1;
  ok = ok && EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(full_aad.data()),
                               static_cast<int>(full_aad.size())) == 1;
  if (ok && !plaintext.empty())
    ok = EVP_EncryptUpdate(ctx.get(), ct, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                           static_cast<int>(plaintext.size())) == 1;
  ok = ok && EVP_EncryptFinal_ex(ctx.get(), ct + plaintext.size(), &len) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
  if (!ok) throw std::runtime_error("AES-256-GCM encryption failed");
  return out;
}

core::Result<std::string, std::string> SecretBox::open(std::string_view sealed, std::string_view aad) const {
  const auto* p = reinterpret_cast<const unsigned char*>(sealed.data());
  switch (version_of(sealed)) {
    case kVersion: {
      const Key* key = find(get_u32(p + 1));
      if (!key)
        return core::Err("authentication failed (sealed with key id " + core::key_id_hex(get_u32(p + 1)) +
                         ", which is not configured: see [security] old_secret_key_files)");
      std::string full_aad(sealed.substr(0, 1 + kKeyIdBytes));
      full_aad.append(aad);
      const unsigned char* nonce = p + 1 + kKeyIdBytes;
      size_t ct_len = sealed.size() - kOverhead;
      auto out = gcm_open(key->bytes, nonce, nonce + kNonceBytes, ct_len, nonce + kNonceBytes + ct_len, full_aad);
      if (!out) return core::Err(std::string("authentication failed (tampered data, or not sealed for this row)"));
      return std::move(*out);
    }
    case kLegacyVersion: {
      const unsigned char* nonce = p + 1;
      size_t ct_len = sealed.size() - kLegacyOverhead;
      for (const auto& key : keys_)
        if (auto out = gcm_open(key.bytes, nonce, nonce + kNonceBytes, ct_len, nonce + kNonceBytes + ct_len, aad))
          return std::move(*out);
      return core::Err(std::string("authentication failed (wrong key or tampered data)"));
    }
    default:
      if (sealed.size() < kLegacyOverhead) return core::Err(std::string("sealed value too short"));
      return core::Err("unknown sealed format version " + std::to_string(p[0]));
  }
}

}  // namespace deliverd::store
