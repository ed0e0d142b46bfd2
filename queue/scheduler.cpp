#include "queue/scheduler.h"

#include "core/deflate.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/utf8.h"

namespace deliverd::queue {
namespace {

// KEYS: retry set, results stream, job stream. ARGV: due, member, results maxlen, group, entry, event.
// Only an entry still in the stream is moved (a re-run after a lost reply must not add the job
// again once the promoter has taken it back; the first run deleted the entry). The ZADD is the
// first write: if it fails the script stops before anything else was written. XDEL then tells
// whether the entry was still there; when it was not, what this run added is taken back in the
// same atomic step (a member that was there before stays). The entry is deleted with its ack.
const LuaScript kDeferAndAck{R"lua(
local new = redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local event = nil
if ARGV[6] ~= '' then event = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'event', ARGV[6]) end
if redis.call('XDEL', KEYS[3], ARGV[5]) == 0 then
  if new == 1 then redis.call('ZREM', KEYS[1], ARGV[2]) end
  if event then redis.call('XDEL', KEYS[2], event) end
  redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
  return 0
end
redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
return 1
)lua"};

// KEYS: retry set, job stream, dead stream. ARGV: now, batch, dead maxlen.
// A member that is not one of ours (someone ZADDed by hand) goes to the dead letters rather than
// blocking the head of the set forever.
const LuaScript kPromote{std::string(kRetryItemLua) + R"lua(
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local item = retry_item(m)
  if item then
    local fields = {item.compressed and 'job_z' or 'job', item.job, 'attempt', item.attempt, 'first_seen', item.first_seen}
    if item.code then
      fields[7], fields[8], fields[9], fields[10] = 'last_code', item.code, 'last_enhanced', item.enhanced
      fields[11], fields[12] = 'last_text', item.text
    end
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'job', m, 'reason', 'retry set member is not a deliverd retry item')
  end
  redis.call('ZREM', KEYS[1], m)
end
return #due
)lua"};

// A header word: what the header can carry without a length (identifiers, reasons and enhanced
// codes always can); anything else is written as absent.
std::string word(std::string_view s) {
  if (s.empty()) return "-";
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return "-";
  return std::string(s);
}

core::Counter& promoted_counter() {
  static core::Counter& c =
      core::Registry::global().counter("deliverd_retry_promoted_total", "Deferred jobs moved from the retry set back to the stream").get();
  return c;
}

}  // namespace

// Decoding is string.match on the header and two string.sub calls: no JSON, so a promotion
// costs about as much as its XADD and ZREM.
const char* const kRetryItemLua = R"lua(
local function retry_item(m)
  local a, f, acct, why, c, e, n, z, p =
    string.match(m, '^r2 (%d+) (%d+) (%S+) (%S+) (%d+) (%S+) (%d+) ([z-])\n()')
  if a then
    n = tonumber(n)
    if p + n > #m + 1 then return nil end
    local item = {job = string.sub(m, p + n), compressed = z == 'z', attempt = a, first_seen = f}
    if acct ~= '-' then item.account = acct end
    if c ~= '0' then
      item.code, item.enhanced, item.text = c, (e == '-') and '' or e, string.sub(m, p, p + n - 1)
    end
    return item
  end
  local ok, v = pcall(cjson.decode, m)
  if ok and type(v) == 'table' and type(v.job) == 'string' and type(v.attempt) == 'string'
     and type(v.first_seen) == 'string' then
    local item = {job = v.job, compressed = false, attempt = v.attempt, first_seen = v.first_seen}
    if type(v.last_code) == 'string' then
      item.code = v.last_code
      item.enhanced = type(v.last_enhanced) == 'string' and v.last_enhanced or ''
      item.text = type(v.last_text) == 'string' and v.last_text or ''
    end
    return item
  end
  return nil
end
)lua";

// Jobs up to this size are kept deflated. The consumer bounds what it holds by the entry's bytes
// on the stream, and an inflated job is bigger than its entry: so only small jobs (most of a
// backlog, and most of its memory) are compressed, and the unaccounted growth of an entry in hand
// is at most this much, whatever a producer's 30 MiB job compresses to.
constexpr size_t kCompressUpTo = 64 * 1024;

std::string encode_retry_item(const RetryItem& item) {
  std::string packed = item.payload.size() <= kCompressUpTo ? core::deflate_raw(item.payload) : std::string();
  const bool compressed = !packed.empty();
  const bool replied = item.last_reply.code != 0;
  const std::string text = replied ? core::escape_utf8_lossless(item.last_reply.text) : std::string();
  std::string m;
  m.reserve(64 + text.size() + (compressed ? packed.size() : item.payload.size()));
  m.append("r2 ")
      .append(std::to_string(item.attempt)).append(" ")
      .append(std::to_string(item.first_seen_ms)).append(" ")
      .append(word(item.account)).append(" ")
      .append(word(item.reason)).append(" ")
      .append(std::to_string(replied ? item.last_reply.code : 0)).append(" ")
      .append(replied ? word(item.last_reply.enhanced) : "-").append(" ")
      .append(std::to_string(text.size())).append(compressed ? " z\n" : " -\n")
      .append(text)
      .append(compressed ? packed : item.payload);
  return m;
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
