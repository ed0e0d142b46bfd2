#include "queue/account_eraser.h"

#include <memory>

#include "core/json_writer.h"
#include "core/log.h"
#include "core/metrics.h"
#include "queue/lua_script.h"
#include "queue/scheduler.h"

namespace deliverd::queue {
namespace {

core::Family<core::Counter>& erased_counter() {
  static auto& f = core::Registry::global().counter(
      "deliverd_account_erasure_removed_total", "Retry-set members and stream entries removed by account erasure",
      {"place"});
  return f;
}

// Whether a job or event text belongs to the account (ARGV[1]): its top-level "account" when it
// is JSON; otherwise (a dead letter cut short, a job that was not JSON) whether it carries the
// account's field as a producer writes it (ARGV[2], `"account":"…"`, and the same with a blank).
constexpr const char* kBelongs = R"lua(
local function belongs(text)
  if type(text) ~= 'string' then return false end
  local ok, v = pcall(cjson.decode, text)
  if ok and type(v) == 'table' and v.account ~= nil then return v.account == ARGV[1] end
  return string.find(text, ARGV[2], 1, true) ~= nil or string.find(text, ARGV[3], 1, true) ~= nil
end
)lua";

// KEYS: retry set. ARGV: account, needle, needle with a blank, cursor, count.
// Returns {next cursor, members removed}. A member names its account in its header; one written
// by an earlier version is tested through its job text.
const LuaScript kSweepSet{std::string(kBelongs) + kRetryItemLua + R"lua(
local r = redis.call('ZSCAN', KEYS[1], ARGV[4], 'COUNT', ARGV[5])
local removed = 0
local items = r[2]
for i = 1, #items, 2 do
  local item = retry_item(items[i])
  local mine
  if item and item.account then mine = item.account == ARGV[1] else mine = belongs(item and item.job or items[i]) end
  if mine then removed = removed + redis.call('ZREM', KEYS[1], items[i]) end
end
return {r[1], removed}
)lua"};

// KEYS: stream. ARGV: account, needle, needle with a blank, first id (inclusive, or "(id"),
// last id, count. Returns {last id looked at ("" when none), entries looked at, entries removed}.
// The entry's "event" (results) or "job" (dead letters) field is what is tested.
const LuaScript kSweepStream{std::string(kBelongs) + R"lua(
local entries = redis.call('XRANGE', KEYS[1], ARGV[4], ARGV[5], 'COUNT', ARGV[6])
local removed = 0
local last = ''
for _, e in ipairs(entries) do
  last = e[1]
  local f = e[2]
  for i = 1, #f, 2 do
    if (f[i] == 'event' or f[i] == 'job') and belongs(f[i + 1]) then
      removed = removed + redis.call('XDEL', KEYS[1], e[1])
      break
    end
  end
end
return {last, #entries, removed}
)lua"};

}  // namespace

struct AccountEraser::Sweep {
  std::string account, needle, needle_blank;
  RedisEraseCounts counts;
  std::function<void(core::Result<RedisEraseCounts, std::string>)> cb;
  void fail(const std::string& what, const RedisReply& r) {
    core::log_warn("account_erasure_failed", {{"account", account}, {"step", what}, {"error", r.str}});
    cb(core::Err(what + ": " + (r.str.empty() ? std::string("unexpected reply") : r.str)));
  }
};

AccountEraser::AccountEraser(RedisClient& client, AccountEraserConfig cfg) : client_(client), cfg_(std::move(cfg)) {
  if (cfg_.chunk == 0) cfg_.chunk = 1;
  erased_counter();
}

void AccountEraser::is_erased(const std::string& account, std::function<void(core::Result<bool, std::string>)> cb) {
  client_.command({"EXISTS", marker_key(account)}, [cb = std::move(cb)](const RedisReply& r) {
    if (r.type != RedisReply::Type::Integer) return cb(core::Err("EXISTS: " + r.str));
    cb(r.integer > 0);
  });
}

void AccountEraser::erase(const std::string& account,
                          std::function<void(core::Result<RedisEraseCounts, std::string>)> cb) {
  auto s = std::make_shared<Sweep>();
  s->account = account;
  std::string quoted;
  core::append_json_string(quoted, account);
  s->needle = "\"account\":" + quoted;
  s->needle_blank = "\"account\": " + quoted;
  s->cb = std::move(cb);
  client_.command({"SET", marker_key(account), "1", "PX", std::to_string(cfg_.marker_ttl_ms)},
                  [this, alive = alive_.token(), s](const RedisReply& r) {
                    if (!alive) return;
                    if (r.type != RedisReply::Type::Status) return s->fail("SET " + marker_key(s->account), r);
                    sweep_set(s, "0");
                  });
}

void AccountEraser::sweep_set(std::shared_ptr<Sweep> s, std::string cursor) {
  client_.eval(kSweepSet, {"1", cfg_.retry, s->account, s->needle, s->needle_blank, cursor, std::to_string(cfg_.chunk)},
               [this, alive = alive_.token(), s](const RedisReply& r) {
                 if (!alive) return;
                 if (r.type != RedisReply::Type::Array || r.elements.size() != 2)
                   return s->fail("sweep of " + cfg_.retry, r);
                 s->counts.retry_members += r.elements[1].integer;
                 erased_counter().with({"retry"}).inc(static_cast<double>(r.elements[1].integer));
                 if (r.elements[0].str != "0") return sweep_set(s, r.elements[0].str);
                 sweep_stream(s, 0, "", "");
               });
}

// which: 0 the results stream, 1 the dead letters. to == "": the stream's last id is read first,
// so entries added during the sweep (the marker keeps the account's out) do not prolong it.
void AccountEraser::sweep_stream(std::shared_ptr<Sweep> s, int which, std::string from, std::string to) {
  if (which > 1) return s->cb(s->counts);
  const std::string& key = which == 0 ? cfg_.results : cfg_.dead;
  if (to.empty()) {
    return client_.command({"XREVRANGE", key, "+", "-", "COUNT", "1"},
                           [this, alive = alive_.token(), s, which, key](const RedisReply& r) {
                             if (!alive) return;
                             if (r.type != RedisReply::Type::Array) return s->fail("XREVRANGE " + key, r);
                             if (r.elements.empty() || r.elements[0].elements.empty())
                               return sweep_stream(s, which + 1, "", "");
                             sweep_stream(s, which, "-", r.elements[0].elements[0].str);
                           });
  }
  client_.eval(kSweepStream,
               {"1", key, s->account, s->needle, s->needle_blank, from, to, std::to_string(cfg_.chunk)},
               [this, alive = alive_.token(), s, which, key, to](const RedisReply& r) {
                 if (!alive) return;
                 if (r.type != RedisReply::Type::Array || r.elements.size() != 3) return s->fail("sweep of " + key, r);
                 const std::string last = r.elements[0].str;
                 const long long removed = r.elements[2].integer;
                 (which == 0 ? s->counts.results_entries : s->counts.dead_letters) += removed;
                 erased_counter().with({which == 0 ? "results" : "dead"}).inc(static_cast<double>(removed));
                 if (r.elements[1].integer < static_cast<long long>(cfg_.chunk) || last.empty() || last == to)
                   return sweep_stream(s, which + 1, "", "");
                 sweep_stream(s, which, "(" + last, to);
               });
}

}  // namespace deliverd::queue
