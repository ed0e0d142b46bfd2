#include "store/audit_log.h"

namespace deliverd::store {

void append_audit(PgConnection& pg, const AuditEntry& e, std::function<void(core::Result<core::Ok, std::string>)> cb) {
  auto opt = [](const std::string& s) -> std::optional<std::string> {
    if (s.empty()) return std::nullopt;
    return s;
  };
  pg.query(
      "INSERT INTO audit_log (key_id, role, account, action, target, peer_ip, status)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7::integer)",
      {opt(e.key_id), opt(e.role), opt(e.account), e.action, opt(e.target), opt(e.peer_ip), std::to_string(e.status)},
      [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot write audit log: " + r.error));
        cb(core::Ok{});
      });
}

}  // namespace deliverd::store
