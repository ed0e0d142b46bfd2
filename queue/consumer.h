#pragma once
// Reads jobs from the stream through a consumer group, with flow control: never more than
// max_inflight entries handed out and not yet done(). Uses its own RedisClient because
// XREADGROUP BLOCK holds the connection; acks go through the Publisher's client.
#include <uv.h>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "queue/redis_client.h"

namespace deliverd::queue {

struct ConsumerConfig {
  std::string stream = "deliverd:jobs", group = "deliverd", consumer;  // consumer: unique per daemon, stable across restarts
  int block_ms = 1000;
  size_t max_inflight = 256;
  size_t read_batch = 64;  // entries per read: bounds one reply's size whatever max_inflight is
  // Entries of another consumer idle this long are taken over (XAUTOCLAIM). Our own in-flight
  // entries are touched (XCLAIM … JUSTID) every third of it, so a slow delivery is never taken.
  int claim_idle_ms = 2400 * 1000;
  int retry_min_ms = 250;   // reconnect backoff after a failure, doubling up to retry_max_ms
  int retry_max_ms = 5000;
};

struct StreamEntry {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;  // empty if the entry was deleted meanwhile
  // How many times the group has handed this entry out, this time included. Above 1 the entry
  // was being processed by a daemon that died (or it was reclaimed) — see Delivery's poison check.
  int deliveries = 1;
  const std::string* field(std::string_view name) const;     // first field of that name, or nullptr
};

class Consumer {
 public:
  // Heap object (STYLE §1): freed after close(). on_entry is called on the loop for every entry
  // handed out; each must be answered with done(entry_id) once it is acked.
  static Consumer* create(uv_loop_t* loop, const RedisConfig& redis, const ConsumerConfig& cfg,
                          std::function<void(StreamEntry)> on_entry);

  // Connects, creates the group (XGROUP CREATE … 0 MKSTREAM, so jobs queued before the first
  // start are not skipped; BUSYGROUP is fine), hands out this
  // consumer's own pending entries first (those a previous run held), then new ones, and every
  // claim interval takes over entries other consumers left idle for claim_idle_ms. On a
  // connection failure it reconnects with backoff and starts over from the pending entries.
  void start();
  // Stops reading at once (the blocking read's connection is closed). Entries already handed
  // out stay pending until done(); entries never handed out stay pending for reclaim.
  void stop();
  // Frees the slot of an entry handed out by on_entry; unknown ids are ignored.
  void done(const std::string& entry_id);
  size_t inflight() const { return inflight_.size(); }
  // Reload: a lower bound takes effect as entries finish, a higher one at once.
  void set_max_inflight(size_t n);
  // Connected and the group exists: reading (or ready to read once a slot frees up).
  bool connected() const;
  // Idempotent; no on_entry call after it.
  void close();

 private:
  enum class Phase { Pending, New };

  Consumer(uv_loop_t* loop, const RedisConfig& redis, const ConsumerConfig& cfg, std::function<void(StreamEntry)> cb);
  ~Consumer() = default;

  void open();
  void create_group();
  void read();
  void on_read(const RedisReply& reply);
  // Entries that were handed out before (own pending, claimed): their delivery counts are looked
  // up, then they are handed out.
  void recover(std::vector<StreamEntry> entries);
  void hand_out(std::vector<StreamEntry> entries);
  void claim_tick();
  void renew_leases();
  void autoclaim();
  void reset(const std::string& reason);
  void drop_client();
  static void on_retry(uv_timer_t* t);
  static void on_claim_timer(uv_timer_t* t);

  uv_loop_t* loop_;
  RedisConfig redis_cfg_;
  ConsumerConfig cfg_;
  std::function<void(StreamEntry)> on_entry_;
  RedisClient* client_ = nullptr;
  Phase phase_ = Phase::Pending;
  std::string pending_cursor_ = "0";
  std::unordered_set<std::string> inflight_;
  bool running_ = false;
  bool ready_ = false;
  bool closed_ = false;
  bool read_outstanding_ = false;
  bool delivering_ = false;
  bool claim_outstanding_ = false;
  size_t recovering_ = 0;  // entries whose delivery counts are being looked up
  size_t held() const { return inflight_.size() + recovering_; }
  std::string claim_cursor_ = "0-0";
  int retry_ms_ = 0;
  uv_timer_t retry_timer_{};
  uv_timer_t claim_timer_{};
  int open_timers_ = 2;
};

}  // namespace deliverd::queue
