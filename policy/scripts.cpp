#include "policy/scripts.h"

#include <string>
#include <string_view>

namespace deliverd::policy::scripts {

// KEYS: 1 state hash, 2 today's send counter, 3 GCRA per hour, 4 GCRA per minute (both in µs),
//       5 next allowed send (min gap), 6 reservations (zset of hint times), 7 warm-up day,
//       8 destination GCRA (µs), 9 destination connection leases (zset), 10 the job's idempotency
//       marker (queue/publisher.h; read only when ARGV[22] is "1"), 11 the account's erasure
//       marker (queue/account_eraser.h; read only when ARGV[23] is "1").
// ARGV: 1 now, 2 today (local day number), 3 the ends of today and the following days of the
//       reservation horizon ("t1,t2,…", local midnights as UTC ms), 4 ramp start, 5 ramp step,
//       6 ramp max, 7 warm-up day ("" = first day seen), 8 per hour, 9 per minute, 10 min gap ms,
//       11 this send's jitter ms, 12 max jitter ms, 13 probe timeout ms, 14 paused retry ms,
//       15 spread ms (random, this call), 16 destination per minute, 17 destination max
//       connections, 18 lease ms, 19 lease token, 20 destination retry ms, 21 day counter TTL ms,
//       22 "1": check the marker first ("0": do not), 23 "1": check the erasure marker before
//       that ("0": do not).
// Returns {verdict (1 allow, 0 defer, 2 reject, 3 delivered already, 4 account erased), until ms,
// reason, detail};
// a paused or disabled mailbox's answer adds who paused it and when it was paused or disabled (0:
// unknown). A job whose marker exists is answered {3, 0, 'duplicate', marker value} before
// anything else is read or written: it takes no slot, and it is a duplicate whatever the mailbox's
// state (the marker was checked before the policy when it was a command of its own).
//
// Only the work the mailbox's limits need: a limit that is off (0) reads and writes no key, the
// day counter's TTL is set when the day's first send creates it, the warm-up day is written once,
// and the reservations are looked at on an allowed send only while the state hash's 'resv' field
// says some may exist (reserve() sets it; it is dropped once the set is gone).
//
// A refused caller is handed the time of a slot that will exist (a reservation, not a lock):
// reservations are spaced by the sustained rate and never exceed today's or tomorrow's
// remaining capacity of the day they fall on, over a horizon of a few days, so N queued jobs
// come back one by one instead of all at once. Callers beyond the horizon's capacity come back
// when it ends, spread by ARGV[15].
const queue::LuaScript kAdmit{R"lua(
if ARGV[23] == '1' and redis.call('EXISTS', KEYS[11]) == 1 then return {4, 0, 'account_erased', ''} end
if ARGV[22] == '1' then
  local done = redis.call('GET', KEYS[10])
  if done then return {3, 0, 'duplicate', done} end
end
local now = tonumber(ARGV[1])
local spread = tonumber(ARGV[15])
local st = redis.call('HMGET', KEYS[1], 'state', 'open_until', 'probe_until', 'disabled', 'paused', 'paused_by',
                      'changed_at', 'disabled_reason', 'resv')
local changed_at = tonumber(st[7] or '0')
if st[4] == '1' then return {2, 0, st[8] or 'mailbox_disabled', '', '', changed_at} end
if st[5] == '1' then
  return {0, now + tonumber(ARGV[14]) + spread, 'mailbox_paused', '', st[6] or 'daemon', changed_at}
end
local state = st[1] or 'closed'
local probe = false
if state == 'open' then
  local ou = tonumber(st[2]) or 0
  if now < ou then return {0, ou + spread, 'breaker_open', 'open'} end
  probe = true
elseif state == 'half_open' then
  local pu = tonumber(st[3]) or 0
  if now < pu then return {0, pu + spread, 'breaker_open', 'probe_in_flight'} end
  probe = true
end

local today = tonumber(ARGV[2])
local ends = {}
for e in string.gmatch(ARGV[3], '%d+') do ends[#ends + 1] = tonumber(e) end
local day_end, horizon_end = ends[1], ends[#ends]
local rstart, rstep, rmax = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local wd = ARGV[7]
if wd == '' then
  wd = redis.call('GET', KEYS[7])
  if not wd then
    redis.call('SET', KEYS[7], ARGV[2])
    wd = ARGV[2]
  end
end
wd = tonumber(wd)
local function limit_for(day)
  local d = day - wd
  if d < 0 then return 0 end
  return math.min(rmax, rstart + rstep * d)
end
local lim_today = limit_for(today)
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local gap, jit, jmax = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])

local t0, why = now, ''
local function later(t, w)
  if t > t0 then t0 = t; why = w end
end
-- GCRA in microseconds, so a rate above one per millisecond (per_minute > 60000) still has an
-- interval; the theoretical arrival time is stored as an integer count of microseconds. Returns
-- the first allowed time (ms, rounded up), the new arrival time (µs) and the interval (ms).
local now_us = now * 1000
local function gcra(key, per, window)
  if per <= 0 then return now, nil, 0 end
  local T = math.max(1, math.floor(window * 1000 / per))
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now_us then tat = now_us end
  return math.ceil((tat - (per - 1) * T) / 1000), tat + T, T / 1000
end
local function set_tat(key, tat)
  redis.call('SET', key, string.format('%d', tat), 'PX', math.max(1, math.ceil((tat - now_us) / 1000)))
end
if used >= lim_today then later(day_end, 'daily_limit') end
-- Without a gap there is nothing to wait for: a caller whose clock is a millisecond behind the
-- last sender's (another daemon, or a call that reached Redis out of order) must not be deferred.
if gap + jmax > 0 then later(tonumber(redis.call('GET', KEYS[5]) or '0'), 'min_gap') end
local h_at, h_tat, h_T = gcra(KEYS[3], tonumber(ARGV[8]), 3600000)
local m_at, m_tat, m_T = gcra(KEYS[4], tonumber(ARGV[9]), 60000)
later(h_at, 'per_hour')
later(m_at, 'per_minute')

if t0 <= now then
  local dmax, dper = tonumber(ARGV[17]), tonumber(ARGV[16])
  if dmax > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', now)
    if redis.call('ZCARD', KEYS[9]) >= dmax then
      return {0, now + tonumber(ARGV[20]), 'destination_throttle', 'connections'}
    end
  end
  local d_tat = nil
  if dper > 0 then
    local at, tat = gcra(KEYS[8], dper, 60000)
    if at > now then return {0, at, 'destination_throttle', 'per_minute'} end
    d_tat = tat
  end
  if redis.call('INCR', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[21]) end
  if gap + jit > 0 then redis.call('SET', KEYS[5], now + gap + jit, 'PX', gap + jit + 1000) end
  if h_tat then set_tat(KEYS[3], h_tat) end
  if m_tat then set_tat(KEYS[4], m_tat) end
  if d_tat then set_tat(KEYS[8], d_tat) end
  if dmax > 0 then
    redis.call('ZADD', KEYS[9], now + tonumber(ARGV[18]), ARGV[19])
    redis.call('PEXPIRE', KEYS[9], ARGV[18])
  end
  if st[9] then
    local due = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now, 'LIMIT', 0, 1)
    if #due > 0 then redis.call('ZREM', KEYS[6], due[1]) end
    if redis.call('EXISTS', KEYS[6]) == 0 then redis.call('HDEL', KEYS[1], 'resv') end
  end
  if probe then
    redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[13]))
  end
  return {1, 0, 'ok', probe and 'probe' or ''}
