#pragma once
// deliverd.toml, loaded and validated once at start-up (and on reload). Every error names the
// file, the line and the key, so an operator can fix it without reading the code.
#include <string>
#include <vector>

#include "core/result.h"

namespace deliverd::daemon {

struct Config {
  std::string path;

  // [daemon]
  std::string hostname;            // EHLO name and Message-ID domain; default: the host's name
  std::string log_level = "info";  // debug | info | warn | error
  int shutdown_grace_s = 30;       // SIGTERM: how long in-flight deliveries may take to finish

  // [redis]
  std::string redis_url = "redis://127.0.0.1:6379";
  std::string stream = "deliverd:jobs";
  std::string group = "deliverd";
  std::string consumer;  // default: hostname (stable across restarts)
  std::string results_stream = "deliverd:results";
  std::string dead_stream = "deliverd:dead";
  int results_maxlen = 1000000;
  int max_inflight = 512;
  int block_ms = 1000;

  // [postgres]
  std::string pg_conninfo = "host=127.0.0.1 dbname=deliverd";

  // [admin]
  std::string admin_listen = "127.0.0.1:8025";

  // [security]
  std::vector<std::string> allow_private_targets;
  std::string secret_key_file;

  // [dns]
  std::vector<std::string> dns_servers;  // empty: the system's resolv.conf
  int dns_timeout_ms = 3000;
  int dns_tries = 2;
  int dns_max_ttl_s = 3600;      // answers are cached for their TTL, capped here
  int dns_negative_ttl_s = 60;   // NXDOMAIN / no-data answers are cached this long
  int dns_cache_entries = 100000;

  // [smtp] (seconds; RFC 5321 4.5.3.2 defaults)
  int smtp_connect_timeout_s = 30;
  int smtp_banner_timeout_s = 300;
  int smtp_command_timeout_s = 300;
  int smtp_data_timeout_s = 120;
  int smtp_data_end_timeout_s = 600;
  int smtp_session_timeout_s = 1800;
};

// Reads and validates; the error is "FILE:LINE: [table] key: what is wrong".
core::Result<Config, std::string> load_config(const std::string& path);

}  // namespace deliverd::daemon
