#include "policy/policy_config.h"

#include "policy/ramp.h"

namespace deliverd::policy {

core::Result<core::Ok, std::string> validate(const PolicyConfig& c) {
  auto err = [](const char* key, const char* what) { return core::Err(std::string("[policy] ") + key + ": " + what); };
  if (c.ramp_start < 0 || c.ramp_step < 0 || c.ramp_max < 0) return err("ramp_*", "must not be negative");
  if (c.per_hour < 0 || c.per_minute < 0) return err("per_hour/per_minute", "must not be negative (0 = no cap)");
  if (c.min_gap_s < 0 || c.jitter_s < 0) return err("min_gap_s/jitter_s", "must not be negative");
  if (c.breaker_failures < 1) return err("breaker_failures", "must be at least 1");
  if (c.breaker_open_minutes.empty()) return err("breaker_open_minutes", "needs at least one duration");
  for (int m : c.breaker_open_minutes)
    if (m < 1) return err("breaker_open_minutes", "durations must be at least 1 minute");
  if (c.quota_open_minutes < 1) return err("quota_open_minutes", "must be at least 1");
  if (c.auth_disable_after < 1) return err("auth_disable_after", "must be at least 1");
  if (c.bounce_window < 1 || c.bounce_window > 10000) return err("bounce_window", "must be 1-10000");
  if (c.bounce_rate <= 0 || c.bounce_rate > 1) return err("bounce_rate", "must be in (0, 1]");
  if (c.destination_max_connections < 0 || c.destination_per_minute < 0)
    return err("destination_*", "must not be negative (0 = off)");
  if (c.probe_timeout_s < 1 || c.destination_lease_s < 1) return err("probe_timeout_s/destination_lease_s", ">= 1");
  if (c.reservation_days < 1 || c.reservation_days > 31) return err("reservation_days", "must be 1-31");
  if (c.redis_prefix.empty()) return err("redis_prefix", "must not be empty");
  return core::Ok{};
}

MailboxPolicy effective_policy(const PolicyConfig& c, const store::Mailbox& m) {
  MailboxPolicy p;
  p.ramp_start = m.ramp_start.value_or(c.ramp_start);
  p.ramp_step = m.ramp_step.value_or(c.ramp_step);
  p.ramp_max = m.ramp_max.value_or(c.ramp_max);
  if (!m.warmup_start.empty()) p.warmup_day = parse_date(m.warmup_start);
  p.per_hour = m.per_hour.value_or(c.per_hour);
  p.per_minute = m.per_minute.value_or(c.per_minute);
  p.min_gap_s = m.min_gap_s.value_or(c.min_gap_s);
  p.jitter_s = c.jitter_s;
  p.timezone = m.timezone;
  p.window_days = m.window_days.value_or(127);
  p.window_start_hour = m.window_start_hour.value_or(0);
  p.window_end_hour = m.window_end_hour.value_or(24);
  return p;
}

}  // namespace deliverd::policy
