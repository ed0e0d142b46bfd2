#pragma once
// Publishes a job's result event (or dead-letters it) and acks its stream entry. The XADD and
// the XACK run in that order inside one Lua script (EVAL), one command per job, so they are
// pipelined with everything else in flight on the client, and Redis applies the XACK only if the
// XADD succeeded: a failure or a lost connection leaves the entry pending (re-processed later),
// never acked without its event.
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "queue/redis_client.h"

namespace deliverd::queue {

struct PublisherConfig {
  std::string stream = "deliverd:jobs", group = "deliverd", results = "deliverd:results", dead = "deliverd:dead";
  size_t results_maxlen = 1000000;  // XADD … MAXLEN ~ N
  size_t dead_maxlen = 100000;
};

class Publisher {
 public:
  // The client must outlive the publisher's use of it; the publisher holds no other state, so
  // it may be destroyed while commands are in flight (their callbacks do not touch it).
  Publisher(RedisClient& client, PublisherConfig cfg);

  // XADD results MAXLEN ~ N * event <event_json>, then XACK stream group entry_id.
  // cb(true) once both were applied; cb(false) on any error (the entry then stays pending).
  void publish_and_ack(const std::string& entry_id, const std::string& event_json, std::function<void(bool ok)> cb);

  // XADD dead MAXLEN ~ N * job <payload> reason <reason>, then XACK; cb as above.
  void dead_letter_and_ack(const std::string& entry_id, const std::string& payload, const std::string& reason,
                           std::function<void(bool ok)> cb);

  const PublisherConfig& config() const { return cfg_; }

 private:
  void add_and_ack(const std::string& target, size_t maxlen, std::vector<std::string> fields,
                   const std::string& entry_id, std::function<void(bool ok)> cb);
  RedisClient& client_;
  PublisherConfig cfg_;
};

}  // namespace deliverd::queue