end

local spacing = math.max(gap + jmax, math.ceil(h_T), math.ceil(m_T), 1)
local grace = math.max(spacing, 60000)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. string.format('%d', now - grace))
local cursor = t0
local last = redis.call('ZRANGE', KEYS[6], -1, -1, 'WITHSCORES')
if #last > 0 then cursor = math.max(cursor, tonumber(last[2]) + spacing) end
local function reserve(t)
  redis.call('ZADD', KEYS[6], t, string.format('%d', t))
  redis.call('PEXPIRE', KEYS[6], horizon_end - now + 86400000)
  if not st[9] then redis.call('HSET', KEYS[1], 'resv', '1') end
  return {0, t, 'ramp_up', why}
end
-- Day k of the horizon is [ends[k-1], ends[k]) (today: up to ends[1]); its free capacity is its
-- limit less what was sent (today) and what is already reserved.
for k = 1, #ends do
  local ks = (k == 1) and 0 or ends[k - 1]
  local ke = ends[k]
  if cursor < ke then
    if cursor < ks then cursor = ks end
    local n = redis.call('ZCOUNT', KEYS[6], ks, '(' .. string.format('%d', ke))
    local free = limit_for(today + k - 1) - n
    if k == 1 then free = free - used end
    if free > 0 then return reserve(cursor) end
    cursor = ke
    if #last > 0 then cursor = math.max(cursor, tonumber(last[2]) + spacing) end
  end
end
if why == '' then why = 'daily_limit' end
return {0, horizon_end + spread, 'ramp_up', why}
)lua"};

