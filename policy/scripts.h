#pragma once
// The Lua scripts that make the policy atomic across the fleet. The current time is always an
// argument (never Redis TIME), so tests can run a month on a simulated clock. Key and argument
// order are documented in scripts.cpp next to each script.
#include "queue/lua_script.h"

namespace deliverd::policy::scripts {

extern const queue::LuaScript kAdmit;
extern const queue::LuaScript kLearn;
extern const queue::LuaScript kLearnLateBounce;
extern const queue::LuaScript kRelease;
extern const queue::LuaScript kSetState;
extern const queue::LuaScript kLiftRevoked;

}  // namespace deliverd::policy::scripts
