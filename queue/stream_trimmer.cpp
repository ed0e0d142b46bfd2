#include "queue/stream_trimmer.h"

#include <algorithm>

#include "core/log.h"
#include "core/metrics.h"

namespace deliverd::queue {
namespace {

core::Family<core::Counter>& trimmed() {
  static auto& f = core::Registry::global().counter(
      "deliverd_stream_trimmed_total", "Entries removed from a stream by its retention age (XTRIM MINID)", {"stream"});
  return f;
}

}  // namespace

StreamTrimmer::StreamTrimmer(uv_loop_t* loop, RedisClient& client, StreamTrimmerConfig cfg,
                             std::function<int64_t()> now_ms)
    : client_(client), cfg_(std::move(cfg)), now_ms_(std::move(now_ms)), loop_(loop) {
  trimmed();
}

StreamTrimmer::~StreamTrimmer() { alive_.end(); }

uint64_t StreamTrimmer::interval_ms() const {
  int64_t shortest = 60'000;
  for (const auto& s : cfg_.streams)
    if (s.max_age_ms > 0) shortest = std::min(shortest, s.max_age_ms / 4);
  return static_cast<uint64_t>(std::max<int64_t>(shortest, 1000));
}

void StreamTrimmer::start() {
  if (!timer_) timer_ = core::TimerHandle(loop_);
  timer_->start(interval_ms(), [this] {
    trim_once([this](long long) { start(); });
  });
}

void StreamTrimmer::trim_once(std::function<void(long long)> done) {
  if (running_ || !client_.connected()) {
    if (done) done(0);
    return;
  }
  running_ = true;
  trim(0, 0, std::move(done));
}

void StreamTrimmer::trim(size_t index, long long removed, std::function<void(long long)> done) {
  while (index < cfg_.streams.size() && cfg_.streams[index].max_age_ms <= 0) ++index;
  if (index >= cfg_.streams.size()) {
    running_ = false;
    if (done) done(removed);
    return;
  }
  const TrimmedStream& s = cfg_.streams[index];
  const int64_t min_ms = now_ms_() - s.max_age_ms;
  if (min_ms <= 0) return trim(index + 1, removed, std::move(done));
  client_.command({"XTRIM", s.key, "MINID", "~", std::to_string(min_ms), "LIMIT", std::to_string(cfg_.limit)},
                  [this, alive = alive_.token(), index, removed, key = s.key, done = std::move(done)](const RedisReply& r) mutable {
                    if (!alive) return;
                    StreamTrimmer* self = this;
                    if (r.type != RedisReply::Type::Integer) {
                      if (!r.connection_error) core::log_warn("stream_trim_failed", {{"stream", key}, {"error", r.str}});
                      self->running_ = false;
                      if (done) done(-1);
                      return;
                    }
                    trimmed().with({key}).inc(static_cast<double>(r.integer));
                    removed += r.integer;
                    if (static_cast<size_t>(r.integer) >= self->cfg_.limit) {
                      // More to remove: again shortly, so other commands get Redis in between.
                      if (!self->timer_) self->timer_ = core::TimerHandle(self->loop_);
                      self->timer_->start(self->cfg_.again_ms, [self, index, removed, done = std::move(done)]() mutable {
                        self->trim(index, removed, std::move(done));
                      });
                      return;
                    }
                    self->trim(index + 1, removed, std::move(done));
                  });
}

}  // namespace deliverd::queue
