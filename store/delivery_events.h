#pragma once
// Delivery outcomes as rows: the daemon appends one per final or deferred outcome; the admin API
// reads them back by job id and exports them per account. The recipient is kept with its keyed
// hash (store/address_hash.h, column recipient_sha256) so erasing one address (store/accounts.h)
// can find its rows without the address.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "core/timer.h"
#include "store/address_hash.h"
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
  std::string message_id;  // delivered: the Message-ID sent, without brackets (inbound correlation)
  std::string created_at;  // RFC 3339, filled on reads
};

// One COPY (one round trip, one commit) for all of them. Peer text (reply, enhanced
// code, host, IP, TLS names, detail) is stored through core::escape_utf8_lossless, so bytes that
// are not UTF-8 (a Latin-1 reply) and NUL cannot make PostgreSQL refuse the row.
void insert_delivery_events(PgConnection& pg, const AddressHasher& addresses, const std::vector<DeliveryEvent>& events,
                            std::function<void(core::Result<core::Ok, std::string>)> cb);

// How the daemon appends its events: in batches of up to max_batch rows, each one COPY. A row
// waits at most gather_ms for others to join it (0: the first goes at once), and while one batch
// is on its way new rows gather for the next, so the cost is one round trip, one statement and one
// commit per batch rather than per outcome (PostgreSQL's CPU per row falls from ~35 µs in
// batches of 8 INSERTed rows to ~15 µs in COPYs of 100: docs/benchmarks.md), and the rate of
// outcomes cannot outrun the connection's queue. when_idle() writes what is gathered at once. A batch the server
// refuses is written again row by row, so one bad row costs only itself; a batch that failed
// because the connection did (no server verdict) is kept and tried again after a pause. Rows are
// best effort (the results stream is the record of truth): every row is counted by how it ended
// (deliverd_delivery_events_total{result}), and so are events beyond max_buffered.
class DeliveryEventWriter {
 public:
  // pg must outlive the writer (the writer's retry timer runs on pg's loop).
  DeliveryEventWriter(PgConnection& pg, AddressHasher addresses, size_t max_batch = 500, size_t max_buffered = 100000,
                      uint64_t gather_ms = 0);
  ~DeliveryEventWriter();
  DeliveryEventWriter(const DeliveryEventWriter&) = delete;
  DeliveryEventWriter& operator=(const DeliveryEventWriter&) = delete;

  void add(DeliveryEvent e);
  bool idle() const { return buffered_.empty() && !writing_; }
  // done runs once everything added so far has been written (or failed); at once when idle.
  void when_idle(std::function<void()> done);

 private:
  void write_next();
  void schedule();  // writes now when a batch is full or someone waits, else within gather_ms
  void write_rows_alone(std::vector<DeliveryEvent> batch);
  void finished();
  PgConnection& pg_;
  AddressHasher addresses_;
  size_t max_batch_, max_buffered_;
  uint64_t gather_ms_;
  core::TimerHandle gather_timer_;
  bool gathering_ = false;
  std::vector<DeliveryEvent> buffered_;
  bool writing_ = false;
  uint64_t retry_ms_ = 0;
  core::TimerHandle retry_timer_;
  std::vector<std::function<void()>> idle_waiters_;
  // Replies may arrive after destruction (the connection outlives us): they check this first.
  std::shared_ptr<DeliveryEventWriter*> self_ = std::make_shared<DeliveryEventWriter*>(this);
};

// Retention ([postgres] events_retention_days): rows older than that are removed in batches of
// `batch`, oldest first, one statement each, with a pause between batches so the table's other
// users are not held up; once a pass finds nothing more to remove it waits `interval_ms`. The
// last status of each job whose rows go is kept in delivery_event_tombstones (no recipient, no
// reply) for as long again, which is how a lookup tells an aged-out message from an unknown one.
// Several daemons may run this: an advisory lock lets one pass run at a time.
struct RetentionConfig {
  int days = 90;  // 0: keep every row
  size_t batch = 5000;
  uint64_t interval_ms = 3'600'000;
  uint64_t pause_ms = 200;
};

class DeliveryEventRetention {
 public:
  // pg must outlive it; its timer runs on pg's loop.
  DeliveryEventRetention(PgConnection& pg, RetentionConfig cfg);
  ~DeliveryEventRetention();
  DeliveryEventRetention(const DeliveryEventRetention&) = delete;
  DeliveryEventRetention& operator=(const DeliveryEventRetention&) = delete;
  // The first pass starts after first_ms.
  void start(uint64_t first_ms = 60'000);
  // Reload: applies from the next pass.
  void set_days(int days) { cfg_.days = days; }
  // One pass now (every batch until nothing old is left); done gets the rows and tombstones
  // removed, or -1 on an error.
  void run_pass(std::function<void(int64_t rows, int64_t tombstones)> done = {});

 private:
  void next_batch(int64_t rows, int64_t tombstones, std::function<void(int64_t, int64_t)> done);
  PgConnection& pg_;
  RetentionConfig cfg_;
  core::TimerHandle timer_;
  bool running_ = false;
  std::shared_ptr<DeliveryEventRetention*> self_ = std::make_shared<DeliveryEventRetention*>(this);
};

// The aged-out marker of a job, if its rows were removed by retention.
struct AgedOutJob {
  std::string job_id, account, last_status;
  std::string last_event_at, aged_at;  // RFC 3339
};
void aged_out_jobs(PgConnection& pg, const std::string& job_id,
                   std::function<void(core::Result<std::vector<AgedOutJob>, std::string>)> cb);

// Every event of a job, oldest first (the last one is the current outcome). Job ids are per
// account: nullopt reads the id in every account.
void delivery_events_for_job(PgConnection& pg, const std::optional<std::string>& account, const std::string& job_id,
                             std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb);
// At most `limit` events of an account with id > after_id, oldest first.
void delivery_events_for_account(PgConnection& pg, const std::string& account, int64_t after_id, int limit,
                                 std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb);

// The delivered message a signal read from the mailbox's inbox is about: by one of its
// Message-IDs (most telling first), else the newest delivery to `recipient` from that mailbox
// within window_s. nullopt when neither finds one.
struct SentMessage {
  std::string job_id, recipient, message_id;
  bool by_message_id = false;  // false: matched by recipient and time
};
void find_sent_message(PgConnection& pg, const AddressHasher& addresses, const std::string& account,
                       const std::string& mailbox, const std::vector<std::string>& message_ids,
                       const std::string& recipient, int64_t window_s,
                       std::function<void(core::Result<std::optional<SentMessage>, std::string>)> cb);

// The JSON object the API shows for one event.
std::string delivery_event_json(const DeliveryEvent& e);

}  // namespace deliverd::store
