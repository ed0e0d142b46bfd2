#pragma once
// The OAuth grants of mailboxes in PostgreSQL: the refresh token (sealed like a password), the
// one a provider rotated to while it has not yet worked (pending), and what the last refresh came
// to, for the API. The daemon's token refresh (oauth::TokenManager, through the adapter in
// daemon/) is the only writer after the API or the command line has stored a grant. A rotated
// token is written as pending before the access token that came with it is used, and promoted
// once it worked: a daemon that dies between the provider's answer and the promotion still has
// both. Each call answers once, on the loop.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/result.h"
#include "store/pg_connection.h"
#include "store/secret_box.h"

namespace deliverd::store {

struct OAuthGrant {
  std::string provider;
  std::string refresh_token;          // the current one
  std::string pending_refresh_token;  // rotated to but not yet seen to work; "" when none
};

// The grant of (account, id); Err names the mailbox and what is wrong (no such mailbox, no
// grant, a token that does not open).
void load_oauth_grant(PgConnection& pg, const SecretBox& box, const std::string& account, const std::string& id,
                      std::function<void(core::Result<OAuthGrant, std::string>)> cb);
// Writes `token` as the pending refresh token; true once durable (false: no grant, or an error).
void save_oauth_pending(PgConnection& pg, const SecretBox& box, const std::string& account, const std::string& id,
                        const std::string& token, std::function<void(bool ok)> cb);
// The pending token worked: it becomes the current one.
void promote_oauth_pending(PgConnection& pg, const std::string& account, const std::string& id,
                           std::function<void(bool ok)> cb);
// The pending token was refused: forgotten, the current one stays.
void drop_oauth_pending(PgConnection& pg, const std::string& account, const std::string& id,
                        std::function<void(bool ok)> cb);
// What the last refresh came to: "ok" (with the access token's expiry) or a failure's name.
// Best effort: written for the API to show, read by nothing that decides.
void record_oauth_refresh(PgConnection& pg, const std::string& account, const std::string& id, int64_t at_ms,
                          const std::string& result, int64_t expires_ms);

// Blocking, for check-config: each provider that mailboxes name, with how many name it.
core::Result<std::vector<std::pair<std::string, int64_t>>, std::string> oauth_providers_in_use(
    const std::string& conninfo);

}  // namespace deliverd::store
