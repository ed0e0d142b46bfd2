#pragma once
// The authenticated admin API under /v1 (docs/admin-api.md, docs/openapi.yaml). Everything the
// daemon owns (the database, the secret box, the job stream, the policy engine, the prober)
// comes in through ApiDeps, which daemon/app.cpp fills; tests fill it with their own.
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "admin/auth.h"
#include "admin/mailbox_probe.h"
#include "admin/router.h"
#include "core/result.h"
#include "queue/account_eraser.h"
#include "store/mailboxes.h"
#include "store/pg_connection.h"
#include "store/secret_box.h"

namespace deliverd::admin {

// What the policy engine knows about a mailbox right now; -1 / "" when unknown.
struct MailboxLive {
  int64_t sent_today = -1, limit_today = -1;
  std::string breaker;  // "closed", "open", "half_open"
};

// The operator's [policy] limits: per-mailbox overrides from an account-bound key may only
// tighten them (0 for per_hour / per_minute means "no cap", as in [policy]).
struct OperatorLimits {
  int ramp_start = 5, ramp_step = 2, ramp_max = 40;
  int per_hour = 10, per_minute = 2, min_gap_s = 60;
};

struct ApiDeps {
  uv_loop_t* loop = nullptr;
  store::PgConnection* pg = nullptr;          // required
  const store::SecretBox* secrets = nullptr;  // required for mailbox create/update/test
  // XADD of one validated job to the jobs stream; answers the stream entry id or an error.
  std::function<void(const std::string& job_json, std::function<void(core::Result<std::string, std::string>)>)> inject;
  // The connection test (MailboxProber::probe in the daemon). Unset: mailbox create/test answer 501.
  std::function<void(const MailboxProbeRequest&, std::function<void(MailboxTestResult)>)> test_mailbox;
  // Called after a mailbox was created, changed, paused, resumed or deleted, so the daemon reloads.
  std::function<void()> mailboxes_changed;
  std::function<void(const std::string& account, const std::string& mailbox_id, std::function<void(MailboxLive)>)>
      mailbox_live;
  std::function<void(const std::string& account, const std::string& mailbox_id, std::function<void(bool ok)>)>
      breaker_reset;
  // Pause and resume (policy::Gate::set_state in the daemon: the shared Redis state and the row
  // together). Unset: pause and resume answer 501.
  std::function<void(const std::string& account, const std::string& mailbox_id, store::MailboxChange, store::PausedBy,
                     std::function<void(core::Result<store::ChangeAnswer, std::string>)>)>
      set_mailbox_state;
  // Whether `account` may send from `email`: nullopt when it may, else the signing domain
  // ([[dkim]] accounts) that keeps it out. Unset: every address is allowed.
  std::function<std::optional<std::string>(const std::string& account, const std::string& email)> sender_refused;
  std::function<OperatorLimits()> operator_limits;  // unset: the [policy] defaults
  // Whether the daemon's config has this [[oauth]] provider. Unset: no OAuth grant is accepted.
  std::function<bool(const std::string& provider)> oauth_provider_known;
  // Erasure of an account's Redis state (queue::AccountEraser::erase), run after its rows are
  // gone. Unset (no Redis): the erasure answer has no "redis" counts.
  std::function<void(const std::string& account, std::function<void(core::Result<queue::RedisEraseCounts, std::string>)>)>
      erase_queued;
  bool allow_plaintext_auth = false;  // [smtp] allow_plaintext_auth
  AuthConfig auth;
  size_t max_job_bytes = 10 * 1024 * 1024;  // as queue::parse_job's max_bytes
  int max_page = 1000;                      // largest page of a list
};

// Registers every /v1 route. Throws std::invalid_argument at start-up when a required dependency
// is missing.
void add_api_routes(Router& router, ApiDeps deps);

}  // namespace deliverd::admin
