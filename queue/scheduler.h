#pragma once
// The retry set (DESIGN.md "Redis keys": deliverd:retry, score = due time in ms). A deferred job
// leaves the stream and waits there; a promoter on every daemon moves due jobs back onto the
// stream. Both moves are single Lua scripts, so a job is never in neither place nor in both, and
// several daemons can promote at once without duplicating anything.
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/lifetime.h"
#include "core/outcome.h"
#include "core/timer.h"
#include "queue/redis_client.h"

namespace deliverd::queue {

struct SchedulerConfig {
  std::string stream = "deliverd:jobs", group = "deliverd", retry = "deliverd:retry", results = "deliverd:results",
              dead = "deliverd:dead";
  size_t results_maxlen = 1000000;
  size_t dead_maxlen = 100000;
  int poll_ms = 1000;   // how often due jobs are looked for
  size_t batch = 100;   // jobs moved per script run (a run blocks Redis for its duration: ~1 ms)
};

// What travels with a job between attempts. On the stream these are the fields `job` (or
// `job_z`, the same text raw-deflated, see core/deflate.h), `attempt`, `first_seen` and, after an
// SMTP reply, `last_code`, `last_enhanced`, `last_text` (the text through
// core::escape_utf8_lossless, so a peer's raw bytes survive every hop unchanged).
struct RetryItem {
  std::string payload;  // the job JSON exactly as the producer wrote it
  int attempt = 1;      // the attempt the job will make next
  int64_t first_seen_ms = 0;
  std::string reason;  // why the previous attempt was deferred (an outcome reason), for operators reading the set
  // The previous attempt's reply: a job that reaches its end while waiting still reports it.
  core::Reply last_reply;
  std::string account;  // the job's account, so erasure finds the member without inflating the job
};

class Scheduler {
 public:
  // The client must outlive the scheduler; callbacks of commands in flight do not touch it.
  Scheduler(uv_loop_t* loop, RedisClient& client, SchedulerConfig cfg);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Atomically: the item into the retry set at due_ms, the event (if not empty) onto the results
  // stream, and the stream entry acked and deleted — if it is still in the stream (a re-run does
  // nothing). cb(false) leaves the entry pending and the set unchanged.
  void defer_and_ack(const std::string& entry_id, const RetryItem& item, int64_t due_ms, const std::string& event_json,
                     std::function<void(bool ok)> cb);

  // Starts promoting due jobs every poll_ms, with now_ms() as the clock (injected for tests).
  void start(std::function<int64_t()> now_ms);
  // Runs one promotion now; cb gets how many jobs were moved, or -1 on error.
  void promote_once(std::function<void(long long moved)> cb = nullptr);
  void stop();

 private:
  RedisClient& client_;
  SchedulerConfig cfg_;
  std::function<int64_t()> now_ms_;
  core::TimerHandle timer_;  // the promoter's poll
  // Replies may arrive after stop(): they do nothing once it has ended.
  core::Lifetime alive_;
  bool promoting_ = false;
};

// The retry-set member for an item: a one-line header, then the reply text, then the job (raw
// deflate when that is smaller). Identical deferrals of one job give identical members, so they
// collapse. The header is "r2 <attempt> <first_seen> <account> <reason> <code> <enhanced> <text
// bytes> <z|->"; "0" and "-" stand for an absent reply code and an absent word.
std::string encode_retry_item(const RetryItem& item);

// Lua that defines retry_item(member): a table with job, compressed, attempt, first_seen,
// account and, after a reply, code, enhanced and text; nil when the member is not a retry item.
// Members in the JSON form of earlier versions decode too (they have no account). Scripts that
// read the set (the promoter, account erasure) start with it, so there is one reader.
extern const char* const kRetryItemLua;

}  // namespace deliverd::queue
