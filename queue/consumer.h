#pragma once
// Reads jobs from the stream through a consumer group, with flow control: never more than
// max_inflight entries, nor (beyond one read) more than max_inflight_bytes of them, handed out
// and not yet done(). Uses its own RedisClient because XREADGROUP BLOCK holds the connection;
// acks go through the Publisher's client.
//
// Intake order. Every entry handed out starts work on the loop at once (parse, the policy gate's
// admit, then compose and DKIM when the admit answers), so a read's batch handed out in one
// callback would keep every SMTP reply and every outcome write waiting behind it — and a 250
// left unread is a duplicate if the process dies then. So a read's entries are queued and handed
// out in slices from an idle handle, one slice a turn from the turn after the read: at most
// hand_out_slice entries, and at most hand_out_budget_us of their on_entry time. Between two
// slices the loop polls, so replies that arrived meanwhile (SMTP, and the Redis replies of
// outcome writes) are processed before more jobs are taken. The next read is made only once
// the queue is empty, so a read never brings more than the slices about to be handed out.
// Queued entries count against max_inflight and max_inflight_bytes like entries in hand. They
// are pending for this consumer in Redis already: stop(), close() and a lost connection drop
// them unhanded, and they are taken again like any pending entry of ours (the next start's or
// reconnection's pending pass, or another consumer's reclaim), never lost and never handed
// twice. hold() does not stop the queue: its entries were read before the hold.
#include <uv.h>

#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "queue/redis_client.h"

namespace deliverd::queue {

struct ConsumerConfig {
  std::string stream = "deliverd:jobs", group = "deliverd", consumer;  // consumer: unique per daemon, stable across restarts
  int block_ms = 1000;
  size_t max_inflight = 256;
  size_t read_batch = 64;  // entries per read at most; fewer while entries are large (below)
  // Bytes (fields and values) of the entries handed out and not yet done: reading pauses at the
  // bound, so the memory held for jobs is bounded by it plus one read whatever producers send.
  size_t max_inflight_bytes = 128u << 20;
  // [redis] max_job_bytes. A read's reply may hold at most this plus 1 MiB; a read whose reply
  // would be larger is made again with half as many entries, down to one, and an entry too large
  // even alone is dead-lettered by a script inside Redis (it never crosses the network).
  size_t max_entry_bytes = 32u << 20;
  std::string dead = "deliverd:dead";  // where such an entry goes
  // Entries handed out per loop turn at most, and the on_entry time after which a turn's slice
  // ends early (see "Intake order" above).
  size_t hand_out_slice = 8;
  int hand_out_budget_us = 2000;
  size_t dead_maxlen = 100000;
  // Entries of another consumer idle this long are taken over (XAUTOCLAIM). Our own in-flight
  // entries are touched every third of it, and only while still ours (see renew_leases), so a
  // slow delivery is never taken and we never take one back.
  int claim_idle_ms = 2400 * 1000;
  int retry_min_ms = 250;   // reconnect backoff after a failure, doubling up to retry_max_ms
  int retry_max_ms = 5000;
};

struct StreamEntry {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;  // empty if the entry was deleted meanwhile
  // How many times the group has handed this entry out, this time included. Above 1 the entry
  // was being processed by a daemon that died (or it was reclaimed) — see Delivery's poison
  // check. Re-reading entries after a lost connection does not count.
  int deliveries = 1;
  size_t bytes = 0;  // fields and values together
  const std::string* field(std::string_view name) const;     // first field of that name, or nullptr
};

class Consumer {
 public:
  // Heap object (STYLE §1): freed after close(). on_entry is called on the loop for every entry
  // handed out; each must be answered with done(entry_id) once it is acked.
  static Consumer* create(uv_loop_t* loop, const RedisConfig& redis, const ConsumerConfig& cfg,
                          std::function<void(StreamEntry)> on_entry);

