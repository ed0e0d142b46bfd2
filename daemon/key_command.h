#pragma once
// `deliverd key create --role owner [--account A] [--scopes "mailboxes:read …"] [--expires T]
// [--name N]`: bootstraps API keys from the command line (the first owner key cannot come from the
// API). The token is printed once on stdout and never stored; the database keeps its SHA-256.
// Blocking: runs before (or instead of) the event loop, never on it.
#include <ostream>
#include <string>
#include <vector>

namespace deliverd::daemon {

// args: what follows "key" ("create", "--role", "owner", …). Exit codes: 0 ok, 2 usage or
// invalid value, 1 database error. Errors go to err, naming the option.
int run_key_command(const std::vector<std::string>& args, const std::string& pg_conninfo, std::ostream& out,
                    std::ostream& err);

// "--expires" accepts RFC 3339 ("2027-01-01T00:00:00Z") or a duration from now ("90d", "12h");
// returns the RFC 3339 UTC time, or "" when invalid or not in the future.
std::string expiry_from_option(const std::string& value, long long now_epoch_s);

}  // namespace deliverd::daemon
