#include "queue/write_health.h"

#include "core/log.h"
#include "core/metrics.h"

namespace deliverd::queue {
namespace {

// What write_refusal() names (queue/redis_client.h).
constexpr std::string_view kReasons[] = {"oom", "readonly", "misconf", "noreplicas"};

core::Family<core::Gauge>& refused_gauge() {
  static auto& f = core::Registry::global().gauge(
      "deliverd_redis_writes_refused",
      "1 while Redis refuses writes for this reason (no new job is taken meanwhile), else 0", {"reason"});
  return f;
}

}  // namespace

WriteHealth::WriteHealth(uv_loop_t* loop, RedisClient& client, WriteHealthConfig cfg)
    : client_(client), cfg_(std::move(cfg)), loop_(loop) {
  for (auto r : kReasons) refused_gauge().with({std::string(r)}).set(0);
  client_.set_write_refused_handler([this, alive = alive_.token()](std::string_view reason, const std::string& error) {
    if (alive) refused(reason, error);
  });
}

WriteHealth::~WriteHealth() {
  alive_.end();
  if (!reason_.empty()) refused_gauge().with({reason_}).set(0);
}

void WriteHealth::refused(std::string_view reason, const std::string& error) {
  if (!reason_.empty()) return;  // already held; the probe finds the end
  reason_ = std::string(reason);
  since_ms_ = uv_now(loop_);
  refused_gauge().with({reason_}).set(1);
  core::log_error("redis_writes_refused", {{"reason", reason_},
                                           {"error", error},
                                           {"note", "no new job is taken until Redis accepts writes again; "
                                                    "outcomes in hand are kept and retried"}});
  if (!probe_timer_) probe_timer_ = core::TimerHandle(loop_);
  probe_timer_->start(static_cast<uint64_t>(cfg_.probe_ms), [this] { probe(); });
  if (on_change_) on_change_(false);
}

void WriteHealth::probe() {
  // A write Redis refuses exactly when it refuses ours (SET is denied under OOM, on a replica,
  // after a failed save); one key per daemon, expiring by itself.
  client_.command({"SET", cfg_.probe_key, std::to_string(uv_now(loop_)), "PX", "60000"},
                  [this, alive = alive_.token()](const RedisReply& r) {
                    if (!alive || reason_.empty()) return;
                    WriteHealth* self = this;
                    if (r.type != RedisReply::Type::Status) {
                      // Refused again (or Redis away): keep holding, look again later.
                      self->probe_timer_->start(static_cast<uint64_t>(self->cfg_.probe_ms), [self] { self->probe(); });
                      return;
                    }
                    const std::string was = std::exchange(self->reason_, {});
                    refused_gauge().with({was}).set(0);
                    core::log_info("redis_writes_accepted",
                                   {{"reason", was}, {"after_ms", std::to_string(uv_now(self->loop_) - self->since_ms_)}});
                    if (self->on_change_) self->on_change_(true);
                  });
}

}  // namespace deliverd::queue
