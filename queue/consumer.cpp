#include "queue/consumer.h"

#include <algorithm>

#include "core/log.h"
#include "core/metrics.h"
#include "queue/lua_script.h"

namespace deliverd::queue {
namespace {

struct Metrics {
  core::Counter& consumed;
  core::Counter& reclaimed;
  core::Gauge& inflight;
  core::Gauge& inflight_bytes;
  core::Gauge& batch;
  core::Gauge& queued;
  core::Counter& leases_lost;
  core::Counter& too_large;
  static Metrics& get() {
    auto& r = core::Registry::global();
    static Metrics m{
        r.counter("deliverd_jobs_consumed_total", "Stream entries handed to the daemon").get(),
        r.counter("deliverd_jobs_reclaimed_total",
                  "Stream entries taken over from consumers that left them idle (XAUTOCLAIM)")
            .get(),
        r.gauge("deliverd_queue_inflight", "Stream entries handed out and not yet acked").get(),
        r.gauge("deliverd_queue_inflight_bytes", "Bytes of the stream entries handed out and not yet acked").get(),
        r.gauge("deliverd_queue_read_batch",
                "Entries one read asks for now: [redis] read batch, halved while replies are too large")
            .get(),
        r.gauge("deliverd_queue_intake_queued",
                "Entries read and waiting for their slice of the intake (handed out a few per loop turn)")
            .get(),
        r.counter("deliverd_queue_leases_lost_total",
                  "In-flight entries found pending for another consumer (or no longer pending) at lease renewal")
            .get(),
        r.counter("deliverd_queue_entries_too_large_total",
                  "Entries too large for one read, dead-lettered inside Redis without being read")
            .get(),
    };
    return m;
  }
};

// Renews this consumer's leases, and only those: a plain XCLAIM … 0 would also take an entry
// another consumer has claimed meanwhile (after a stall of ours longer than claim_idle), and
// both would then work on it. Here the owner is checked first, atomically with the claim.
// KEYS: 1 job stream. ARGV: 1 group, 2 consumer, 3… entry ids. XCLAIM … JUSTID resets the idle
// time without counting a delivery. Returns the ids that are not pending for this consumer.
const LuaScript kRenew{R"lua(
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
)lua"};

// Takes our own pending entries for handing out, each only while it is still pending for this
// consumer (another consumer may have taken it over meanwhile: that one is left alone). With
// ARGV[3] = '1' (a previous run's entry) XCLAIM counts the delivery; with '0' (an entry whose
// read reply this run lost) XRANGE reads it without counting. An entry deleted from the stream
// while pending is acked here, since there is nothing left to deliver.
// KEYS: 1 job stream. ARGV: 1 group, 2 consumer, 3 count ('1'/'0'), 4… ids. Returns the entries.
const LuaScript kTakeOwn{R"lua(
local out = {}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    local e
    if ARGV[3] == '1' then
      e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i])
    else
      e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
    end
    if #e == 1 then out[#out + 1] = e[1] else redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) end
  end
end
return out
)lua"};

// An entry too large to be read even alone is dead-lettered where it lies: its size and the
// start of its job go to the dead letters, and it is acked and deleted. Only an entry pending
// for this consumer, and only if it really is over the bound.
// KEYS: 1 job stream, 2 dead letters. ARGV: 1 group, 2 consumer, 3 entry id, 4 max bytes,
// 5 dead letters' MAXLEN, 6 bytes of the job kept. Returns the entry's size, 0 when it is not
// ours (or gone), -1 when it is within the bound.
const LuaScript kDropOversized{R"lua(
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
local size, job = 0, ''
if #e == 1 then
  local f = e[1][2]
  for i = 1, #f, 2 do
    size = size + #f[i] + #f[i + 1]
    if f[i] == 'job' and job == '' then job = string.sub(f[i + 1], 1, tonumber(ARGV[6])) end
  end
end
if #e == 1 and size <= tonumber(ARGV[4]) then return -1 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'job', job, 'reason',
  'job: the entry is ' .. size .. ' bytes, larger than [redis] max_job_bytes (' .. ARGV[4] ..
  '); only its first ' .. ARGV[6] .. ' bytes are kept here')
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return math.max(size, 1)
)lua"};

constexpr size_t kPendingPage = 1000;
constexpr size_t kRenewChunk = 500;
constexpr size_t kReplySlack = 1u << 20;  // a reply's framing and other fields beyond one entry
constexpr const char* kKeptJobBytes = "4096";

