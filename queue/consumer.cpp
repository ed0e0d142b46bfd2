#include "queue/consumer.h"

#include <algorithm>
#include <unordered_map>

#include "core/log.h"
#include "core/metrics.h"

namespace deliverd::queue {
namespace {

core::Counter& consumed_counter() {
  static core::Counter& c =
      core::Registry::global().counter("deliverd_jobs_consumed_total", "Stream entries handed to the daemon").get();
  return c;
}

core::Counter& claimed_counter() {
  static core::Counter& c = core::Registry::global()
                                .counter("deliverd_jobs_reclaimed_total",
                                         "Stream entries taken over from consumers that left them idle (XAUTOCLAIM)")
                                .get();
  return c;
}

core::Gauge& inflight_gauge() {
  static core::Gauge& g =
      core::Registry::global().gauge("deliverd_queue_inflight", "Stream entries handed out and not yet acked").get();
  return g;
}

// One entry of an XREADGROUP reply: [id, [field, value, …]] (the list is nil when the entry was
// deleted while pending).
bool parse_entry(const RedisReply& r, StreamEntry& out) {
  if (r.type != RedisReply::Type::Array || r.elements.size() != 2) return false;
  if (r.elements[0].type != RedisReply::Type::String) return false;
  out.id = r.elements[0].str;
  const RedisReply& kv = r.elements[1];
  if (kv.type == RedisReply::Type::Nil) return true;
  if (kv.type != RedisReply::Type::Array || kv.elements.size() % 2 != 0) return false;
  for (size_t i = 0; i + 1 < kv.elements.size(); i += 2)
    out.fields.emplace_back(kv.elements[i].str, kv.elements[i + 1].str);
  return true;
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
  uv_timer_init(loop, &retry_timer_);
  retry_timer_.data = this;
  uv_timer_init(loop, &claim_timer_);
  claim_timer_.data = this;
  consumed_counter();
  claimed_counter();
  inflight_gauge();
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
    if (client_ == c) reset(reason);
  });
  c->connect([this, c](bool ok, const std::string& error) {
    if (client_ != c) return;
    if (ok) return create_group();
    reset(error);
  });
}

void Consumer::create_group() {
  RedisClient* c = client_;
  c->command({"XGROUP", "CREATE", cfg_.stream, cfg_.group, "0", "MKSTREAM"}, [this, c](const RedisReply& r) {
    if (client_ != c || r.connection_error) return;  // the disconnect handler deals with it
    if (r.is_error() && r.error_code() != "BUSYGROUP") return reset("XGROUP CREATE: " + r.str);
    retry_ms_ = cfg_.retry_min_ms;
    ready_ = true;
    // A restarted daemon first takes back what it held, so nothing waits for XAUTOCLAIM.
    phase_ = Phase::Pending;
    pending_cursor_ = "0";
    core::log_info("queue_consumer_ready",
                   {{"stream", cfg_.stream}, {"group", cfg_.group}, {"consumer", cfg_.consumer}});
    // A third of the claim idle time: leases are renewed well before anyone may take them.
    const auto interval = static_cast<uint64_t>(std::clamp(cfg_.claim_idle_ms / 3, 100, 60000));
    uv_timer_start(&claim_timer_, on_claim_timer, interval, interval);
    read();
  });
}

void Consumer::read() {
  if (!running_ || closed_ || read_outstanding_ || delivering_ || !client_ || !client_->connected()) return;
  if (held() >= cfg_.max_inflight) return;  // done() resumes
  const std::string count = std::to_string(std::min(cfg_.max_inflight - held(), cfg_.read_batch));
  std::vector<std::string> argv = {"XREADGROUP", "GROUP", cfg_.group, cfg_.consumer, "COUNT", count};
  int timeout = 0;
  if (phase_ == Phase::New) {
    argv.insert(argv.end(), {"BLOCK", std::to_string(cfg_.block_ms)});
    timeout = cfg_.block_ms + redis_cfg_.command_timeout_ms;
  }
  argv.insert(argv.end(), {"STREAMS", cfg_.stream, phase_ == Phase::New ? std::string(">") : pending_cursor_});
  read_outstanding_ = true;
  RedisClient* c = client_;
  c->command(std::move(argv), [this, c](const RedisReply& r) {
    if (client_ != c) return;
    read_outstanding_ = false;
    on_read(r);
  }, timeout);
}

