#include "queue/publisher.h"

#include <cstdlib>

#include "core/log.h"

namespace deliverd::queue {
namespace {

// XADD, XDEL and XACK in one script: Redis runs it atomically, and an XADD that fails
// (WRONGTYPE, OOM) raises and stops the script before anything else, so an entry is never acked
// or deleted without its event. (MULTI/EXEC would still run the rest after a run-time error.)
// The entry is deleted with its ack, so the job stream holds only unfinished work.
// An entry no longer in the stream was finished before: a re-run after a lost reply (the
// first run did it all), or an entry another consumer finished meanwhile. XDEL says so (0), and
// the event just added is taken back in the same atomic step, so no reader ever sees a second
// one; the script returns 0. (Asking with XRANGE first would copy the whole job into Lua for
// every message.) Being pending is not the test: a Redis that lost its latest writes (a restart
// from an older snapshot, a failover to a replica that lagged) may have forgotten that the
// entry was read, and its outcome must still be recorded.
// KEYS: target stream, job stream, marker key. ARGV: maxlen, group, entry id, marker TTL in ms
// ("0": no marker), marker value (the delivery time), field, value, field, value…
const LuaScript kAddAndAck{R"lua(
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
local added = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
if redis.call('XDEL', KEYS[2], ARGV[3]) == 0 then
  redis.call('XDEL', KEYS[1], added)
  redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
  return 0
end
if ARGV[4] ~= '0' then redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[4]) end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
return 1
)lua"};

// The ack of an entry whose job was delivered already: acked and deleted together.
// KEYS: job stream. ARGV: group, entry id.
const LuaScript kAck{R"lua(
local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return n
)lua"};

}  // namespace

Publisher::Publisher(RedisClient& client, PublisherConfig cfg) : client_(client), cfg_(std::move(cfg)) {}

void Publisher::publish_and_ack(const std::string& entry_id, const std::string& event_json,
                                std::function<void(bool ok)> cb) {
  add_and_ack(cfg_.results, cfg_.results_maxlen, {"event", event_json}, entry_id, "", 0, std::move(cb));
}

std::string Publisher::done_key(const std::string& account, const std::string& job_id) const {
  return cfg_.done_prefix + std::to_string(account.size()) + ":" + account + ":" + job_id;
}

void Publisher::publish_delivered_and_ack(const std::string& entry_id, const std::string& account,
                                          const std::string& job_id, int64_t delivered_ms,
                                          const std::string& event_json, std::function<void(bool ok)> cb) {
  add_and_ack(cfg_.results, cfg_.results_maxlen, {"event", event_json}, entry_id, done_key(account, job_id),
              delivered_ms, std::move(cb));
}

// A marker without a time (written by an older release) still says "delivered".
int64_t Publisher::marker_time(const std::string& value) {
  char* end = nullptr;
  const long long ms = std::strtoll(value.c_str(), &end, 10);
  return end && *end == '\0' && ms > 0 ? ms : 0;
}

const LuaScript& Publisher::add_and_ack_script() { return kAddAndAck; }

ScriptCall Publisher::publish_call(const std::string& entry_id, const std::string& event_json) const {
  return add_and_ack_call(cfg_.results, cfg_.results_maxlen, {"event", event_json}, entry_id, "", 0);
}

ScriptCall Publisher::delivered_call(const std::string& entry_id, const std::string& account,
                                     const std::string& job_id, int64_t delivered_ms,
                                     const std::string& event_json) const {
  return add_and_ack_call(cfg_.results, cfg_.results_maxlen, {"event", event_json}, entry_id,
                          done_key(account, job_id), delivered_ms);
}

void Publisher::ack(const std::string& entry_id, std::function<void(bool ok)> cb) {
  client_.eval(kAck, {"1", cfg_.stream, cfg_.group, entry_id}, [cb = std::move(cb), entry_id](const RedisReply& r) {
    const bool ok = r.type == RedisReply::Type::Integer;
    if (!ok) core::log_warn("queue_ack_failed", {{"entry", entry_id}, {"reason", r.str}});
    if (cb) cb(ok);
  });
}

void Publisher::publish(const std::string& event_json, std::function<void(bool ok)> cb) {
  client_.command({"XADD", cfg_.results, "MAXLEN", "~", std::to_string(cfg_.results_maxlen), "*", "event", event_json},
                  [cb = std::move(cb)](const RedisReply& r) {
                    const bool ok = r.type == RedisReply::Type::String;
                    if (!ok) core::log_warn("results_publish_failed", {{"reason", r.str}});
                    if (cb) cb(ok);
                  });
}

void Publisher::dead_letter_and_ack(const std::string& entry_id, const std::string& payload, const std::string& reason,
                                    std::function<void(bool ok)> cb) {
  add_and_ack(cfg_.dead, cfg_.dead_maxlen, {"job", payload, "reason", reason}, entry_id, "", 0, std::move(cb));
}

void Publisher::add_and_ack(const std::string& target, size_t maxlen, std::vector<std::string> fields,
                            const std::string& entry_id, const std::string& marker, int64_t marker_value,
                            std::function<void(bool ok)> cb) {
  // The callback holds copies, not `this`: the publisher may be gone when the reply arrives.
  client_.eval(kAddAndAck, add_and_ack_call(target, maxlen, std::move(fields), entry_id, marker, marker_value).eval_args(), [cb = std::move(cb), entry_id, target](const RedisReply& r) {
    // 1, or 0 if the entry was no longer in the stream (finished before) — both are done.
    const bool ok = r.type == RedisReply::Type::Integer;
    if (!ok) core::log_warn("queue_ack_failed", {{"target", target}, {"entry", entry_id}, {"reason", r.str}});
    if (cb) cb(ok);
  });
}

void Publisher::publish_then(const LuaScript& composed, const ScriptCall& publish, const ScriptCall& next,
                             ThenCallback cb) {
  const std::string entry_id = publish.args.size() > 2 ? publish.args[2] : std::string();
  client_.eval(composed, LuaScript::then_args(publish, next), [cb = std::move(cb), entry_id](const RedisReply& r) {
    // {1, next's answer} or {0}: both are done; anything else (an error) leaves the entry pending.
    const bool ok = r.type == RedisReply::Type::Array && !r.elements.empty() &&
                    r.elements[0].type == RedisReply::Type::Integer;
    if (!ok) core::log_warn("queue_ack_failed", {{"entry", entry_id}, {"reason", r.str}});
    if (cb) cb(ok, ok && r.elements.size() > 1 ? &r.elements[1] : nullptr);
  });
}

ScriptCall Publisher::add_and_ack_call(const std::string& target, size_t maxlen, std::vector<std::string> fields,
                                       const std::string& entry_id, const std::string& marker,
                                       int64_t marker_value) const {
  ScriptCall c;
  c.keys = {target, cfg_.stream, marker.empty() ? cfg_.done_prefix : marker};
  c.args = {std::to_string(maxlen), cfg_.group, entry_id, marker.empty() ? "0" : std::to_string(cfg_.done_ttl_ms),
            std::to_string(marker_value)};
  for (auto& f : fields) c.args.push_back(std::move(f));
  return c;
}

}  // namespace deliverd::queue
