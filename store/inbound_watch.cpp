#include "store/inbound_watch.h"

#include <cstdlib>

#include "core/utf8.h"

namespace deliverd::store {

void load_watch(PgConnection& pg, const std::string& account, const std::string& mailbox,
                std::function<void(core::Result<std::optional<WatchRow>, std::string>)> cb) {
  pg.query(
      "SELECT uid_validity, last_uid, state, last_error, owner,"
      " to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
      " FROM inbound_watch WHERE account = $1 AND mailbox = $2",
      {account, mailbox}, [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot read the inbound watch: " + r.error));
        if (r.rows.empty()) return cb(std::optional<WatchRow>());
        auto s = [&](size_t i) { return r.rows[0].size() > i && r.rows[0][i] ? *r.rows[0][i] : std::string(); };
        WatchRow w;
        w.uid_validity = static_cast<uint32_t>(std::strtoul(s(0).c_str(), nullptr, 10));
        w.last_uid = static_cast<uint32_t>(std::strtoul(s(1).c_str(), nullptr, 10));
        w.state = s(2);
        w.last_error = s(3);
        w.owner = s(4);
        w.updated_at = s(5);
        cb(std::optional<WatchRow>(std::move(w)));
      });
}

namespace {
auto done_with(std::string what, std::function<void(core::Result<core::Ok, std::string>)> cb) {
  return [what = std::move(what), cb = std::move(cb)](const PgResult& r) {
    if (!r.ok) return cb(core::Err("cannot save the inbound " + what + ": " + r.error));
    cb(core::Ok{});
  };
}
}  // namespace

void save_watch_cursor(PgConnection& pg, const std::string& account, const std::string& mailbox,
                       uint32_t uid_validity, uint32_t last_uid,
                       std::function<void(core::Result<core::Ok, std::string>)> cb) {
  pg.query(
      "INSERT INTO inbound_watch (account, mailbox, uid_validity, last_uid) VALUES ($1, $2, $3::bigint, $4::bigint)"
      " ON CONFLICT (account, mailbox) DO UPDATE SET uid_validity = excluded.uid_validity,"
      "   last_uid = CASE WHEN inbound_watch.uid_validity = excluded.uid_validity"
      "                   THEN greatest(inbound_watch.last_uid, excluded.last_uid) ELSE excluded.last_uid END,"
      "   updated_at = now()",
      {account, mailbox, std::to_string(uid_validity), std::to_string(last_uid)},
      done_with("cursor", std::move(cb)));
}

void save_watch_state(PgConnection& pg, const std::string& account, const std::string& mailbox,
                      const std::string& state, const std::string& error, const std::string& owner,
                      std::function<void(core::Result<core::Ok, std::string>)> cb) {
  std::string e = core::escape_utf8_lossless(error.substr(0, 300));
  pg.query(
      "INSERT INTO inbound_watch (account, mailbox, state, last_error, owner) VALUES ($1, $2, $3, $4, $5)"
      " ON CONFLICT (account, mailbox) DO UPDATE SET state = excluded.state, last_error = excluded.last_error,"
      "   owner = excluded.owner, updated_at = now()",
      {account, mailbox, state, e, owner}, done_with("state", std::move(cb)));
}

}  // namespace deliverd::store
