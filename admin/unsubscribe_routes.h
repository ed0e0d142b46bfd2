#pragma once
// The public one-click unsubscribe endpoint (RFC 8058), served on its own listener so it can be
// exposed to the internet while the admin API stays private.
//   GET  /u/{token}  a small page whose button POSTs back (for people clicking the link)
//   POST /u/{token}  body List-Unsubscribe=One-Click (urlencoded or multipart/form-data):
//                    suppresses at once, 200, no redirect, no cookie
// Every invalid, forged or expired token gets the same 404 page, so a probe learns nothing.
// Repeats are harmless (the suppression add is idempotent). Request size is bounded by the
// listener's config. Page views and refused requests draw from a token bucket per client
// address (a bounded table that forgets its stalest client); a POST with a valid token and the
// one-click body is always honoured, whoever else shares the address (mailbox providers send
// these POSTs for many recipients from a few servers), and one just stored is answered from
// memory, so replaying it does not reach the database.
#include <cstddef>
#include <functional>
#include <string>

#include "admin/http_server.h"
#include "admin/router.h"
#include "smtp/unsubscribe_token.h"

namespace deliverd::admin {

struct UnsubscribeLimits {
  size_t requests_per_minute_per_client = 30;  // page views and refused requests, per client address
  size_t max_tracked_clients = 10000;          // beyond this, the stalest client is forgotten
  size_t max_remembered_tokens = 10000;        // one-click POSTs answered from memory when repeated
};

// Records the suppression; done(true) once it is stored, done(false) on a storage error.
using SuppressFn = std::function<void(const smtp::UnsubscribeClaims&, std::function<void(bool ok)> done)>;

void add_unsubscribe_routes(Router& router, const smtp::UnsubscribeTokens& tokens, SuppressFn suppress,
                            UnsubscribeLimits limits = {});

// Listener limits for a public endpoint: small headers and bodies, short deadlines.
HttpServerConfig unsubscribe_server_config(const std::string& listen);

// True when the POST body carries List-Unsubscribe=One-Click in either encoding RFC 8058 allows.
bool is_one_click_body(const std::string* content_type, const std::string& body);

}  // namespace deliverd::admin
