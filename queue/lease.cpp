#include "queue/lease.h"

namespace deliverd::queue {

const LuaScript kTakeLease(R"(
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
)");

const LuaScript kReleaseLease(R"(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)");

}  // namespace deliverd::queue
