#include "store/secret_box.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>
#include <memory>
#include <stdexcept>

#include "core/hex.h"
#include "core/key_file.h"

namespace deliverd::store {
namespace {

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

}  // namespace

SecretBox::~SecretBox() { OPENSSL_cleanse(key_.data(), key_.size()); }

SecretBox SecretBox::from_key(std::array<unsigned char, 32> key) {
  SecretBox box(key);
  OPENSSL_cleanse(key.data(), key.size());
  return box;
}

core::Result<SecretBox, std::string> SecretBox::from_key_file(const std::string& path) {
  auto key = core::read_key_file(path);
  if (!key) return core::Err(key.error());
  SecretBox box = from_key(*key);
  OPENSSL_cleanse(key->data(), key->size());
  return box;
}

std::string SecretBox::generate_hex_key() {
  unsigned char key[32];
  if (RAND_bytes(key, sizeof key) != 1) throw std::runtime_error("RAND_bytes failed");
  std::string out = core::to_hex(std::string_view(reinterpret_cast<const char*>(key), sizeof key));
  OPENSSL_cleanse(key, sizeof key);
  return out;
}

std::string SecretBox::seal(std::string_view plaintext, std::string_view aad) const {
  std::string out(kOverhead + plaintext.size(), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = kVersion;
  unsigned char* nonce = p + 1;
  unsigned char* ct = nonce + kNonceBytes;
  unsigned char* tag = ct + plaintext.size();
  // A failing CSPRNG or cipher is not a recoverable condition; it never depends on input.
  if (RAND_bytes(nonce, kNonceBytes) != 1) throw std::runtime_error("RAND_bytes failed");
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) == 1;
  if (ok && !aad.empty())
    ok = EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                           static_cast<int>(aad.size())) == 1;
  if (ok && !plaintext.empty())
    ok = EVP_EncryptUpdate(ctx.get(), ct, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                           static_cast<int>(plaintext.size())) == 1;
  ok = ok && EVP_EncryptFinal_ex(ctx.get(), ct + plaintext.size(), &len) == 1 &&
       EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
  if (!ok) throw std::runtime_error("AES-256-GCM encryption failed");
  return out;
}

core::Result<std::string, std::string> SecretBox::open(std::string_view sealed, std::string_view aad) const {
  if (sealed.size() < kOverhead) return core::Err(std::string("sealed value too short"));
  const auto* p = reinterpret_cast<const unsigned char*>(sealed.data());
  if (p[0] != kVersion) return core::Err("unknown sealed format version " + std::to_string(p[0]));
  const unsigned char* nonce = p + 1;
  const unsigned char* ct = nonce + kNonceBytes;
  size_t ct_len = sealed.size() - kOverhead;
  unsigned char tag[kTagBytes];
  std::memcpy(tag, ct + ct_len, kTagBytes);

  std::string out(ct_len, '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) == 1;
  if (ok && !aad.empty())
    ok = EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                           static_cast<int>(aad.size())) == 1;
  if (ok && ct_len > 0)
    ok = EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, ct,
                           static_cast<int>(ct_len)) == 1;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) == 1 &&
       EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + ct_len, &len) == 1;
  if (!ok) {
    OPENSSL_cleanse(out.data(), out.size());
    return core::Err(std::string("authentication failed (wrong key or tampered data)"));
  }
  return out;
}

}  // namespace deliverd::store
