// bench/inbound's measuring tool: N mailboxes (default 1,000), each with its own inbox on one
// private Dovecot (993, test CA, name from dnsmasq), watched by one deliverd. Reports
//   - memory per watcher: the daemon's RSS with every watcher idle, less its RSS with the same
//     mailboxes and [inbound] enabled = false, divided by N;
//   - how long until every watcher is in IDLE;
//   - CPU of the daemon while everything idles (30 s);
//   - time from the LMTP delivery of a reply into a mailbox to its event on deliverd:results
//     (the event's stream id), p50 / p99 / max over S replies (default 200) to messages the
//     daemon sent, one every 50 ms, spread over the mailboxes.
// Loopback only; bench/inbound runs it in a private network namespace.
#include <simdjson.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "store/mailboxes.h"
#include "store/pg_connection.h"
#include "store/secret_box.h"
#include "tests/integration/daemon/deliverd_process.h"
#include "tests/integration/fixtures/dns_server.h"
#include "tests/integration/fixtures/dovecot_server.h"
#include "tests/integration/fixtures/smtp_sink.h"
#include "tests/integration/fixtures/test_ca.h"

using namespace deliverd;
using namespace deliverd::testing;

namespace {

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream f(s.substr(s.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && f >> field; ++i)
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string reply(const std::string& from, const std::string& to, const std::string& original_id, int n) {
  return "From: " + from + "\r\nTo: " + to + "\r\nSubject: Re: hello\r\nMessage-ID: <load-" + std::to_string(n) +
         "@example.org>\r\nDate: Thu, 03 Dec 2026 10:02:00 +0000\r\nIn-Reply-To: <" + original_id +
         ">\r\n\r\nThanks.\r\n";
}

double percentile(std::vector<int64_t> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))]);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 1000, signals = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--mailboxes") n = std::atoi(argv[i + 1]);
    if (a == "--signals") signals = std::atoi(argv[i + 1]);
  }
  signals = std::min(signals, n);
  std::printf("inbound_load: %d watched mailboxes on one Dovecot, %d replies, %ld cores\n", n, signals,
              ::sysconf(_SC_NPROCESSORS_ONLN));

  TestCa ca;
  DovecotServer::Options dov;
  dov.ca = &ca;
  dov.cert_name = "imap.test";
  dov.users.clear();
  for (int i = 0; i < n; ++i) dov.users.push_back({"u" + std::to_string(i), "pw" + std::to_string(i)});
  // One imap process per connection (Dovecot's default); the login processes serve many each.
  dov.extra_config = "default_process_limit = " + std::to_string(n + 100) + "\ndefault_client_limit = " +
                     std::to_string(2 * n + 200) +
                     "\nservice imap {\n  process_limit = " + std::to_string(n + 100) +
                     "\n}\nservice imap-login {\n  service_count = 0\n  process_min_avail = 2\n  client_limit = " +
                     std::to_string(n + 100) + "\n}\n";
  DovecotServer dovecot(dov);
  SmtpSink sink(SmtpSink::Options::at_mail_port(2525));
  DnsServer::Options dso;
  dso.records = {DnsServer::host_record("imap.test", dovecot.host())};
  DnsServer dns(dso);
  RedisServer redis;
  PostgresServer pg;

  auto options = [&](bool inbound) {
    DeliverdProcess::Options o;
    o.redis_port = redis.port();
    o.pg_conninfo = pg.conninfo();
    o.consumer = "bench";
    o.extra_toml = "ca_file = \"" + ca.ca_file() + "\"\n\n[dns]\nservers = [\"" + dns.address() +
                   "\"]\n\n[inbound]\nenabled = " + (inbound ? "true" : "false") + "\nmax_watchers = " +
                   std::to_string(n + 10) + "\n";
    return o;
  };
  auto off = std::make_unique<DeliverdProcess>(options(false));
  std::string out;
  if (off->cli({"migrate"}, &out) != 0) {
    std::fprintf(stderr, "migrate failed: %s\n", out.c_str());
    return 1;
  }
  // Mailboxes written as `mailbox add` writes them (IMAP passwords sealed with the daemon's key),
  // in one statement: N command runs would take longer than the measurement.
  TempDir keys("deliverd-inbound-load");
  write_secret_file(keys.file("k"), "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
  auto box = store::SecretBox::from_key_file(keys.file("k"), {});
  if (!box) {
    std::fprintf(stderr, "key: %s\n", box.error().c_str());
    return 1;
  }
  std::string sql =
      "INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port, security, imap_host, imap_port,"
      " imap_username, imap_password_enc) VALUES ";
  for (int i = 0; i < n; ++i) {
    const std::string id = "mbx_" + std::to_string(i), account = "acct_" + std::to_string(i);
    const std::string sealed =
        store::encode_bytea(store::seal_mailbox_secret(*box, "pw" + std::to_string(i), account, id,
                                                       store::MailboxSecret::ImapPassword));
    sql += (i ? ", ('" : "('") + id + "', '" + account + "', 'u" + std::to_string(i) + "@acme.example', '" +
           sink.host() + "', 2525, 'none', 'imap.test', 993, 'u" + std::to_string(i) + "', '" + sealed + "'::bytea)";
  }
  pg.exec(sql);

  // Baseline: the same daemon and mailboxes, nothing watched.
  off->start();
  std::this_thread::sleep_for(std::chrono::seconds(5));
  const long long base_kb = off->rss_kb();
  off->stop();
  off.reset();

  auto on = std::make_unique<DeliverdProcess>(options(true));
  const int64_t t0 = wall_ms();
  on->start();
  const bool all_idle = wait_until(
      [&] { return pg.scalar("SELECT count(*) FROM inbound_watch WHERE state = 'idle'") == std::to_string(n); },
      300000);
  const int64_t idle_ms = wall_ms() - t0;
  if (!all_idle) {
    std::fprintf(stderr, "only %s of %d watchers reached IDLE in 300 s\n",
                 pg.scalar("SELECT count(*) FROM inbound_watch WHERE state = 'idle'").c_str(), n);
    std::fprintf(stderr, "%s\n", on->log().substr(0, 4000).c_str());
    return 1;
  }
  std::this_thread::sleep_for(std::chrono::seconds(5));
  const long long idle_kb = on->rss_kb();
  const pid_t pid = on->pid();
  const double cpu0 = cpu_seconds(pid);
  std::this_thread::sleep_for(std::chrono::seconds(30));
  const double idle_cpu = (cpu_seconds(pid) - cpu0) / 30.0;

  // Messages to reply to: one job per mailbox that gets a reply.
  std::vector<std::string> ids, jobs;
  for (int i = 0; i < signals; ++i) {
    ids.push_back("load-" + std::to_string(i));
    jobs.push_back(make_job(ids.back(), "acct_" + std::to_string(i), "mbx_" + std::to_string(i),
                            "rcpt" + std::to_string(i) + "@example.org"));
  }
  redis.xadd_jobs("deliverd:jobs", jobs);
  wait_for_final_events(redis, ids, 120000);
  std::map<std::string, int64_t> sent_at;
  for (int i = 0; i < signals; ++i) {
    const std::string mid =
        pg.scalar("SELECT message_id FROM delivery_events WHERE job_id = '" + ids[i] + "' AND status = 'delivered'");
    dovecot.deliver("u" + std::to_string(i), reply("rcpt" + std::to_string(i) + "@example.org",
                                                   "u" + std::to_string(i) + "@acme.example", mid, i));
    sent_at[ids[i]] = wall_ms();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::vector<int64_t> latency;
  wait_until(
      [&] {
        latency.clear();
        simdjson::dom::parser parser;
        for (const auto& e : redis.xrange("deliverd:results")) {
          simdjson::dom::element j = parser.parse(e.fields.at("event"));
          auto ev = j["event"].get_string();
          if (ev.error() || ev.value() != "reply") continue;
          auto it = sent_at.find(std::string(j["job_id"].get_string().value()));
          if (it != sent_at.end()) latency.push_back(std::atoll(e.id.c_str()) - it->second);
        }
        return latency.size() >= static_cast<size_t>(signals);
      },
      60000);

  std::printf("watchers idle:           %d of %d after %.1f s\n", n, n, static_cast<double>(idle_ms) / 1000.0);
  std::printf("daemon RSS:              %lld KiB without watchers, %lld KiB with %d idle watchers\n", base_kb, idle_kb,
              n);
  std::printf("memory per watcher:      %.1f KiB\n", static_cast<double>(idle_kb - base_kb) / n);
  std::printf("CPU while idle:          %.2f %% of a core (30 s)\n", idle_cpu * 100.0);
  std::printf("APPEND -> event:         %zu of %d; p50 %.0f ms, p99 %.0f ms, max %.0f ms\n", latency.size(), signals,
              percentile(latency, 0.5), percentile(latency, 0.99), percentile(latency, 1.0));
  on->stop();
  return latency.size() == static_cast<size_t>(signals) ? 0 : 1;
}