// One entry of an XREADGROUP / XCLAIM / XRANGE reply: [id, [field, value, …]] (the list is nil
// when the entry was deleted while pending).
bool parse_entry(const RedisReply& r, StreamEntry& out) {
  if (r.type != RedisReply::Type::Array || r.elements.size() != 2) return false;
  if (r.elements[0].type != RedisReply::Type::String) return false;
  out.id = r.elements[0].str;
  const RedisReply& kv = r.elements[1];
  if (kv.type == RedisReply::Type::Nil) return true;
  if (kv.type != RedisReply::Type::Array || kv.elements.size() % 2 != 0) return false;
  for (size_t i = 0; i + 1 < kv.elements.size(); i += 2) {
    out.bytes += kv.elements[i].str.size() + kv.elements[i + 1].str.size();
    out.fields.emplace_back(kv.elements[i].str, kv.elements[i + 1].str);
  }
  return true;
}

bool parse_entries(const RedisReply& list, std::vector<StreamEntry>& out) {
  if (list.type == RedisReply::Type::Nil) return true;
  if (list.type != RedisReply::Type::Array) return false;
  for (const auto& e : list.elements) {
    StreamEntry entry;
    if (!parse_entry(e, entry)) return false;
    out.push_back(std::move(entry));
  }
  return true;
}

size_t total_bytes(const std::vector<StreamEntry>& entries) {
  size_t n = 0;
  for (const auto& e : entries) n += e.bytes;
  return n;
}

}  // namespace

const std::string* StreamEntry::field(std::string_view name) const {
  for (const auto& [k, v] : fields)
    if (k == name) return &v;
  return nullptr;
}

Consumer* Consumer::create(uv_loop_t* loop, const RedisConfig& redis, const ConsumerConfig& cfg,
                           std::function<void(StreamEntry)> on_entry) {
  return new Consumer(loop, redis, cfg, std::move(on_entry));
}

Consumer::Consumer(uv_loop_t* loop, const RedisConfig& redis, const ConsumerConfig& cfg,
                   std::function<void(StreamEntry)> cb)
    : loop_(loop), redis_cfg_(redis), cfg_(cfg), on_entry_(std::move(cb)) {
  if (cfg_.max_inflight == 0) cfg_.max_inflight = 1;
  if (cfg_.consumer.empty()) cfg_.consumer = "deliverd";
  if (cfg_.read_batch == 0) cfg_.read_batch = 1;
  if (cfg_.claim_idle_ms < 1) cfg_.claim_idle_ms = 1;
  if (cfg_.max_inflight_bytes == 0) cfg_.max_inflight_bytes = 1;
  if (cfg_.hand_out_slice == 0) cfg_.hand_out_slice = 1;
  // One entry within max_entry_bytes always fits in a reply: that is what lets the halving of
  // the read batch end at one entry that can be read.
  redis_cfg_.max_reply_bytes = cfg_.max_entry_bytes + kReplySlack;
  batch_ = cfg_.read_batch;
  uv_timer_init(loop, &retry_timer_);
  retry_timer_.data = this;
  uv_timer_init(loop, &claim_timer_);
  claim_timer_.data = this;
  uv_idle_init(loop, &slice_idle_);
  slice_idle_.data = this;
  Metrics::get().batch.set(static_cast<double>(batch_));
}

void Consumer::start() {
  if (closed_ || running_) return;
  running_ = true;
  retry_ms_ = cfg_.retry_min_ms;
  open();
}

void Consumer::open() {
  client_ = RedisClient::create(loop_, redis_cfg_);
  RedisClient* c = client_;
  c->set_disconnect_handler([this, c](const std::string& reason) {
    if (client_ == c) reset(reason, c->failed_on_large_reply());
  });
  c->connect([this, c](bool ok, const std::string& error) {
    if (client_ != c) return;
    if (ok) return create_group();
    reset(error, false);
  });
}

void Consumer::create_group() {
  RedisClient* c = client_;
  c->command({"XGROUP", "CREATE", cfg_.stream, cfg_.group, "0", "MKSTREAM"}, [this, c](const RedisReply& r) {
    if (client_ != c || r.connection_error) return;  // the disconnect handler deals with it
    if (r.is_error() && r.error_code() != "BUSYGROUP") return reset("XGROUP CREATE: " + r.str, false);
    on_ready();
  });
}

