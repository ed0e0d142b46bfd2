#pragma once
// Delivery outcomes as rows: the daemon appends one per final or deferred outcome; the admin API
// reads them back by job id and exports them per account. The recipient is kept with its SHA-256
// so erasing one address (store/accounts.h) can find its rows without the address.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/result.h"
#include "store/pg_connection.h"

namespace deliverd::store {

struct DeliveryEvent {
  int64_t id = 0;  // assigned by the database
  std::string job_id, account, mailbox, recipient;
  std::string status;  // delivered | deferred | bounced | suppressed | rejected | expired | failed
  int reply_code = 0;
  std::string enhanced_code, reply_text, host, ip, tls_version, tls_cipher, detail;
  int attempt = 1;
  int64_t duration_ms = 0;
  std::string created_at;  // RFC 3339, filled on reads
};

void insert_delivery_event(PgConnection& pg, const DeliveryEvent& e,
                           std::function<void(core::Result<core::Ok, std::string>)> cb);
// Every event of a job, oldest first (the last one is the current outcome).
void delivery_events_for_job(PgConnection& pg, const std::string& job_id,
                             std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb);
// At most `limit` events of an account with id > after_id, oldest first.
void delivery_events_for_account(PgConnection& pg, const std::string& account, int64_t after_id, int limit,
                                 std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb);

// The JSON object the API shows for one event.
std::string delivery_event_json(const DeliveryEvent& e);

}  // namespace deliverd::store