  // Connects, creates the group (XGROUP CREATE … 0 MKSTREAM, so jobs queued before the first
  // start are not skipped; BUSYGROUP is fine), hands out this consumer's own pending entries
  // first (those a previous run held), then new ones, and every claim interval takes over
  // entries other consumers left idle for claim_idle_ms. On a connection failure it reconnects
  // with backoff and goes through its pending entries again, leaving out those still in hand.
  void start();
  // Stops reading at once (the blocking read's connection is closed). Entries already handed
  // out stay pending until done(); entries never handed out stay pending for reclaim.
  void stop();
  // While held no new entry is read or claimed (Redis refuses writes: see queue/write_health.h);
  // entries in hand are unaffected. Released, reading resumes at once.
  void hold(bool on);
  bool held() const { return held_; }
  // Frees the slot of an entry handed out by on_entry; unknown ids are ignored.
  void done(const std::string& entry_id);
  size_t inflight() const { return inflight_.size(); }
  size_t inflight_bytes() const { return inflight_bytes_; }
  size_t read_batch() const { return batch_; }
  // Entries read and not yet handed out (the rest of a sliced batch).
  size_t queued() const { return queue_.size(); }
  // Reload: a lower bound takes effect as entries finish, a higher one at once.
  void set_max_inflight(size_t n);
  void set_max_inflight_bytes(size_t n);
  // Connected and the group exists: reading (or ready to read once a slot frees up).
  bool connected() const;
  // Idempotent; no on_entry call after it.
  void close();

 private:
  enum class Phase { Pending, New };
  // An entry of ours found pending. crashed: a previous run held it (this run never did), so
  // taking it counts a delivery; otherwise this run lost a read's reply and it does not.
  struct PendingRef {
    std::string id;
    int count = 0;
    bool crashed = false;
  };

  Consumer(uv_loop_t* loop, const RedisConfig& redis, const ConsumerConfig& cfg, std::function<void(StreamEntry)> cb);
  ~Consumer() = default;

  void open();
  void create_group();
  void on_ready();
  void read();
  void read_new();
  void on_read(const RedisReply& reply);
  void list_pending();
  void fetch_pending();
  void drop_oversized();
  // Entries taken over from others: their delivery counts are looked up, then handed out.
  void recover(std::vector<StreamEntry> entries);
  // Queues a read's entries and starts handing them out in slices.
  void hand_out(std::vector<StreamEntry> entries);
  void hand_out_slice();
  void drop_queue();
  static void on_idle(uv_idle_t* h);
  void grow_batch(size_t reply_bytes);
  void claim_tick();
  void renew_leases();
  void autoclaim();
  void reset(const std::string& reason, bool too_large);
  void drop_client();
  bool has_room() const;
  size_t room() const;  // entries one read may take
  static void on_retry(uv_timer_t* t);
  static void on_claim_timer(uv_timer_t* t);

  uv_loop_t* loop_;
  RedisConfig redis_cfg_;
  ConsumerConfig cfg_;
  std::function<void(StreamEntry)> on_entry_;
  RedisClient* client_ = nullptr;
  Phase phase_ = Phase::Pending;
  std::string pending_cursor_ = "-";
  bool pending_listed_ = false;  // every page of XPENDING has been read this pass
  std::deque<PendingRef> to_fetch_;
  // Pending at start-up, not yet taken: a previous run's entries (taking one counts a delivery).
  std::unordered_map<std::string, int> crashed_;
  bool first_pass_done_ = false;
  std::string fetching_alone_;  // the one entry a read of batch 1 is fetching
  std::string oversized_;       // too large for one reply: dead-letter it inside Redis next
  std::unordered_map<std::string, size_t> inflight_;  // id → bytes
  size_t inflight_bytes_ = 0;
  size_t batch_ = 1;
  // The largest entry seen lately (decaying by 1/1024 per entry handed out): reads ask for no
  // more entries of that size than one reply may hold, so large jobs do not fail read after read.
  size_t largest_ = 0;
  bool running_ = false;
  bool ready_ = false;
  bool closed_ = false;
  bool held_ = false;
  bool read_outstanding_ = false;
  bool delivering_ = false;
  bool claim_outstanding_ = false;
  size_t recovering_ = 0;  // entries whose delivery counts are being looked up
  std::deque<StreamEntry> queue_;  // read, not yet handed out, in id order
  size_t queued_bytes_ = 0;
  size_t held_entries() const { return inflight_.size() + recovering_ + queue_.size(); }
  std::string claim_cursor_ = "0-0";
  int retry_ms_ = 0;
  uv_timer_t retry_timer_{};
  uv_timer_t claim_timer_{};
  uv_idle_t slice_idle_{};  // active while queue_ holds entries
  int open_handles_ = 3;
};

}  // namespace deliverd::queue