void Consumer::on_ready() {
  retry_ms_ = cfg_.retry_min_ms;
  ready_ = true;
  // Every (re)connection first goes through our own pending entries: after a restart those are
  // what the previous run held, after a lost connection those a lost reply never brought.
  phase_ = Phase::Pending;
  pending_cursor_ = "-";
  pending_listed_ = false;
  to_fetch_.clear();
  core::log_info("queue_consumer_ready", {{"stream", cfg_.stream}, {"group", cfg_.group}, {"consumer", cfg_.consumer}});
  // A third of the claim idle time: leases are renewed well before anyone may take them.
  const auto interval = static_cast<uint64_t>(std::clamp(cfg_.claim_idle_ms / 3, 100, 60000));
  uv_timer_start(&claim_timer_, on_claim_timer, interval, interval);
  if (!oversized_.empty()) return drop_oversized();
  read();
}

bool Consumer::has_room() const {
  return !held_ && held_entries() < cfg_.max_inflight && inflight_bytes_ + queued_bytes_ < cfg_.max_inflight_bytes;
}

size_t Consumer::room() const {
  size_t n = std::min(cfg_.max_inflight - held_entries(), batch_);
  if (largest_ > 0) n = std::min(n, std::max<size_t>(1, redis_cfg_.max_reply_bytes / largest_));
  return n;
}

void Consumer::read() {
  // A read waits for the queue to empty: it is sized by what can be handed out next.
  if (!running_ || closed_ || read_outstanding_ || delivering_ || !queue_.empty() || !client_ ||
      !client_->connected())
    return;
  if (phase_ == Phase::Pending) {
    if (!to_fetch_.empty()) return fetch_pending();
    if (!pending_listed_) return list_pending();
    phase_ = Phase::New;
    first_pass_done_ = true;
    crashed_.clear();  // all taken (or gone) by now
  }
  read_new();
}

void Consumer::read_new() {
  if (!has_room()) return;  // done() and hold(false) resume
  std::vector<std::string> argv = {"XREADGROUP", "GROUP", cfg_.group, cfg_.consumer, "COUNT", std::to_string(room()),
                                   "BLOCK", std::to_string(cfg_.block_ms), "STREAMS", cfg_.stream, ">"};
  read_outstanding_ = true;
  RedisClient* c = client_;
  c->command(std::move(argv), [this, c](const RedisReply& r) {
    if (client_ != c) return;
    read_outstanding_ = false;
    on_read(r);
  }, cfg_.block_ms + redis_cfg_.command_timeout_ms);
}

void Consumer::on_read(const RedisReply& reply) {
  if (reply.connection_error) return;  // the disconnect handler deals with it
  if (reply.is_error()) return reset("XREADGROUP: " + reply.str, false);  // e.g. NOGROUP after the stream was deleted
  std::vector<StreamEntry> entries;
  if (reply.type == RedisReply::Type::Array) {
    for (const auto& stream : reply.elements) {
      if (stream.type != RedisReply::Type::Array || stream.elements.size() != 2 ||
          !parse_entries(stream.elements[1], entries))
        return reset("XREADGROUP: unexpected reply shape", false);
    }
  }
  grow_batch(total_bytes(entries));
  hand_out(std::move(entries));
  read();
}

void Consumer::list_pending() {
  read_outstanding_ = true;
  RedisClient* c = client_;
  c->command({"XPENDING", cfg_.stream, cfg_.group, pending_cursor_, "+", std::to_string(kPendingPage), cfg_.consumer},
             [this, c](const RedisReply& r) {
               if (client_ != c) return;
               read_outstanding_ = false;
               if (r.connection_error) return;
               if (r.type != RedisReply::Type::Array) return reset("XPENDING: " + r.str, false);
               // [[id, consumer, idle ms, deliveries], …]
               for (const auto& p : r.elements) {
                 if (p.type != RedisReply::Type::Array || p.elements.size() != 4) continue;
                 const std::string& id = p.elements[0].str;
                 const int count = static_cast<int>(p.elements[3].integer);
                 pending_cursor_ = "(" + id;
                 if (inflight_.count(id)) continue;  // in hand: still being worked on, not re-read
                 if (!first_pass_done_) crashed_[id] = count;
                 to_fetch_.push_back({id, count, crashed_.count(id) > 0});
               }
               if (r.elements.size() < kPendingPage) pending_listed_ = true;
               read();
             });
}

