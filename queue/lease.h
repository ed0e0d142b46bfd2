#pragma once
// A lease one daemon of the fleet holds in Redis (a string key holding the holder's name, with a
// time to live): the OAuth refresh of a mailbox, the watch of a mailbox's inbox. One pair of
// scripts for every such lease, so they all behave alike.
#include "queue/lua_script.h"

namespace deliverd::queue {

// KEYS: 1 lease. ARGV: 1 holder, 2 life (ms). Takes the lease if it is free or already this
// holder's, and renews it then: a daemon restarted after a crash holds its dead predecessor's
// lease (same consumer name) and need not wait for it to lapse. Returns 1 when held, else 0.
extern const LuaScript kTakeLease;

// KEYS: 1 lease. ARGV: 1 holder. Deletes the lease only while it is still this holder's: work
// that outlived its lease must not end the lease another daemon took since.
extern const LuaScript kReleaseLease;

}  // namespace deliverd::queue