// The bounce guard's rule, one text in both learn scripts so an asynchronous hard bounce counts
// exactly as one at send time: the hard bounces among the recent sends (KEYS[2], newest first)
// pause the mailbox once they reach pause_at. The state hash keeps their count ('wb') so that a
// send costs no walk over the window: each script sets `sends` (the list's length after its own
// change), `wb` (the stored count, false when none), `delta` (1 when its change added a hard
// bounce), `window`, `hard` (this outcome is a hard bounce), `was_paused` and `pause_at` first;
// ARGV[1] is now in both. A list that is new, or older than the count, is counted once.
constexpr std::string_view kBounceGuard = R"lua(local bounces = 0
if not wb or sends <= 1 then
  if sends > window then redis.call('LTRIM', KEYS[2], 0, window - 1); sends = window end
  if sends > 0 then
    for _, v in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
      if v == '1' then bounces = bounces + 1 end
    end
  end
else
  bounces = tonumber(wb) + delta
  if sends > window then
    for _, v in ipairs(redis.call('LRANGE', KEYS[2], window, -1)) do
      if v == '1' then bounces = bounces - 1 end
    end
    redis.call('LTRIM', KEYS[2], 0, window - 1)
    sends = window
  end
end
local paused_now = 0
if hard and was_paused ~= '1' and bounces >= pause_at then
  redis.call('HSET', KEYS[1], 'paused', '1', 'paused_by', 'daemon', 'changed_at', ARGV[1], 'wb', 0)
  redis.call('DEL', KEYS[2])
  paused_now = 1
elseif tostring(bounces) ~= wb then
  redis.call('HSET', KEYS[1], 'wb', bounces)
end
)lua";