void Consumer::fetch_pending() {
  if (!has_room()) return;
  // One kind per fetch, from the front, in id order: a previous run's entries are claimed (which
  // counts a delivery), entries whose reply this run lost are read again (which does not).
  const bool crashed = to_fetch_.front().crashed;
  auto refs = std::make_shared<std::vector<PendingRef>>();
  const size_t n = room();
  while (!to_fetch_.empty() && refs->size() < n && to_fetch_.front().crashed == crashed) {
    refs->push_back(std::move(to_fetch_.front()));
    to_fetch_.pop_front();
  }
  fetching_alone_ = refs->size() == 1 ? refs->front().id : std::string();
  std::vector<std::string> args = {"1", cfg_.stream, cfg_.group, cfg_.consumer, crashed ? "1" : "0"};
  for (const auto& r : *refs) args.push_back(r.id);
  read_outstanding_ = true;
  RedisClient* c = client_;
  c->eval(kTakeOwn, std::move(args), [this, c, refs](const RedisReply& r) {
    // A failed connection calls back before its disconnect handler runs, which needs to know
    // what was being fetched alone: leave that to it.
    if (client_ != c || r.connection_error) return;
    read_outstanding_ = false;
    fetching_alone_.clear();
    std::vector<StreamEntry> entries;
    if (r.is_error() || !parse_entries(r, entries))
      return reset("taking pending entries: " + (r.is_error() ? r.str : std::string("unexpected reply shape")), false);
    std::unordered_map<std::string_view, const PendingRef*> by_id;
    for (const auto& ref : *refs) by_id.emplace(ref.id, &ref);
    for (auto& e : entries) {
      auto it = by_id.find(e.id);
      if (it != by_id.end()) e.deliveries = it->second->count + (it->second->crashed ? 1 : 0);
    }
    for (const auto& ref : *refs) crashed_.erase(ref.id);
    grow_batch(total_bytes(entries));
    hand_out(std::move(entries));
    read();
  });
}

void Consumer::drop_oversized() {
  read_outstanding_ = true;
  RedisClient* c = client_;
  const std::string id = oversized_;
  c->eval(kDropOversized,
          {"2", cfg_.stream, cfg_.dead, cfg_.group, cfg_.consumer, id, std::to_string(cfg_.max_entry_bytes),
           std::to_string(cfg_.dead_maxlen), kKeptJobBytes},
          [this, c, id](const RedisReply& r) {
            if (client_ != c) return;
            read_outstanding_ = false;
            if (r.connection_error) return;  // tried again after the reconnect
            oversized_.clear();
            if (r.type == RedisReply::Type::Integer && r.integer > 0) {
              Metrics::get().too_large.inc();
              core::log_warn("job_dead_lettered", {{"entry", id},
                                                   {"reason", "too_large"},
                                                   {"bytes", std::to_string(r.integer)},
                                                   {"max_job_bytes", std::to_string(cfg_.max_entry_bytes)}});
            } else if (r.type != RedisReply::Type::Integer || r.integer < 0) {
              core::log_error("queue_oversized_entry_not_dropped",
                              {{"entry", id}, {"reply", r.is_error() ? r.str : std::to_string(r.integer)}});
            }
            read();
          });
}

void Consumer::grow_batch(size_t reply_bytes) {
  // Replies well below the bound: the batch grows back towards read_batch.
  if (batch_ < cfg_.read_batch && reply_bytes * 4 < redis_cfg_.max_reply_bytes) {
    batch_ = std::min(cfg_.read_batch, batch_ * 2);
    Metrics::get().batch.set(static_cast<double>(batch_));
  }
}

void Consumer::recover(std::vector<StreamEntry> entries) {
  std::erase_if(entries, [this](const StreamEntry& e) { return inflight_.count(e.id) > 0; });
  if (entries.empty()) return read();
  // One range query for the batch (entries come sorted by id); COUNT covers every entry of ours
  // that can lie in the range: those in flight plus this batch.
  const std::string count = std::to_string(inflight_.size() + entries.size() + 16);
  recovering_ += entries.size();
  RedisClient* c = client_;
  const size_t n = entries.size();
  // The argument list must not read `entries` once the callback has moved it away.
  std::vector<std::string> argv = {"XPENDING", cfg_.stream, cfg_.group, entries.front().id, entries.back().id, count,
                                   cfg_.consumer};
  c->command(std::move(argv),
             [this, c, n, entries = std::move(entries)](const RedisReply& r) mutable {
               if (client_ != c) return;
               recovering_ -= n;
               if (r.connection_error) return;
               if (r.type == RedisReply::Type::Array) {
                 std::unordered_map<std::string_view, long long> counts;
                 for (const auto& p : r.elements)
                   if (p.type == RedisReply::Type::Array && p.elements.size() == 4)
                     counts[p.elements[0].str] = p.elements[3].integer;
                 for (auto& e : entries)
                   if (auto it = counts.find(e.id); it != counts.end()) e.deliveries = static_cast<int>(it->second);
               }
               hand_out(std::move(entries));
               read();
             });
}

