#include "queue/lag_monitor.h"

#include "core/metrics.h"
#include "queue/retry_policy.h"

namespace deliverd::queue {
namespace {

struct Gauges {
  core::Gauge& length;
  core::Gauge& pending;
  core::Gauge& oldest;
  core::Gauge& retry;
  static Gauges& get() {
    auto& r = core::Registry::global();
    static Gauges g{
        r.gauge("deliverd_queue_stream_length", "Entries in the job stream (XLEN)").get(),
        r.gauge("deliverd_queue_pending", "Entries handed to consumers of the group and not yet acked").get(),
        r.gauge("deliverd_queue_oldest_pending_age_seconds", "Age of the oldest pending entry, from its id").get(),
        r.gauge("deliverd_retry_scheduled", "Deferred jobs waiting in the retry set").get(),
    };
    return g;
  }
};

}  // namespace

LagMonitor::LagMonitor(uv_loop_t* loop, RedisClient& client, LagMonitorConfig cfg, std::function<int64_t()> now_ms)
    : client_(client), cfg_(std::move(cfg)), now_ms_(std::move(now_ms)), timer_(loop) {
  Gauges::get();
  timer_->start_repeating(0, static_cast<uint64_t>(cfg_.interval_ms), [this] { poll(); });
}

LagMonitor::~LagMonitor() = default;  // the timer closes itself; replies find alive_ ended

void LagMonitor::poll() {
  if (!client_.connected()) return;
  auto& g = Gauges::get();
  client_.command({"XLEN", cfg_.stream}, [&g](const RedisReply& r) {
    if (r.type == RedisReply::Type::Integer) g.length.set(static_cast<double>(r.integer));
  });
  client_.command({"ZCARD", cfg_.retry}, [&g](const RedisReply& r) {
    if (r.type == RedisReply::Type::Integer) g.retry.set(static_cast<double>(r.integer));
  });
  // Summary form: [count, smallest id, greatest id, [[consumer, count]…]].
  client_.command({"XPENDING", cfg_.stream, cfg_.group}, [this, &g, alive = alive_.token()](const RedisReply& r) {
    if (r.type != RedisReply::Type::Array || r.elements.size() < 2) return;
    g.pending.set(static_cast<double>(r.elements[0].integer));
    int64_t oldest = entry_id_ms(r.elements[1].str);
    if (!alive) return;
    oldest_pending_age_s_ = r.elements[0].integer == 0 || oldest == 0
                                ? 0.0
                                : static_cast<double>(std::max<int64_t>(0, now_ms_() - oldest)) / 1000.0;
    g.oldest.set(oldest_pending_age_s_);
  });
}

}  // namespace deliverd::queue
