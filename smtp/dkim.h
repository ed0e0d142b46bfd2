#pragma once
// DKIM signing (RFC 6376) with relaxed/relaxed canonicalization, RSA-SHA256 and Ed25519-SHA256
// (RFC 8463), through OpenSSL's EVP interface. A signer holds one domain's key and selector; it
// is immutable after loading, so one instance serves every message of that domain.
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace deliverd::smtp {

enum class DkimAlgorithm { RsaSha256, Ed25519Sha256 };

// "rsa-sha256" / "ed25519-sha256"; false for anything else.
bool parse_dkim_algorithm(std::string_view name, DkimAlgorithm& out);
std::string_view to_string(DkimAlgorithm a);

// The header fields signed when present, in this order (lower-case names). From is always
// present in our messages and is required by RFC 6376 5.4.
inline constexpr std::string_view kDkimSignedHeaders[] = {
    "from",         "to",           "subject",          "date",
    "message-id",   "mime-version", "content-type",     "list-unsubscribe",
    "list-unsubscribe-post", "reply-to", "content-transfer-encoding"};

class DkimSigner {
 public:
  // The PEM private key must match the algorithm (RSA of at least 1024 bits, or Ed25519).
  // Errors name the domain and what is wrong, never key material.
  static core::Result<DkimSigner, std::string> from_pem(std::string domain, std::string selector,
                                                        DkimAlgorithm algorithm, std::string_view pem);
  static core::Result<DkimSigner, std::string> from_key_file(std::string domain, std::string selector,
                                                             DkimAlgorithm algorithm, const std::string& path);

  const std::string& domain() const { return domain_; }
  const std::string& selector() const { return selector_; }
  DkimAlgorithm algorithm() const { return algorithm_; }

  // The "DKIM-Signature: …\r\n" field (folded) for a CRLF message; prepend it to the message.
  core::Result<std::string, std::string> signature(std::string_view message, std::time_t now) const;
  // The message with its DKIM-Signature field prepended.
  core::Result<std::string, std::string> sign(std::string_view message, std::time_t now) const;

 private:
  DkimSigner(std::string domain, std::string selector, DkimAlgorithm algorithm, std::shared_ptr<EVP_PKEY> key)
      : domain_(std::move(domain)), selector_(std::move(selector)), algorithm_(algorithm), key_(std::move(key)) {}
  std::string domain_, selector_;
  DkimAlgorithm algorithm_;
  std::shared_ptr<EVP_PKEY> key_;
};

// Relaxed canonicalization (RFC 6376 3.4.2 and 3.4.4), exposed for tests.
std::string dkim_relaxed_header(std::string_view name, std::string_view value);  // "name:value\r\n"
std::string dkim_relaxed_body(std::string_view crlf_body);

}  // namespace deliverd::smtp