void Consumer::hand_out(std::vector<StreamEntry> entries) {
  if (closed_ || entries.empty()) return;
  Metrics::get().queued.inc(static_cast<double>(entries.size()));
  for (auto& e : entries) {
    queued_bytes_ += e.bytes;
    queue_.push_back(std::move(e));
  }
  // Not from this reply's callback: the first slice too waits for the next turn, so that the
  // replies of this poll phase, and those of the next, come before it.
  uv_idle_start(&slice_idle_, on_idle);
}

void Consumer::hand_out_slice() {
  // While handing out, done() must not start a read sized before the slice was counted.
  delivering_ = true;
  auto& m = Metrics::get();
  const uint64_t start = uv_hrtime(), budget_ns = static_cast<uint64_t>(cfg_.hand_out_budget_us) * 1000;
  for (size_t n = 0; n < cfg_.hand_out_slice && !queue_.empty() && !closed_; ++n) {
    if (n > 0 && uv_hrtime() - start >= budget_ns) break;
    StreamEntry entry = std::move(queue_.front());
    queue_.pop_front();
    m.queued.dec();
    const size_t bytes = entry.bytes;
    queued_bytes_ -= bytes;
    if (!inflight_.emplace(entry.id, bytes).second) continue;  // already handed out and not done
    inflight_bytes_ += bytes;
    largest_ = std::max(bytes, largest_ - largest_ / 1024);
    m.consumed.inc();
    m.inflight.inc();
    m.inflight_bytes.inc(static_cast<double>(bytes));
    on_entry_(std::move(entry));
  }
  delivering_ = false;
  // The rest on the next turns (the idle handle stays active meanwhile, which also keeps the poll
  // phase between two slices from waiting: it only runs what has arrived).
  if (queue_.empty() && !closed_) uv_idle_stop(&slice_idle_);
}

void Consumer::on_idle(uv_idle_t* h) {
  auto* self = static_cast<Consumer*>(h->data);
  self->hand_out_slice();
  self->read();
}

void Consumer::drop_queue() {
  // Pending for us in Redis: taken again by the next pending pass or a reclaim.
  Metrics::get().queued.dec(static_cast<double>(queue_.size()));
  queue_.clear();
  queued_bytes_ = 0;
  if (!closed_) uv_idle_stop(&slice_idle_);
}

void Consumer::on_claim_timer(uv_timer_t* t) { static_cast<Consumer*>(t->data)->claim_tick(); }

void Consumer::claim_tick() {
  if (!running_ || closed_ || !ready_ || !client_ || !client_->connected()) return;
  renew_leases();
  autoclaim();
}

void Consumer::renew_leases() {
  if (inflight_.empty()) return;
  std::vector<std::string> args;
  auto flush = [&] {
    if (args.size() > 4) {
      args[0] = "1";
      client_->eval(kRenew, std::move(args), [stream = cfg_.stream](const RedisReply& r) {
        if (r.type != RedisReply::Type::Array) return;
        for (const auto& id : r.elements) {
          Metrics::get().leases_lost.inc();
          core::log_warn("queue_lease_lost",
                         {{"stream", stream}, {"entry", id.str},
                          {"note", "no longer pending for this consumer: acked, or taken over by another"}});
        }
      });
    }
    args = {"1", cfg_.stream, cfg_.group, cfg_.consumer};
  };
  flush();
  for (const auto& [id, bytes] : inflight_) {
    args.push_back(id);
    if (args.size() >= 4 + kRenewChunk) flush();
  }
  flush();
}

