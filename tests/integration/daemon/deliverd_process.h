#pragma once
// The deliverd binary under test: writes a config pointing at the test's Redis and PostgreSQL,
// migrates, registers mailboxes, runs the daemon and talks to its admin listener.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/fixtures/postgres_server.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/redis_server.h"

namespace deliverd::testing {

class DeliverdProcess {
 public:
  struct Options {
    int redis_port = 0;
    std::string redis_url;  // default: redis://127.0.0.1:<redis_port>
    std::string pg_conninfo;
    std::vector<std::string> allow_private_targets = {"127.0.0.0/8"};
    int max_inflight = 256;
    int shutdown_grace_s = 10;
    int smtp_timeout_s = 10;  // every SMTP phase; tests shorten RFC 5321's minutes
    std::string consumer = "test-consumer";
    std::string redis_extra;  // appended inside [redis]
    // [policy]: daemon tests deliver thousands of jobs through one mailbox, so ramp-up and pacing
    // are opened wide unless a test is about them (policy tests set their own).
    std::string policy_toml =
        "ramp_start = 100000\nramp_max = 1000000\nper_hour = 0\nper_minute = 0\nmin_gap_s = 0\njitter_s = 0\n";
    std::string extra_toml;   // appended verbatim
    std::map<std::string, std::string> env;  // extra environment of `deliverd run`
  };
  explicit DeliverdProcess(Options o);
  ~DeliverdProcess();

  const std::string& config_path() const { return config_; }
  // Runs a deliverd subcommand to completion with --config; returns the exit code.
  int cli(std::vector<std::string> args, std::string* output = nullptr);
  void add_mailbox(const std::string& id, const std::string& account, const std::string& email, const std::string& host,
                   int port, const std::string& security = "none");
  // Starts `deliverd run` and waits until /readyz answers 200.
  void start();
  // Sends sig and waits for exit; returns the exit code (or 128+signal).
  int stop(int sig = 15, int timeout_ms = 30000);
  bool running();
  // Sends sig without waiting (SIGHUP: reload).
  void signal(int sig);
  // Whether the running daemon is stopped (SIGSTOP took effect: state T in /proc/<pid>/stat).
  bool stopped() const;
  int admin_port() const { return admin_port_; }
  // GET on the admin listener; returns the body and sets *status (0 if it could not connect).
  std::string http_get(const std::string& path, int* status = nullptr) const;
  std::string log() const;
  // Value of an unlabelled metric from /metrics (-1 if absent).
  double metric(const std::string& name) const;
  // From /proc/<pid>/status of the running daemon: peak resident set (VmHWM) and resident set
  // now (VmRSS), in KiB; -1 when it is not running.
  long long peak_rss_kb() const;
  long long rss_kb() const;
  pid_t pid() const;  // of the running daemon; 0 when it is not running

 private:
  Options o_;
  TempDir dir_{"deliverd-daemon"};
  std::string config_;
  int admin_port_ = 0;
  Process proc_;
};

// Redis, PostgreSQL and a deliverd configured for them and migrated: what every daemon test
// starts from. `customize` adjusts the options (allow list, extra TOML) before the config is written.
class DaemonStack {
 public:
  explicit DaemonStack(const std::function<void(DeliverdProcess::Options&)>& customize = {});
  RedisServer redis;
  PostgresServer pg;
  DeliverdProcess& daemon() { return *daemon_; }

 private:
  std::unique_ptr<DeliverdProcess> daemon_;
};

// One outcome event of the results stream (docs/job-schema.md), the fields tests look at.
struct ResultEvent {
  std::string job_id, account, status, phase, reason, detail, enhanced, next_attempt_at, first_delivered_at;
  int64_t code = 0;
  int attempt = 0;
  int64_t entry_ms = 0;  // when it was published (the results entry id's time)
};
// Every event of the results stream, oldest first.
std::vector<ResultEvent> all_events(RedisServer& redis);
// The results stream's events about mailboxes ({"event":"mailbox_disabled",…}), as JSON, oldest first.
std::vector<std::string> mailbox_events(RedisServer& redis);
// The latest event of each job.
std::map<std::string, ResultEvent> events_by_job(RedisServer& redis);
// Waits until every id has a final (not deferred) event; returns the latest event by job id.
std::map<std::string, ResultEvent> wait_for_final_events(RedisServer& redis, const std::vector<std::string>& ids,
                                                         int timeout_ms = 60000);
// Waits until every id has an event (or timeout_ms passes); returns all events by job id.
std::map<std::string, ResultEvent> wait_for_events(RedisServer& redis, const std::vector<std::string>& ids,
                                                   int timeout_ms = 60000);
// The event of one job, or an empty event (status "") after timeout_ms.
ResultEvent wait_for_event(RedisServer& redis, const std::string& id, int timeout_ms = 30000);

// Polls done() every 20 ms until it holds (true) or timeout_ms passes (false).
bool wait_until(const std::function<bool()>& done, int timeout_ms);

// An HTTP request with curl carrying an API key; the response body.
std::string curl(const std::string& method, const std::string& url, const std::string& token,
                 const std::string& body = {});

// A minimal valid job for mailbox/account.
std::string make_job(const std::string& id, const std::string& account, const std::string& mailbox,
                     const std::string& to, const std::string& extra_fields = "");

}  // namespace deliverd::testing