void Consumer::on_read(const RedisReply& reply) {
  if (reply.connection_error) return;  // the disconnect handler deals with it
  if (reply.is_error()) return reset("XREADGROUP: " + reply.str);  // e.g. NOGROUP after the stream was deleted
  std::vector<StreamEntry> entries;
  if (reply.type == RedisReply::Type::Array) {
    for (const auto& stream : reply.elements) {
      if (stream.type != RedisReply::Type::Array || stream.elements.size() != 2 ||
          stream.elements[1].type != RedisReply::Type::Array)
        return reset("XREADGROUP: unexpected reply shape");
      for (const auto& e : stream.elements[1].elements) {
        StreamEntry entry;
        if (!parse_entry(e, entry)) return reset("XREADGROUP: unexpected entry shape");
        entries.push_back(std::move(entry));
      }
    }
  }
  if (phase_ == Phase::Pending) {
    if (entries.empty()) {
      phase_ = Phase::New;
    } else {
      pending_cursor_ = entries.back().id;
      return recover(std::move(entries));
    }
  }
  hand_out(std::move(entries));
  read();
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
  // While handing out a batch, done() must not start a read sized before the batch was counted.
  delivering_ = true;
  for (auto& entry : entries) {
    if (closed_) return;
    if (!inflight_.insert(entry.id).second) continue;  // already handed out and not done
    consumed_counter().inc();
    inflight_gauge().inc();
    on_entry_(std::move(entry));
  }
  delivering_ = false;
}

void Consumer::on_claim_timer(uv_timer_t* t) { static_cast<Consumer*>(t->data)->claim_tick(); }

void Consumer::claim_tick() {
  if (!running_ || closed_ || !ready_ || !client_ || !client_->connected()) return;
  renew_leases();
  autoclaim();
}

void Consumer::renew_leases() {
  if (inflight_.empty()) return;
  // XCLAIM … 0 … JUSTID resets the idle time of entries we still own without counting a
  // delivery; chunks keep each command small.
  std::vector<std::string> argv;
  auto flush = [&] {
    if (argv.size() > 5) client_->command(argv, [](const RedisReply&) {});
    argv = {"XCLAIM", cfg_.stream, cfg_.group, cfg_.consumer, "0"};
  };
  flush();
  for (const auto& id : inflight_) {
    argv.push_back(id);
    if (argv.size() >= 5 + 500) {
      argv.push_back("JUSTID");
      flush();
    }
  }
  if (argv.size() > 5) {
    argv.push_back("JUSTID");
    flush();
  }
}

void Consumer::autoclaim() {
  if (claim_outstanding_ || held() >= cfg_.max_inflight) return;
  const std::string count = std::to_string(std::min(cfg_.max_inflight - held(), cfg_.read_batch));
  claim_outstanding_ = true;
  RedisClient* c = client_;
  c->command({"XAUTOCLAIM", cfg_.stream, cfg_.group, cfg_.consumer, std::to_string(cfg_.claim_idle_ms), claim_cursor_,
              "COUNT", count},
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
               claimed_counter().inc(static_cast<double>(entries.size()));
               core::log_warn("queue_entries_reclaimed",
                              {{"stream", cfg_.stream}, {"count", std::to_string(entries.size())},
                               {"first", entries.front().id}});
               recover(std::move(entries));
             });
}

void Consumer::done(const std::string& entry_id) {
  if (inflight_.erase(entry_id) == 0) return;
  inflight_gauge().dec();
  read();
}

void Consumer::set_max_inflight(size_t n) {
  cfg_.max_inflight = n ? n : 1;
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
  uv_timer_stop(&claim_timer_);
}

void Consumer::reset(const std::string& reason) {
  drop_client();
  if (!running_ || closed_) return;
  core::log_warn("queue_consumer_retry",
                 {{"stream", cfg_.stream}, {"reason", reason}, {"retry_ms", std::to_string(retry_ms_)}});
  uv_timer_start(&retry_timer_, on_retry, static_cast<uint64_t>(retry_ms_), 0);
  retry_ms_ = std::min(retry_ms_ * 2, cfg_.retry_max_ms);
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
  closed_ = true;
  inflight_gauge().dec(static_cast<double>(inflight_.size()));
  inflight_.clear();
  on_entry_ = nullptr;
  auto closed = [](uv_handle_t* h) {
    auto* self = static_cast<Consumer*>(h->data);
    if (--self->open_timers_ == 0) delete self;
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&retry_timer_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&claim_timer_), closed);
}

}  // namespace deliverd::queue
