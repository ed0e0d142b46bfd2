#pragma once
// A send job as producers put it on the stream (DESIGN.md "Job", docs/job-schema.md). Parsing
// validates everything that later ends up in a message header, so nothing downstream has to.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace deliverd::queue {

struct Job {
  int v = 1;
  std::string id, account, mailbox, to_email, to_name, from_name, reply_to, subject, text, html, raw;
  std::vector<std::pair<std::string, std::string>> headers;  // in the producer's order
  std::string campaign, unsubscribe_url, unsubscribe_mailto;
  int64_t not_before_ms = 0, expires_at_ms = 0;  // 0 = not set
};

// `field` is the JSON path of the offending value ("to.email", "headers.X-Foo", "job" for the
// document as a whole), so a dead-lettered job says exactly what the producer got wrong.
struct JobError {
  std::string field;
  std::string message;
  std::string to_string() const;
};

// Field limits (bytes). The body limit is the `max_bytes` argument of parse_job.
inline constexpr size_t kMaxIdLength = 200;
inline constexpr size_t kMaxEmailLength = 254;
inline constexpr size_t kMaxHeaderLineLength = 998;  // RFC 5322 §2.1.1
inline constexpr size_t kMaxUrlLength = 2048;
inline constexpr size_t kMaxExtraHeaders = 100;

// max_bytes bounds text + html + raw together; the JSON text itself may be up to three times
// that (plus 64 KiB) because producers often \u-escape non-ASCII text.
core::Result<Job, JobError> parse_job(std::string_view json, size_t max_bytes = 10 * 1024 * 1024);

// RFC 3339 date-time ("2026-11-29T10:00:00Z", fractions and numeric offsets allowed) to epoch
// milliseconds; false if malformed or out of range.
bool parse_rfc3339_ms(std::string_view s, int64_t& out_ms);

}  // namespace deliverd::queue
