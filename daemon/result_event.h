#pragma once
// The JSON event published to the results stream for every outcome (schema: docs/job-schema.md).
#include <cstdint>
#include <string>
#include <string_view>

#include "core/outcome.h"
#include "inbound/classifier.h"

namespace deliverd::daemon {

struct EventContext {
  std::string job_id, entry_id, account, mailbox, to;
  int attempt = 1;
  int64_t duration_ms = 0;
  int64_t now_ms = 0;  // wall clock, for "ts"
  int64_t next_attempt_ms = 0;  // deferred: when the retry is due ("next_attempt_at"); 0 = none
  int64_t first_delivered_ms = 0;  // a duplicate: when the job was delivered ("first_delivered_at"); 0 = none
  std::string message_id;  // delivered: the Message-ID sent ("message_id"); "" = not shown
};

std::string result_event(const EventContext& ctx, const core::Outcome& o);

// An event about a mailbox rather than a job, on the same stream: {"v":1,"event":"mailbox_disabled",
// "account","mailbox","reason","detail","ts"}. Job results have no "event" field.
std::string mailbox_event(std::string_view event, const std::string& account, const std::string& mailbox,
                          std::string_view reason, const std::string& detail, int64_t now_ms);

// What came back to a sending mailbox after the 250 (inbound/), on the same stream:
// {"v":1,"event":"bounce"|"delay"|"complaint"|"auto_reply"|"reply","job_id","account","mailbox",
// "recipient","matched_by":"message_id"|"recipient","rule", per kind "status","action",
// "diagnostic","remote_mta" (bounce, delay) or "feedback_type" (complaint), "message_id" and
// "date" of the message read, "ts"}. Never a body. Peer text is kept losslessly (\xNN).
struct SignalEventContext {
  std::string job_id, account, mailbox, recipient;
  bool by_message_id = false;
  int64_t now_ms = 0;
};
std::string signal_event(const SignalEventContext& ctx, const inbound::Signal& s,
                         const inbound::SignalRecipient* about);

// RFC 3339 UTC with milliseconds: "2026-11-29T10:00:00.123Z".
std::string format_rfc3339_ms(int64_t epoch_ms);

}  // namespace deliverd::daemon
