#include "smtp/dkim.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <algorithm>

#include "core/key_file.h"

#include "core/ascii.h"
#include "core/base64.h"

namespace deliverd::smtp {
namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string sha256(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

// DNS labels for d= and s= (RFC 6376 3.5: selector is dot-separated sub-domains).
bool valid_labels(std::string_view s) {
  if (s.empty() || s.size() > 253 || s.front() == '.' || s.back() == '.' || s.find("..") != std::string_view::npos)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return core::ascii_is_alnum(c) || c == '-' || c == '.' || c == '_';
  });
}

struct Field {
  std::string_view name, value;  // value: everything after the colon, folds included
};

std::vector<Field> header_fields(std::string_view head) {
  std::vector<Field> out;
  size_t pos = 0;
  while (pos < head.size()) {
    size_t end = pos;
    // A field runs until a CRLF that is not followed by white space (a fold).
    for (;;) {
      size_t eol = head.find("\r\n", end);
      if (eol == std::string_view::npos) {
        end = head.size();
        break;
      }
      end = eol + 2;
      if (end >= head.size() || !is_wsp(head[end])) break;
    }
    std::string_view field = head.substr(pos, end - pos);
    if (field.size() >= 2 && field.substr(field.size() - 2) == "\r\n") field.remove_suffix(2);
    size_t colon = field.find(':');
    if (colon != std::string_view::npos) out.push_back({field.substr(0, colon), field.substr(colon + 1)});
    pos = end;
  }
  return out;
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

}  // namespace

bool parse_dkim_algorithm(std::string_view name, DkimAlgorithm& out) {
  if (name == "rsa-sha256") out = DkimAlgorithm::RsaSha256;
  else if (name == "ed25519-sha256") out = DkimAlgorithm::Ed25519Sha256;
  else return false;
  return true;
}

std::string_view to_string(DkimAlgorithm a) {
  return a == DkimAlgorithm::RsaSha256 ? "rsa-sha256" : "ed25519-sha256";
}

std::string dkim_relaxed_header(std::string_view name, std::string_view value) {
  std::string out = core::ascii_lowercase(name);
  while (!out.empty() && is_wsp(out.back())) out.pop_back();
  out += ':';
  std::string v;
  bool pending_space = false;
  for (char c : value) {
    if (c == '\r' || c == '\n') continue;  // unfold
    if (is_wsp(c)) {
      pending_space = true;
      continue;
    }
    if (pending_space && !v.empty()) v += ' ';
    pending_space = false;
    v += c;
  }
  out += v;
  out += "\r\n";
  return out;
}

std::string dkim_relaxed_body(std::string_view body) {
  std::string out;
  out.reserve(body.size());
  size_t pos = 0;
  size_t keep = 0;  // length of out up to the last non-empty line
  while (pos < body.size()) {
    size_t eol = body.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = body.size();
    const std::string_view line = body.substr(pos, eol - pos);
    pos = eol == body.size() ? eol : eol + 2;
    const size_t line_at = out.size();
    // Text is copied in runs: a single space between words is already canonical, so only other
    // white space (tabs, several in a row, at the end of the line) breaks a run.
    size_t run = 0, j = 0;
    while (j < line.size()) {
      if (!is_wsp(line[j])) {
        ++j;
        continue;
      }
      size_t k = j + 1;
      while (k < line.size() && is_wsp(line[k])) ++k;
      if (k == line.size()) break;  // trailing white space goes (3.4.4 b)
      if (k == j + 1 && line[j] == ' ') {
        j = k;
        continue;
      }
      out.append(line.data() + run, j - run);
      out += ' ';
      run = j = k;
    }
    out.append(line.data() + run, j - run);
    const bool empty = out.size() == line_at;
    out += "\r\n";
    if (!empty) keep = out.size();
  }
  out.resize(keep);  // trailing empty lines are ignored (3.4.4); an empty body stays empty
  return out;
}

