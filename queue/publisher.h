#pragma once
// Publishes a job's result event (or dead-letters it), acks its stream entry and deletes it. The
// XADD, the XACK and the XDEL run in that order inside one Lua script (EVALSHA), one command per
// job, so they are pipelined with everything else in flight on the client, and Redis applies the
// XACK only if the XADD succeeded: a failure or a lost connection leaves the entry pending
// (re-processed later), never acked without its event. The script does nothing for an entry no
// longer in the stream, so running it twice (a retry after a lost reply) publishes one event.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "queue/redis_client.h"

namespace deliverd::queue {

struct PublisherConfig {
  std::string stream = "deliverd:jobs", group = "deliverd", results = "deliverd:results", dead = "deliverd:dead";
  size_t results_maxlen = 1000000;  // XADD … MAXLEN ~ N
  size_t dead_maxlen = 100000;
  std::string done_prefix = "deliverd:done:";      // + account and job id: the idempotency marker
  int64_t done_ttl_ms = 96LL * 3600 * 1000;         // longer than a job can live (max_age + a day)
};

class Publisher {
 public:
  // The client must outlive the publisher's use of it; the publisher holds no other state, so
  // it may be destroyed while commands are in flight (their callbacks do not touch it).
  Publisher(RedisClient& client, PublisherConfig cfg);

  // XADD results MAXLEN ~ N * event <event_json>, then XACK stream group entry_id.
  // cb(true) once both were applied; cb(false) on any error (the entry then stays pending).
  void publish_and_ack(const std::string& entry_id, const std::string& event_json, std::function<void(bool ok)> cb);

  // The same for a delivered job, and in the same script the idempotency marker of (account,
  // job id) is set to the delivery time, so a marker exists exactly when the delivered event
  // does. It is written one Redis round trip after the server's 250 for DATA; a crash inside that
  // window is the only way a message can be sent twice (docs/job-schema.md "Delivery guarantees").
  void publish_delivered_and_ack(const std::string& entry_id, const std::string& account, const std::string& job_id,
                                 int64_t delivered_ms, const std::string& event_json, std::function<void(bool ok)> cb);

  // What a marker's value says: the delivery time, or 0 when it holds none (a marker written by
  // an older release) — either way "delivered". Shared with the admit script's reading of it.
  static int64_t marker_time(const std::string& value);

  // Job ids are the producer's, per account: the marker is keyed by both, the account length-
  // prefixed so no (account, id) pair can spell another's key: <done_prefix><len>:<account>:<id>.
  std::string done_key(const std::string& account, const std::string& job_id) const;

  // XACK and XDEL alone: for an entry whose job was already delivered (its event is on the
  // results stream).
  void ack(const std::string& entry_id, std::function<void(bool ok)> cb);

  // XADD results MAXLEN ~ N * event <event_json> alone: an event that is no job's outcome (a
  // mailbox disabled). cb(false) on an error.
  void publish(const std::string& event_json, std::function<void(bool ok)> cb);

  // XADD dead MAXLEN ~ N * job <payload> reason <reason>, then XACK; cb as above.
  void dead_letter_and_ack(const std::string& entry_id, const std::string& payload, const std::string& reason,
                           std::function<void(bool ok)> cb);

  // The publish script and its calls, for a script composed of it and another that must run only
  // when the outcome was recorded (daemon/: the outcome's learn, LuaScript::then()): the script
  // answers 1 when it recorded the event, 0 when the entry had been finished before (a re-run
  // after a lost reply: nothing is added, the entry is acked), and raises before acking anything
  // when the XADD fails.
  static const LuaScript& add_and_ack_script();
  ScriptCall publish_call(const std::string& entry_id, const std::string& event_json) const;
  ScriptCall delivered_call(const std::string& entry_id, const std::string& account, const std::string& job_id,
                            int64_t delivered_ms, const std::string& event_json) const;

  // Runs composed (add_and_ack_script().then(another script)) with publish (one of the calls
  // above) and next. cb(ok, next's answer): ok as for publish_and_ack; next's answer only when
  // this run recorded the event (nullptr otherwise).
  using ThenCallback = std::function<void(bool ok, const RedisReply* next_answer)>;
  void publish_then(const LuaScript& composed, const ScriptCall& publish, const ScriptCall& next, ThenCallback cb);

  const PublisherConfig& config() const { return cfg_; }

 private:
  void add_and_ack(const std::string& target, size_t maxlen, std::vector<std::string> fields,
                   const std::string& entry_id, const std::string& marker, int64_t marker_value,
                   std::function<void(bool ok)> cb);
  ScriptCall add_and_ack_call(const std::string& target, size_t maxlen, std::vector<std::string> fields,
                              const std::string& entry_id, const std::string& marker, int64_t marker_value) const;
  RedisClient& client_;
  PublisherConfig cfg_;
};

}  // namespace deliverd::queue
