#pragma once
// Erasure of one account's state in Redis: the retry-set members, results events and dead
// letters that carry its jobs (and so its recipients' addresses) are deleted, and a marker
// `<prefix>erased:<account>` (TTL: the oldest a job can get) tells every daemon of the fleet that
// the account's jobs still on the stream or in flight end `rejected`/`account_erased` with no
// address written anywhere. The marker is set first, so a job promoted or finished while the sweep
// runs is caught at its admission or its outcome.
// Each sweep step is one short script over a bounded chunk (ZSCAN … COUNT n, XRANGE … COUNT n),
// never one script over a whole set or stream, so Redis serves other clients in between.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "core/lifetime.h"
#include "core/result.h"
#include "queue/redis_client.h"

namespace deliverd::queue {

struct AccountEraserConfig {
  std::string retry = "deliverd:retry", results = "deliverd:results", dead = "deliverd:dead";
  std::string marker_prefix = "deliverd:erased:";
  int64_t marker_ttl_ms = 8LL * 86'400'000;  // at least the job max age ([retry] max_age)
  size_t chunk = 500;  // members or entries looked at per script run
};

struct RedisEraseCounts {
  int64_t retry_members = 0, results_entries = 0, dead_letters = 0;
};

class AccountEraser {
 public:
  // The client must outlive the eraser; replies that arrive after it is gone do nothing.
  AccountEraser(RedisClient& client, AccountEraserConfig cfg);
  ~AccountEraser() { alive_.end(); }
  AccountEraser(const AccountEraser&) = delete;
  AccountEraser& operator=(const AccountEraser&) = delete;

  // Sets the marker, then sweeps the retry set and both streams. Entries added to a stream after
  // the sweep began are not looked at (the marker keeps the account's new ones out).
  void erase(const std::string& account, std::function<void(core::Result<RedisEraseCounts, std::string>)> cb);
  // Whether the account was erased (its marker is there), or an error.
  void is_erased(const std::string& account, std::function<void(core::Result<bool, std::string>)> cb);

  std::string marker_key(const std::string& account) const { return cfg_.marker_prefix + account; }

 private:
  struct Sweep;
  void sweep_set(std::shared_ptr<Sweep> s, std::string cursor);
  void sweep_stream(std::shared_ptr<Sweep> s, int which, std::string from, std::string to);
  RedisClient& client_;
  AccountEraserConfig cfg_;
  core::Lifetime alive_;
};

}  // namespace deliverd::queue