core::Result<DkimSigner, std::string> DkimSigner::from_pem(std::string domain, std::string selector,
                                                           DkimAlgorithm algorithm, std::string_view pem) {
  std::string what = "dkim key for " + domain;
  if (!valid_labels(domain)) return core::Err{"dkim: invalid domain \"" + domain + "\""};
  if (!valid_labels(selector)) return core::Err{what + ": invalid selector \"" + selector + "\""};
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return core::Err{what + ": out of memory"};
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!raw) return core::Err{what + ": not a PEM private key"};
  std::shared_ptr<EVP_PKEY> key(raw, PkeyFree{});
  int id = EVP_PKEY_get_base_id(raw);
  if (algorithm == DkimAlgorithm::RsaSha256) {
    if (id != EVP_PKEY_RSA) return core::Err{what + ": rsa-sha256 needs an RSA key"};
    // RFC 8301 3.2: verifiers reject keys under 1024 bits.
    if (EVP_PKEY_get_bits(raw) < 1024) return core::Err{what + ": RSA key shorter than 1024 bits"};
  } else if (id != EVP_PKEY_ED25519) {
    return core::Err{what + ": ed25519-sha256 needs an Ed25519 key"};
  }
  return DkimSigner(core::ascii_lowercase(domain), std::move(selector), algorithm, std::move(key));
}

core::Result<DkimSigner, std::string> DkimSigner::from_key_file(std::string domain, std::string selector,
                                                                DkimAlgorithm algorithm, const std::string& path) {
  auto pem = core::read_private_file(path);
  if (!pem) return core::Err{"dkim key for " + domain + ": " + pem.error()};
  auto r = from_pem(domain, std::move(selector), algorithm, *pem);
  OPENSSL_cleanse(pem->data(), pem->size());
  if (!r) return core::Err{r.error() + " (" + path + ")"};
  return r;
}

core::Result<std::string, std::string> DkimSigner::signature(std::string_view message, std::time_t now) const {
  size_t split = message.find("\r\n\r\n");
  std::string_view head = split == std::string_view::npos ? message : message.substr(0, split + 2);
  std::string_view body = split == std::string_view::npos ? std::string_view() : message.substr(split + 4);

  auto fields = header_fields(head);
  std::string signed_headers, h_tag;
  for (auto name : kDkimSignedHeaders) {
    // The last instance is the one a verifier picks first (RFC 6376 5.4.2).
    for (auto it = fields.rbegin(); it != fields.rend(); ++it) {
      if (!core::iequals(it->name, name)) continue;
      signed_headers += dkim_relaxed_header(it->name, it->value);
      h_tag += (h_tag.empty() ? "" : ":") + std::string(name);
      break;
    }
  }
  if (h_tag.find("from") != 0) return core::Err{std::string("dkim: message has no From field")};

  std::string bh = sha256(dkim_relaxed_body(body));
  std::string value = " v=1; a=" + std::string(to_string(algorithm_)) + "; c=relaxed/relaxed; d=" + domain_ +
                      "; s=" + selector_ + ";\r\n\tt=" + std::to_string(static_cast<long long>(now)) +
                      "; h=" + h_tag + ";\r\n\tbh=" +
                      core::base64_encode(bh) + ";\r\n\tb=";
  std::string data = signed_headers + dkim_relaxed_header("DKIM-Signature", value);
  data.resize(data.size() - 2);  // the signature field itself is hashed without its CRLF (3.7)

  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx) return core::Err{std::string("dkim: out of memory")};
  std::string input;
  const EVP_MD* md = nullptr;
  if (algorithm_ == DkimAlgorithm::RsaSha256) {
    md = EVP_sha256();
    input = std::move(data);
  } else {
    // RFC 8463 3: Ed25519 signs the SHA-256 of the canonicalized data, with no further digest.
    input = sha256(data);
  }
  if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key_.get()) != 1)
    return core::Err{"dkim: signing with the key for " + domain_ + " failed"};
  size_t len = 0;
  auto in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1)
    return core::Err{"dkim: signing with the key for " + domain_ + " failed"};
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()) != 1)
    return core::Err{"dkim: signing with the key for " + domain_ + " failed"};
  sig.resize(len);
  std::string b = core::base64_encode(sig);

  std::string out = "DKIM-Signature:" + value;
  for (size_t i = 0; i < b.size(); i += 72) {
    if (i) out += "\r\n\t ";
    out.append(b, i, 72);
  }
  out += "\r\n";
  return out;
}

core::Result<std::string, std::string> DkimSigner::sign(std::string_view message, std::time_t now) const {
  auto sig = signature(message, now);
  if (!sig) return core::Err{sig.error()};
  return *sig + std::string(message);
}

}  // namespace deliverd::smtp
