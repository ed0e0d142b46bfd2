#include "store/pg_blocking.h"

#include <cstdlib>

namespace deliverd::store::detail {
namespace {
std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
}  // namespace

core::Result<BlockingPg, std::string> BlockingPg::connect(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (!c) return core::Err(std::string("out of memory"));
  if (PQstatus(c) != CONNECTION_OK) {
    std::string e = trim(PQerrorMessage(c));
    PQfinish(c);
    return core::Err("cannot connect to PostgreSQL: " + e);
  }
  return BlockingPg(c);
}

BlockingPg::~BlockingPg() {
  if (conn_) PQfinish(conn_);
}

PgResult BlockingPg::exec(const std::string& sql, const std::vector<std::optional<std::string>>& params) {
  PGresult* r;
  if (params.empty()) {
    r = PQexec(conn_, sql.c_str());
  } else {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    r = PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr,
                     0);
  }
  PgResult out;
  if (!r) {
    out.error = trim(PQerrorMessage(conn_));
    return out;
  }
  ExecStatusType st = PQresultStatus(r);
  out.ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
  if (!out.ok) {
    out.error = trim(PQresultErrorMessage(r));
    if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) out.sqlstate = s;
  } else {
    for (int c = 0; c < PQnfields(r); ++c) out.columns.emplace_back(PQfname(r, c));
    for (int i = 0; i < PQntuples(r); ++i) {
      auto& row = out.rows.emplace_back();
      for (int c = 0; c < PQnfields(r); ++c) {
        if (PQgetisnull(r, i, c))
          row.emplace_back(std::nullopt);
        else
          row.emplace_back(std::string(PQgetvalue(r, i, c), static_cast<size_t>(PQgetlength(r, i, c))));
      }
    }
    const char* affected = PQcmdTuples(r);
    if (affected && *affected) out.affected = std::strtol(affected, nullptr, 10);
  }
  PQclear(r);
  return out;
}

}  // namespace deliverd::store::detail