// KEYS: 1 state hash, 2 recent sends (list of "1" hard bounce / "0" other, newest first).
// ARGV: 1 now, 2 signal (neutral|success|failure|auth_failure|quota), 3 failures to open,
//       4 open durations ms "60000,300000,…", 5 quota open ms, 6 AUTH failures to disable,
//       7 counts as send (1/0), 8 hard bounce (1/0), 9 window, 10 bounces in the window that pause,
//       11 recent-sends TTL ms.
// Returns {state, open until, trips, auth failures, window length, bounces, transition
// ("open"/"closed"/""), disabled now (1/0), paused now (1/0)}.
// A message that changes nothing (the usual success on a closed breaker) writes only its send to
// the window: the breaker's fields are written when one of them changes.
const queue::LuaScript kLearn{std::string(R"lua(
local now, sig = tonumber(ARGV[1]), ARGV[2]
local h = redis.call('HMGET', KEYS[1], 'state', 'fails', 'trips', 'auth_fails', 'open_until', 'paused', 'disabled', 'wb')
local state = h[1] or 'closed'
local fails, trips, auth = tonumber(h[2] or '0'), tonumber(h[3] or '0'), tonumber(h[4] or '0')
local ou = tonumber(h[5] or '0')
local before = {state, fails, trips, auth, ou}
local changed = ''
local function open_for(ms)
  state = 'open'; ou = math.max(ou, now + ms); fails = 0; changed = 'open'
end
local function trip()
  local durs = {}
  for d in string.gmatch(ARGV[4], '%d+') do durs[#durs + 1] = tonumber(d) end
  trips = trips + 1
  open_for(durs[math.min(trips, #durs)])
end
if sig == 'success' then
  fails = 0; auth = 0
  if state ~= 'closed' then state = 'closed'; trips = 0; changed = 'closed' end
elseif sig == 'failure' or sig == 'auth_failure' or sig == 'quota' then
  if sig == 'auth_failure' then auth = auth + 1 end
  if sig == 'quota' then
    if state == 'closed' then trips = trips + 1 end
    open_for(tonumber(ARGV[5]))
  elseif state == 'half_open' then
    trip()
  elseif state == 'closed' then
    fails = fails + 1
    if fails >= tonumber(ARGV[3]) then trip() end
  end
elseif state == 'half_open' then
  -- The probe ended without a verdict on the mailbox (a recipient fault): let another through.
  redis.call('HSET', KEYS[1], 'probe_until', 0)
end
if state ~= before[1] or fails ~= before[2] or trips ~= before[3] or auth ~= before[4] or ou ~= before[5] then
  redis.call('HSET', KEYS[1], 'state', state, 'fails', fails, 'trips', trips, 'auth_fails', auth, 'open_until', ou)
end
local disabled_now = 0
if auth >= tonumber(ARGV[6]) and h[7] ~= '1' then
  redis.call('HSET', KEYS[1], 'disabled', '1', 'changed_at', ARGV[1])
  disabled_now = 1
end
local sends, delta = 0, 0
if ARGV[7] == '1' then
  sends = redis.call('LPUSH', KEYS[2], ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[11])
  if ARGV[8] == '1' then delta = 1 end
else
  sends = redis.call('LLEN', KEYS[2])
end
local wb, window = h[8], tonumber(ARGV[9])
local hard, was_paused, pause_at = ARGV[8] == '1', h[6], tonumber(ARGV[10])
)lua") + std::string(kBounceGuard) + R"lua(return {state, ou, trips, auth, sends, bounces, changed, disabled_now, paused_now}
)lua"};

// A hard bounce that arrived by mail after the 250 (Gate::learn_late_bounce). KEYS: 1 state
// hash, 2 recent sends. ARGV: 1 now, 2 bounce window (sends kept), 3 bounces that pause, 4 the
// sends list's time to live. The send was recorded as "0" when its 250 came: the newest such
// entry becomes "1" (which of the recent sends it was does not change the count); when none is
// left in the window the bounce is added as a send of its own. Then the pause rule of kLearn.
// Returns what kLearn returns, with no breaker transition and no disable.
const queue::LuaScript kLearnLateBounce{std::string(R"lua(
local h = redis.call('HMGET', KEYS[1], 'state', 'open_until', 'trips', 'auth_fails', 'paused', 'wb')
local sends
local i = redis.call('LPOS', KEYS[2], '0')
if i then
  redis.call('LSET', KEYS[2], i, '1')
  sends = redis.call('LLEN', KEYS[2])
else
  sends = redis.call('LPUSH', KEYS[2], '1')
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local wb, delta, window = h[6], 1, tonumber(ARGV[2])
local hard, was_paused, pause_at = true, h[5], tonumber(ARGV[3])
)lua") + std::string(kBounceGuard) + R"lua(return {h[1] or 'closed', tonumber(h[2] or '0'), tonumber(h[3] or '0'), tonumber(h[4] or '0'), sends, bounces, '',
        0, paused_now}
)lua"};

// KEYS: 1 destination connection leases. ARGV: 1 lease token.
const queue::LuaScript kRelease{R"lua(
return redis.call('ZREM', KEYS[1], ARGV[1])
)lua"};

// The Redis half of a mailbox state change (Gate::set_state). KEYS: 1 state hash, 2 recent
// sends. ARGV: 1 change (pause | resume | disable | reset_breaker), 2 who (tenant | operator |
// daemon), 3 now (kept with a pause or disable as changed_at), 4 a disable's reason as admit
// answers it ("oauth_revoked"; "" = mailbox_disabled). A pause records who made it, never weakening a stronger pauser's (tenant < operator <
// daemon; a pause without a name is the bounce guard's, written by an earlier release). Only an
// operator lifts a pause that is not the tenant's, or a disable; an operator's resume also
// forgets the AUTH failures, so the next one does not disable the mailbox again at once.
// Returns {1} or {0, "paused_by:<who>" | "disabled"} when refused.
const queue::LuaScript kSetState{R"lua(
local change, by = ARGV[1], ARGV[2]
local rank = {tenant = 1, operator = 2, daemon = 3}
local h = redis.call('HMGET', KEYS[1], 'paused', 'paused_by', 'disabled')
local holder = h[2] or 'daemon'
if change == 'pause' then
  if h[1] ~= '1' or (rank[by] or 3) > (rank[holder] or 3) then
    redis.call('HSET', KEYS[1], 'paused', '1', 'paused_by', by, 'changed_at', ARGV[3])
  end
  return {1}
end
if change == 'disable' then
  redis.call('HSET', KEYS[1], 'disabled', '1', 'changed_at', ARGV[3])
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'disabled_reason', ARGV[4]) end
  return {1}
end
if by ~= 'operator' then
  if h[3] == '1' then return {0, 'disabled'} end
  if h[1] == '1' and holder ~= 'tenant' then return {0, 'paused_by:' .. holder} end
  redis.call('HDEL', KEYS[1], 'paused', 'paused_by')
  return {1}
end
if change == 'reset_breaker' then
  -- The reservations outlive a reset, and so does admit's hint that they exist.
  local resv = redis.call('HGET', KEYS[1], 'resv')
  redis.call('DEL', KEYS[1], KEYS[2])
  if resv then redis.call('HSET', KEYS[1], 'resv', resv) end
  return {1}
end
redis.call('HDEL', KEYS[1], 'paused', 'paused_by', 'disabled', 'disabled_reason')
redis.call('HSET', KEYS[1], 'auth_fails', 0)
redis.call('DEL', KEYS[2])
return {1}
)lua"};

// KEYS: 1 state hash. Lifts a disable whose reason is a revoked OAuth grant, and no other: the
// mailbox has a new grant. Returns 1 when it lifted one.
const queue::LuaScript kLiftRevoked{R"lua(
if redis.call('HGET', KEYS[1], 'disabled_reason') ~= 'oauth_revoked' then return 0 end
redis.call('HDEL', KEYS[1], 'disabled', 'disabled_reason')
return 1
)lua"};

}  // namespace deliverd::policy::scripts
