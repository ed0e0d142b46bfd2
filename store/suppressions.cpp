#include "store/suppressions.h"

#include <openssl/sha.h>

namespace deliverd::store {

std::string normalize_address(std::string_view a) {
  while (!a.empty() && (a.front() == ' ' || a.front() == '\t')) a.remove_prefix(1);
  while (!a.empty() && (a.back() == ' ' || a.back() == '\t')) a.remove_suffix(1);
  size_t at = a.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == a.size()) return "";
  std::string out(a);
  for (size_t i = at + 1; i < out.size(); ++i)
    if (out[i] >= 'A' && out[i] <= 'Z') out[i] = static_cast<char>(out[i] - 'A' + 'a');
  return out;
}

std::string address_sha256(std::string_view normalized) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(normalized.data()), normalized.size(), md);
  return std::string(reinterpret_cast<char*>(md), sizeof md);
}

void add_suppression(PgConnection& pg, const Suppression& s, std::function<void(core::Result<bool, std::string>)> cb) {
  std::string address = normalize_address(s.address);
  if (s.account.empty() || address.empty()) {
    // Our own caller's bad input, not the database's: answered at once.
    return cb(core::Err{std::string("suppression needs an account and an address")});
  }
  pg.query(
      "INSERT INTO suppressions (account, address, address_sha256, reason, source)"
      " VALUES ($1, $2, $3::bytea, $4, $5) ON CONFLICT (account, address_sha256) DO NOTHING",
      {s.account, address, encode_bytea(address_sha256(address)), s.reason, s.source},
      [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err{"cannot add suppression: " + r.error});
        cb(r.affected > 0);
      });
}

void is_suppressed(PgConnection& pg, const std::string& account, const std::string& address,
                   std::function<void(core::Result<bool, std::string>)> cb) {
  std::string normalized = normalize_address(address);
  if (normalized.empty()) return cb(core::Err{std::string("not an address: ") + address});
  pg.query("SELECT 1 FROM suppressions WHERE account = $1 AND address_sha256 = $2::bytea",
           {account, encode_bytea(address_sha256(normalized))}, [cb = std::move(cb)](const PgResult& r) {
             if (!r.ok) return cb(core::Err{"cannot check suppressions: " + r.error});
             cb(!r.rows.empty());
           });
}

}  // namespace deliverd::store
