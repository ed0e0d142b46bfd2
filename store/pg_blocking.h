#pragma once
// Internal to store/: a blocking libpq session for command-line helpers (migrate, mailbox add).
// Never used on the event loop.
#include <libpq-fe.h>

#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "store/pg_connection.h"

namespace deliverd::store::detail {

class BlockingPg {
 public:
  static core::Result<BlockingPg, std::string> connect(const std::string& conninfo);
  BlockingPg(BlockingPg&& o) noexcept : conn_(o.conn_) { o.conn_ = nullptr; }
  BlockingPg& operator=(BlockingPg&&) = delete;
  BlockingPg(const BlockingPg&) = delete;
  ~BlockingPg();

  // One statement with parameters, or (no params) a script of several statements.
  PgResult exec(const std::string& sql, const std::vector<std::optional<std::string>>& params = {});

 private:
  explicit BlockingPg(PGconn* c) : conn_(c) {}
  PGconn* conn_;
};

}  // namespace deliverd::store::detail
