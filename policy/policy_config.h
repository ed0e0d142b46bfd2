#pragma once
// The [policy] settings (DESIGN.md "Policy defaults") and the per-mailbox view of them: a
// mailbox's own overrides (store::Mailbox) win over the daemon-wide defaults.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "store/mailboxes.h"

namespace deliverd::policy {

struct PolicyConfig {
  std::string redis_prefix = "deliverd:";
  // Ramp-up: day-d limit = min(ramp_max, ramp_start + ramp_step·d), d = local days since warm-up start.
  int ramp_start = 5, ramp_step = 2, ramp_max = 40;
  int per_hour = 10;   // GCRA cap per mailbox; 0 = none
  int per_minute = 2;  // GCRA cap per mailbox; 0 = none
  int min_gap_s = 60;  // between two sends of one mailbox …
  int jitter_s = 30;   // … plus a random 0..jitter_s
  // Circuit breaker (per mailbox, shared through Redis).
  int breaker_failures = 5;                                // consecutive mailbox-side failures that open it
  std::vector<int> breaker_open_minutes = {1, 5, 15, 60};  // successive trips; the last repeats
  int probe_timeout_s = 300;                               // a half-open probe that never reports frees the slot
  int quota_open_minutes = 24 * 60;                        // 5.4.5 / 5.2.0 quota replies: the provider's window
  int auth_disable_after = 10;                             // consecutive AUTH failures that disable the mailbox
  // Bounce guard.
  int bounce_window = 50;
  double bounce_rate = 0.05;
  int paused_retry_s = 900;  // deferral of jobs for a paused mailbox (the retry set may expire them)
  // Destination throttle (MX mode), per recipient domain; 0 = off.
  int destination_max_connections = 0;
  int destination_per_minute = 0;
  int destination_lease_s = 600;  // a connection slot that is never released expires after this
  int destination_retry_ms = 2000;
  // Spread added to deferrals many jobs share (breaker open, day after tomorrow), against herds.
  int defer_spread_ms = 30000;
  int unavailable_retry_ms = 5000;
  // Deferred jobs are handed a slot time over this many local days (today included); beyond
  // their capacity a job comes back when the horizon ends.
  int reservation_days = 7;  // Redis error: defer (never send unchecked)
  size_t max_suppressions = 10'000'000;
  std::string zoneinfo_dir = "/usr/share/zoneinfo";
  int reload_backoff_ms = 1000;
};

// Errors name the key, for the config loader.
core::Result<core::Ok, std::string> validate(const PolicyConfig& c);

// The limits that apply to one mailbox.
struct MailboxPolicy {
  int ramp_start = 5, ramp_step = 2, ramp_max = 40;
  std::optional<int64_t> warmup_day;  // days since 1970-01-01; nullopt = first day seen (kept in Redis)
  int per_hour = 0, per_minute = 0, min_gap_s = 0, jitter_s = 0;
  std::string timezone;   // "" = UTC
  int window_days = 127;  // bit 0 = Monday
  int window_start_hour = 0, window_end_hour = 24;
};

MailboxPolicy effective_policy(const PolicyConfig& c, const store::Mailbox& m);

}  // namespace deliverd::policy
