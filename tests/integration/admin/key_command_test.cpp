// `deliverd key create` against a real PostgreSQL: the token is printed once, only its hash is kept.
#include "daemon/key_command.h"

#include <gtest/gtest.h>

#include <sstream>

#include "admin/permissions.h"
#include "store/api_keys.h"
#include "store/migrations.h"
#include "tests/integration/fixtures/postgres_server.h"

namespace deliverd::daemon {
namespace {

TEST(KeyCommand, CreatesAnOwnerKeyAndPrintsItOnce) {
  deliverd::testing::PostgresServer pg;
  ASSERT_TRUE(store::migrate(pg.conninfo()));
  std::ostringstream out, err;
  ASSERT_EQ(run_key_command({"create", "--role", "owner", "--name", "bootstrap", "--expires", "30d"}, pg.conninfo(),
                            out, err),
            0)
      << err.str();
  std::string token = out.str();
  ASSERT_FALSE(token.empty());
  token.pop_back();  // newline
  auto prefix = store::api_key_prefix(token);
  ASSERT_TRUE(prefix) << token;
  EXPECT_NE(err.str().find("key_" + *prefix), std::string::npos);
  EXPECT_EQ(err.str().find(token), std::string::npos);

  std::ostringstream out2, err2;
  EXPECT_EQ(run_key_command({"create", "--role", "user"}, pg.conninfo(), out2, err2), 2);
  EXPECT_NE(err2.str().find("account"), std::string::npos);
  EXPECT_EQ(run_key_command({"create", "--role", "wizard"}, pg.conninfo(), out2, err2), 2);
  EXPECT_EQ(run_key_command({"create", "--role", "readonly", "--account", "a", "--scopes", "keys:write"}, pg.conninfo(),
                            out2, err2),
            2);
  EXPECT_EQ(
      run_key_command({"create", "--role", "admin", "--expires", "2001-01-01T00:00:00Z"}, pg.conninfo(), out2, err2),
      2);
  EXPECT_EQ(run_key_command({"delete"}, pg.conninfo(), out2, err2), 2);
  EXPECT_EQ(
      run_key_command({"create", "--role", "owner"}, "host=127.0.0.1 port=1 dbname=x connect_timeout=2", out2, err2),
      1);
  EXPECT_TRUE(out2.str().empty());
}

TEST(KeyCommand, ExpiryOption) {
  EXPECT_EQ(expiry_from_option("1d", 0), "1970-01-02T00:00:00Z");
  EXPECT_EQ(expiry_from_option("12h", 0), "1970-01-01T12:00:00Z");
  EXPECT_EQ(expiry_from_option("2030-01-01T00:00:00Z", 0), "2030-01-01T00:00:00Z");
  EXPECT_EQ(expiry_from_option("0d", 0), "");
  EXPECT_EQ(expiry_from_option("soon", 0), "");
  EXPECT_EQ(expiry_from_option("1970-01-01T00:00:00Z", 10), "");
}

}  // namespace
}  // namespace deliverd::daemon
