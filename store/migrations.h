#pragma once
// Versioned schema migrations. The SQL files in store/migrations/NNNN_name.sql are compiled into
// the binary (CMake generates migrations_embedded.cpp), so a deployed binary carries the schema
// it expects. The blocking helpers are for the command line (`deliverd migrate`), never the loop.
#include <span>
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::store {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// All embedded migrations, in ascending version order.
std::span<const Migration> migrations();

// The schema version this binary expects (the highest embedded version).
int latest_schema_version();

// Applies pending migrations, each in its own transaction, under a session advisory lock so two
// hosts migrating at once apply each version exactly once. Returns the resulting version.
core::Result<int, std::string> migrate(const std::string& conninfo);

// The database's current version (0 when nothing was ever applied).
core::Result<int, std::string> schema_version(const std::string& conninfo);

}  // namespace deliverd::store