void Consumer::autoclaim() {
  if (claim_outstanding_ || !has_room()) return;
  claim_outstanding_ = true;
  RedisClient* c = client_;
  c->command({"XAUTOCLAIM", cfg_.stream, cfg_.group, cfg_.consumer, std::to_string(cfg_.claim_idle_ms), claim_cursor_,
              "COUNT", std::to_string(room())},
             [this, c](const RedisReply& r) {
               if (client_ != c) return;
               claim_outstanding_ = false;
               if (r.connection_error) return;
               // [next cursor, [entries…], [deleted ids…]] (Redis 7); entries as in XREADGROUP.
               if (r.is_error() || r.type != RedisReply::Type::Array || r.elements.size() < 2 ||
                   r.elements[1].type != RedisReply::Type::Array) {
                 core::log_warn("queue_autoclaim_failed", {{"stream", cfg_.stream}, {"reason", r.str}});
                 return;
               }
               claim_cursor_ = r.elements[0].str.empty() ? "0-0" : r.elements[0].str;
               std::vector<StreamEntry> entries;
               for (const auto& e : r.elements[1].elements) {
                 StreamEntry entry;
                 if (parse_entry(e, entry)) entries.push_back(std::move(entry));
               }
               if (entries.empty()) return;
               Metrics::get().reclaimed.inc(static_cast<double>(entries.size()));
               core::log_warn("queue_entries_reclaimed",
                              {{"stream", cfg_.stream}, {"count", std::to_string(entries.size())},
                               {"first", entries.front().id}});
               grow_batch(total_bytes(entries));
               recover(std::move(entries));
             });
}

void Consumer::done(const std::string& entry_id) {
  auto it = inflight_.find(entry_id);
  if (it == inflight_.end()) return;
  inflight_bytes_ -= it->second;
  auto& m = Metrics::get();
  m.inflight.dec();
  m.inflight_bytes.dec(static_cast<double>(it->second));
  inflight_.erase(it);
  read();
}

void Consumer::hold(bool on) {
  if (held_ == on) return;
  held_ = on;
  core::log_info(on ? "queue_intake_held" : "queue_intake_resumed", {{"stream", cfg_.stream}});
  if (!on) read();
}

void Consumer::set_max_inflight(size_t n) {
  cfg_.max_inflight = n ? n : 1;
  read();
}

void Consumer::set_max_inflight_bytes(size_t n) {
  cfg_.max_inflight_bytes = n ? n : 1;
  read();
}

bool Consumer::connected() const { return ready_ && client_ && client_->connected(); }

void Consumer::drop_client() {
  if (client_) client_->close();
  client_ = nullptr;
  ready_ = false;
  read_outstanding_ = false;
  claim_outstanding_ = false;
  recovering_ = 0;  // their callbacks were dropped with the client; the entries stay pending
  drop_queue();
  uv_timer_stop(&claim_timer_);
}

void Consumer::reset(const std::string& reason, bool too_large) {
  if (too_large) {
    // The same read would fail the same way: fewer entries next time, and an entry that did not
    // fit alone is dead-lettered inside Redis.
    if (!fetching_alone_.empty())
      oversized_ = fetching_alone_;
    else
      batch_ = std::max<size_t>(1, batch_ / 2);
    Metrics::get().batch.set(static_cast<double>(batch_));
    core::log_warn("queue_read_too_large", {{"stream", cfg_.stream},
                                            {"max_reply_bytes", std::to_string(redis_cfg_.max_reply_bytes)},
                                            {"batch", std::to_string(batch_)},
                                            {"entry", oversized_}});
  }
  fetching_alone_.clear();
  drop_client();
  if (!running_ || closed_) return;
  const int delay = too_large ? cfg_.retry_min_ms : retry_ms_;
  core::log_warn("queue_consumer_retry",
                 {{"stream", cfg_.stream}, {"reason", reason}, {"retry_ms", std::to_string(delay)}});
  uv_timer_start(&retry_timer_, on_retry, static_cast<uint64_t>(delay), 0);
  if (!too_large) retry_ms_ = std::min(retry_ms_ * 2, cfg_.retry_max_ms);
}

void Consumer::on_retry(uv_timer_t* t) {
  auto* self = static_cast<Consumer*>(t->data);
  if (self->running_ && !self->closed_ && !self->client_) self->open();
}

void Consumer::stop() {
  if (!running_) return;
  running_ = false;
  uv_timer_stop(&retry_timer_);
  drop_client();
}

void Consumer::close() {
  if (closed_) return;
  stop();
  drop_queue();
  closed_ = true;
  auto& m = Metrics::get();
  m.inflight.dec(static_cast<double>(inflight_.size()));
  m.inflight_bytes.dec(static_cast<double>(inflight_bytes_));
  inflight_.clear();
  inflight_bytes_ = 0;
  on_entry_ = nullptr;
  auto closed = [](uv_handle_t* h) {
    auto* self = static_cast<Consumer*>(h->data);
    if (--self->open_handles_ == 0) delete self;
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&retry_timer_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&claim_timer_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&slice_idle_), closed);
}

}  // namespace deliverd::queue
