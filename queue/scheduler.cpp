#include "queue/scheduler.h"

#include "core/json_writer.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/utf8.h"

namespace deliverd::queue {
namespace {

// KEYS: retry set, results stream, job stream. ARGV: due, member, results maxlen, group, entry, event.
// Only an entry still in the stream is moved (a re-run after a lost reply must not add the job
// again once the promoter has taken it back; the first run deleted the entry); the ZADD is the
// first write: if it fails the script stops before anything else was written. The entry is
// deleted with its ack.
const LuaScript kDeferAndAck{R"lua(
if #redis.call('XRANGE', KEYS[3], ARGV[5], ARGV[5]) == 0 then
  redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
if ARGV[6] ~= '' then redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[6]) end
redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
redis.call('XDEL', KEYS[3], ARGV[5])
return 1
)lua"};

// KEYS: retry set, job stream, dead stream. ARGV: now, batch, dead maxlen.
// A member that is not one of ours (someone ZADDed by hand) goes to the dead letters rather than
// blocking the head of the set forever.
const LuaScript kPromote{R"lua(
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local ok, item = pcall(cjson.decode, m)
  if ok and type(item) == 'table' and type(item.job) == 'string' and type(item.attempt) == 'string'
     and type(item.first_seen) == 'string' then
    local fields = {'job', item.job, 'attempt', item.attempt, 'first_seen', item.first_seen}
    for _, k in ipairs({'last_code', 'last_enhanced', 'last_text'}) do
      if type(item[k]) == 'string' then table.insert(fields, k); table.insert(fields, item[k]) end
    end
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'job', m, 'reason', 'retry set member is not a deliverd retry item')
  end
  redis.call('ZREM', KEYS[1], m)
end
return #due
)lua"};

core::Counter& promoted_counter() {
  static core::Counter& c =
      core::Registry::global().counter("deliverd_retry_promoted_total", "Deferred jobs moved from the retry set back to the stream").get();
  return c;
}

}  // namespace

std::string encode_retry_item(const RetryItem& item) {
  core::JsonWriter w;
  // Numbers as strings: Redis's Lua (5.1, doubles) would print a millisecond time in exponent form.
  w.begin_object()
      .field("job", item.payload)
      .field("attempt", std::to_string(item.attempt))
      .field("first_seen", std::to_string(item.first_seen_ms))
      .field("last", item.last_outcome);
  if (item.last_reply.code) {
    w.field("last_code", std::to_string(item.last_reply.code))
        .field("last_enhanced", item.last_reply.enhanced)
        .field("last_text", core::escape_utf8_lossless(item.last_reply.text));
  }
  w.end_object();
  return w.take();
}

Scheduler::Scheduler(uv_loop_t* loop, RedisClient& client, SchedulerConfig cfg)
    : client_(client), cfg_(std::move(cfg)), timer_(loop) {
  promoted_counter();
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::defer_and_ack(const std::string& entry_id, const RetryItem& item, int64_t due_ms,
                              const std::string& event_json, std::function<void(bool ok)> cb) {
  client_.eval(kDeferAndAck, {"3", cfg_.retry, cfg_.results, cfg_.stream, std::to_string(due_ms),
                   encode_retry_item(item), std::to_string(cfg_.results_maxlen), cfg_.group, entry_id, event_json},
                  [cb = std::move(cb), entry_id](const RedisReply& r) {
                    const bool ok = r.type == RedisReply::Type::Integer;
                    if (!ok) core::log_warn("retry_schedule_failed", {{"entry", entry_id}, {"reason", r.str}});
                    if (cb) cb(ok);
                  });
}

void Scheduler::start(std::function<int64_t()> now_ms) {
  now_ms_ = std::move(now_ms);
  if (!timer_) return;
  timer_->start_repeating(0, static_cast<uint64_t>(cfg_.poll_ms), [this] {
    if (!promoting_) promote_once();
  });
}

void Scheduler::promote_once(std::function<void(long long)> cb) {
  if (!client_.connected()) {
    if (cb) cb(-1);
    return;
  }
  promoting_ = true;
  const int64_t now = now_ms_ ? now_ms_() : 0;
  client_.eval(kPromote, {"3", cfg_.retry, cfg_.stream, cfg_.dead, std::to_string(now),
                   std::to_string(cfg_.batch), std::to_string(cfg_.dead_maxlen)},
                  [this, alive = alive_.token(), cb = std::move(cb)](const RedisReply& r) {
                    long long moved = r.type == RedisReply::Type::Integer ? r.integer : -1;
                    if (moved < 0 && !r.connection_error) core::log_warn("retry_promote_failed", {{"reason", r.str}});
                    if (moved > 0) promoted_counter().inc(static_cast<double>(moved));
                    if (alive) {
                      promoting_ = false;
                      // A full batch means more are due: keep going without waiting for the timer.
                      if (moved > 0 && static_cast<size_t>(moved) == cfg_.batch) promote_once();
                    }
                    if (cb) cb(moved);
                  });
}

void Scheduler::stop() {
  alive_.end();
  timer_.reset();
}

}  // namespace deliverd::queue
