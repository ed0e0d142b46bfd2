#pragma once
// The JSON event published to the results stream for every outcome (schema: docs/job-schema.md).
#include <cstdint>
#include <string>
#include <string_view>

#include "core/outcome.h"

namespace deliverd::daemon {

struct EventContext {
  std::string job_id, entry_id, account, mailbox, to;
  int attempt = 1;
  int64_t duration_ms = 0;
  int64_t now_ms = 0;  // wall clock, for "ts"
  int64_t next_attempt_ms = 0;  // deferred: when the retry is due ("next_attempt_at"); 0 = none
  int64_t first_delivered_ms = 0;  // a duplicate: when the job was delivered ("first_delivered_at"); 0 = none
};

std::string result_event(const EventContext& ctx, const core::Outcome& o);

// An event about a mailbox rather than a job, on the same stream: {"v":1,"event":"mailbox_disabled",
// "account","mailbox","reason","detail","ts"}. Job results have no "event" field.
std::string mailbox_event(std::string_view event, const std::string& account, const std::string& mailbox,
                          std::string_view reason, const std::string& detail, int64_t now_ms);

// RFC 3339 UTC with milliseconds: "2026-11-29T10:00:00.123Z".
std::string format_rfc3339_ms(int64_t epoch_ms);

}  // namespace deliverd::daemon
