#pragma once
// Delivery outcomes as rows: the daemon appends one per final or deferred outcome; the admin API
// reads them back by job id and exports them per account. The recipient is kept with its SHA-256
// so erasing one address (store/accounts.h) can find its rows without the address.
#include <cstdint>
#include <functional>
#include <memory>
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

// One multi-row INSERT (one round trip, one commit) for all of them.
void insert_delivery_events(PgConnection& pg, const std::vector<DeliveryEvent>& events,
                            std::function<void(core::Result<core::Ok, std::string>)> cb);

// How the daemon appends its events: while one INSERT is on its way, new events gather and go
// together in the next one, so the cost is one round trip and one commit per batch rather than
// per outcome, and the rate of outcomes cannot outrun the connection's queue. Rows are best
// effort (the results stream is the record of truth): a batch that fails is logged and counted
// (deliverd_delivery_events_total{result}) and so are events beyond max_buffered.
class DeliveryEventWriter {
 public:
  // pg must outlive the writer.
  explicit DeliveryEventWriter(PgConnection& pg, size_t max_batch = 500, size_t max_buffered = 100000);
  ~DeliveryEventWriter();
  DeliveryEventWriter(const DeliveryEventWriter&) = delete;
  DeliveryEventWriter& operator=(const DeliveryEventWriter&) = delete;

  void add(DeliveryEvent e);
  bool idle() const { return buffered_.empty() && !writing_; }
  // done runs once everything added so far has been written (or failed); at once when idle.
  void when_idle(std::function<void()> done);

 private:
  void write_next();
  PgConnection& pg_;
  size_t max_batch_, max_buffered_;
  std::vector<DeliveryEvent> buffered_;
  bool writing_ = false;
  std::vector<std::function<void()>> idle_waiters_;
  // Replies may arrive after destruction (the connection outlives us): they check this first.
  std::shared_ptr<DeliveryEventWriter*> self_ = std::make_shared<DeliveryEventWriter*>(this);
};
// Every event of a job, oldest first (the last one is the current outcome).
void delivery_events_for_job(PgConnection& pg, const std::string& job_id,
                             std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb);
// At most `limit` events of an account with id > after_id, oldest first.
void delivery_events_for_account(PgConnection& pg, const std::string& account, int64_t after_id, int limit,
                                 std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb);

// The JSON object the API shows for one event.
std::string delivery_event_json(const DeliveryEvent& e);

}  // namespace deliverd::store
