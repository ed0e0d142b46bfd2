#pragma once
// Where one mailbox's shared policy state lives in Redis (ramp-up counters, pacing, breaker,
// warm-up day): under the mailbox's account and id, so two accounts' mailboxes with the same id
// never share a counter or a breaker. The account is length-prefixed, so no account or id,
// whatever it holds (':' included), can name another pair's keys:
//   <prefix>acct:<length of account>:<account>:mbx:<id>:<what>
// Before ids were per account the keys were <prefix>mbx:<id>:<what>; upgrade_mailbox_keys
// renames those once, so warm-up progress, today's counts and open breakers survive the upgrade.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "queue/redis_client.h"

namespace deliverd::policy {

std::string mailbox_key(std::string_view prefix, std::string_view account, std::string_view id,
                        std::string_view what);

struct MailboxRef {
  std::string account, id;
};

// SCANs <prefix>mbx:* and RENAMENXes every key of a known mailbox to its new name (an id that
// two accounts now share is ambiguous: its old keys are left to expire, and logged). A key whose
// new name exists already is left alone: new state is never overwritten by old. cb gets the
// number of keys renamed. Runs before any job is admitted; idempotent (a second run finds none).
void upgrade_mailbox_keys(queue::RedisClient& redis, std::string prefix, const std::vector<MailboxRef>& mailboxes,
                          std::function<void(core::Result<size_t, std::string>)> cb);

}  // namespace deliverd::policy
