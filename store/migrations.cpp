#include "store/migrations.h"

#include "core/log.h"
#include "store/pg_blocking.h"

namespace deliverd::store {
namespace detail {
// Defined in the generated migrations_embedded.cpp (see store/CMakeLists.txt).
extern const Migration kEmbeddedMigrations[];
extern const size_t kEmbeddedMigrationCount;
}  // namespace detail

namespace {

// One lock id for every deliverd host sharing the database.
constexpr const char* kLockSql = "SELECT pg_advisory_lock(hashtext('deliverd.schema_migrations'))";
constexpr const char* kUnlockSql = "SELECT pg_advisory_unlock(hashtext('deliverd.schema_migrations'))";

core::Result<int, std::string> read_version(detail::BlockingPg& pg) {
  PgResult exists = pg.exec("SELECT to_regclass('schema_migrations') IS NOT NULL");
  if (!exists.ok) return core::Err("cannot read schema version: " + exists.error);
  if (exists.rows.empty() || exists.rows[0][0].value_or("f") != "t") return 0;
  PgResult v = pg.exec("SELECT coalesce(max(version), 0) FROM schema_migrations");
  if (!v.ok || v.rows.empty() || !v.rows[0][0]) return core::Err("cannot read schema version: " + v.error);
  return std::stoi(*v.rows[0][0]);
}

}  // namespace

std::span<const Migration> migrations() {
  return {detail::kEmbeddedMigrations, detail::kEmbeddedMigrationCount};
}

int latest_schema_version() {
  auto all = migrations();
  return all.empty() ? 0 : all.back().version;
}

core::Result<int, std::string> schema_version(const std::string& conninfo) {
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  return read_version(*pg);
}

core::Result<int, std::string> migrate(const std::string& conninfo) {
  auto conn = detail::BlockingPg::connect(conninfo);
  if (!conn) return core::Err(conn.error());
  detail::BlockingPg& pg = *conn;
  pg.exec("SET client_min_messages = warning");
  PgResult lock = pg.exec(kLockSql);
  if (!lock.ok) return core::Err("cannot take the migration lock: " + lock.error);

  auto fail = [&](std::string msg) -> core::Result<int, std::string> {
    pg.exec("ROLLBACK");
    pg.exec(kUnlockSql);
    return core::Err(std::move(msg));
  };

  PgResult created = pg.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
  if (!created.ok) return fail("cannot create schema_migrations: " + created.error);

  auto current = read_version(pg);
  if (!current) return fail(current.error());
  int version = *current;
  if (version > latest_schema_version()) {
    core::log_warn("schema_newer_than_binary",
                   {{"database", std::to_string(version)}, {"binary", std::to_string(latest_schema_version())}});
  }

  for (const Migration& m : migrations()) {
    if (m.version <= version) continue;
    std::string label = std::to_string(m.version) + "_" + std::string(m.name);
    PgResult begin = pg.exec("BEGIN");
    if (!begin.ok) return fail("migration " + label + ": " + begin.error);
    PgResult applied = pg.exec(std::string(m.sql));
    if (!applied.ok) return fail("migration " + label + " failed: " + applied.error);
    PgResult recorded = pg.exec("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                {std::to_string(m.version), std::string(m.name)});
    if (!recorded.ok) return fail("migration " + label + ": " + recorded.error);
    PgResult commit = pg.exec("COMMIT");
    if (!commit.ok) return fail("migration " + label + " commit failed: " + commit.error);
    core::log_info("schema_migrated", {{"version", std::to_string(m.version)}, {"name", m.name}});
    version = m.version;
  }
  pg.exec(kUnlockSql);
  return version;
}

}  // namespace deliverd::store
