#include "tests/integration/daemon/deliverd_process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

namespace deliverd::testing {

namespace {
std::string binary() {
  const char* b = std::getenv("DELIVERD_BINARY");
  if (!b) throw std::runtime_error("DELIVERD_BINARY is not set (run through ctest)");
  return b;
}
}  // namespace

DeliverdProcess::DeliverdProcess(Options o) : o_(std::move(o)) {
  admin_port_ = free_port();
  config_ = dir_.file("deliverd.toml");
  write_secret_file(dir_.file("secret.key"), "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
  std::string allow;
  for (const auto& c : o_.allow_private_targets) allow += (allow.empty() ? "\"" : ", \"") + c + "\"";
  std::string t = std::to_string(o_.smtp_timeout_s);
  std::string redis_url = o_.redis_url.empty() ? "redis://127.0.0.1:" + std::to_string(o_.redis_port) : o_.redis_url;
  write_file(config_, "[daemon]\nhostname = \"deliverd.test\"\nlog_level = \"info\"\nshutdown_grace_s = " +
                          std::to_string(o_.shutdown_grace_s) +
                          "\n\n[redis]\nurl = \"" + redis_url +
                          "\"\nconsumer = \"" + o_.consumer + "\"\nmax_inflight = " + std::to_string(o_.max_inflight) +
                          "\nblock_ms = 200\n" + o_.redis_extra + "\n\n[postgres]\nconninfo = \"" + o_.pg_conninfo +
                          "\"\n\n[admin]\nlisten = \"127.0.0.1:" + std::to_string(admin_port_) +
                          "\"\n\n[security]\nsecret_key_file = \"" + dir_.file("secret.key") +
                          "\"\nallow_private_targets = [" + allow + "]\n\n[policy]\n" + o_.policy_toml +
                          "\n[smtp]\nconnect_timeout_s = " + t +
                          "\nbanner_timeout_s = " + t + "\ncommand_timeout_s = " + t + "\ndata_timeout_s = " + t +
                          "\ndata_end_timeout_s = " + t + "\n" + o_.extra_toml);
}

DeliverdProcess::~DeliverdProcess() {
  if (running()) stop(15, 15000);
}

int DeliverdProcess::cli(std::vector<std::string> args, std::string* output) {
  std::vector<std::string> argv = {binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--config");
  argv.push_back(config_);
  return run_command(argv, output);
}

void DeliverdProcess::add_mailbox(const std::string& id, const std::string& account, const std::string& email,
                                  const std::string& host, int port, const std::string& security) {
  std::string out;
  int rc = cli({"mailbox", "add", "--id", id, "--account", account, "--email", email, "--smtp-host", host,
                "--smtp-port", std::to_string(port), "--security", security},
               &out);
  if (rc != 0) throw std::runtime_error("mailbox add failed: " + out);
}

void DeliverdProcess::start() {
  std::string out;
  if (cli({"migrate"}, &out) != 0) throw std::runtime_error("migrate failed: " + out);
  proc_ = Process({binary(), "run", "--config", config_}, dir_.file("deliverd.log"), o_.env);
  long long deadline = now_ms() + 30000;
  while (now_ms() < deadline) {
    int status = 0;
    http_get("/readyz", &status);
    if (status == 200) return;
    if (!proc_.running()) throw std::runtime_error("deliverd exited at start:\n" + log());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("deliverd not ready in 30 s:\n" + log());
}

bool DeliverdProcess::running() { return proc_.running(); }

void DeliverdProcess::signal(int sig) { proc_.signal(sig); }

bool DeliverdProcess::stopped() const {
  std::string stat = read_file("/proc/" + std::to_string(proc_.pid()) + "/stat");
  size_t paren = stat.rfind(')');  // the name may hold spaces; the state follows the last ')'
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'T';
}

int DeliverdProcess::stop(int sig, int timeout_ms) {
  proc_.signal(sig);
  int st = proc_.wait(timeout_ms);
  if (st == -1) {
    proc_.stop(1000);
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string DeliverdProcess::http_get(const std::string& path, int* status) const {
  if (status) *status = 0;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(admin_port_));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return {};
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) < 0) {
    ::close(fd);
    return {};
  }
  std::string resp;
  char buf[65536];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  if (resp.size() < 12) return {};
  if (status) *status = std::atoi(resp.substr(9, 3).c_str());
  auto body = resp.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : resp.substr(body + 4);
}

double DeliverdProcess::metric(const std::string& name) const {
  std::string text = http_get("/metrics");
  std::string needle = "\n" + name + " ";
  auto pos = text.find(needle);
  if (pos == std::string::npos) return -1;
  return std::atof(text.c_str() + pos + needle.size());
}

namespace {

long long status_kb(pid_t pid, const std::string& key) {
  if (pid <= 0) return -1;
  const std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
  auto pos = status.find("\n" + key + ":");
  if (pos == std::string::npos) return -1;
  return std::atoll(status.c_str() + pos + key.size() + 2);
}

}  // namespace

long long DeliverdProcess::peak_rss_kb() const { return status_kb(proc_.pid(), "VmHWM"); }
long long DeliverdProcess::rss_kb() const { return status_kb(proc_.pid(), "VmRSS"); }
pid_t DeliverdProcess::pid() const { return proc_.pid(); }

std::string DeliverdProcess::log() const { return read_file(dir_.file("deliverd.log")); }

DaemonStack::DaemonStack(const std::function<void(DeliverdProcess::Options&)>& customize) {
  DeliverdProcess::Options o;
  o.redis_port = redis.port();
  o.pg_conninfo = pg.conninfo();
  if (customize) customize(o);
  daemon_ = std::make_unique<DeliverdProcess>(o);
  std::string out;
  if (daemon_->cli({"migrate"}, &out) != 0) throw std::runtime_error("migrate failed: " + out);
}

std::vector<ResultEvent> all_events(RedisServer& redis) {
  std::vector<ResultEvent> out;
  simdjson::dom::parser parser;
  for (const auto& entry : redis.xrange("deliverd:results")) {
    simdjson::dom::element e = parser.parse(entry.fields.at("event"));
    if (!e["event"].error()) continue;  // about a mailbox, not a job's outcome
    ResultEvent ev;
    ev.job_id = std::string(e["job_id"].get_string().value());
    ev.account = std::string(e["account"].get_string().value());
    ev.status = std::string(e["status"].get_string().value());
    ev.phase = std::string(e["phase"].get_string().value());
    ev.reason = std::string(e["reason"].get_string().value());
    ev.detail = std::string(e["detail"].get_string().value());
    auto code = e["reply"]["code"].get_int64();
    if (!code.error()) ev.code = code.value();
    ev.enhanced = std::string(e["reply"]["enhanced"].get_string().value());
    ev.attempt = static_cast<int>(e["attempt"].get_int64().value());
    auto next = e["next_attempt_at"].get_string();
    if (!next.error()) ev.next_attempt_at = std::string(next.value());
    auto first = e["first_delivered_at"].get_string();
    if (!first.error()) ev.first_delivered_at = std::string(first.value());
    ev.entry_ms = std::atoll(entry.id.c_str());
    out.push_back(std::move(ev));
  }
  return out;
}

std::vector<std::string> mailbox_events(RedisServer& redis) {
  std::vector<std::string> out;
  simdjson::dom::parser parser;
  for (const auto& entry : redis.xrange("deliverd:results")) {
    const std::string& json = entry.fields.at("event");
    if (!parser.parse(json)["event"].error()) out.push_back(json);
  }
  return out;
}

std::map<std::string, ResultEvent> events_by_job(RedisServer& redis) {
  std::map<std::string, ResultEvent> out;
  for (auto& ev : all_events(redis)) out[ev.job_id] = ev;
  return out;
}

std::map<std::string, ResultEvent> wait_for_final_events(RedisServer& redis, const std::vector<std::string>& ids,
                                                         int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    auto all = events_by_job(redis);
    size_t found = 0;
    for (const auto& id : ids) {
      auto it = all.find(id);
      found += it != all.end() && it->second.status != "deferred";
    }
    if (found == ids.size() || now_ms() > deadline) return all;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::map<std::string, ResultEvent> wait_for_events(RedisServer& redis, const std::vector<std::string>& ids,
                                                   int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  for (;;) {
    auto all = events_by_job(redis);
    size_t found = 0;
    for (const auto& id : ids) found += all.count(id);
    if (found == ids.size() || now_ms() > deadline) return all;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

ResultEvent wait_for_event(RedisServer& redis, const std::string& id, int timeout_ms) {
  auto all = wait_for_events(redis, {id}, timeout_ms);
  auto it = all.find(id);
  return it == all.end() ? ResultEvent{} : it->second;
}

bool wait_until(const std::function<bool()>& done, int timeout_ms) {
  long long deadline = now_ms() + timeout_ms;
  while (!done()) {
    if (now_ms() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string curl(const std::string& method, const std::string& url, const std::string& token,
                 const std::string& body) {
  std::vector<std::string> argv = {"curl", "-s", "-X", method, "-H", "Authorization: Bearer " + token, url};
  if (!body.empty()) argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
  std::string out;
  run_command(argv, &out);
  return out;
}

std::string make_job(const std::string& id, const std::string& account, const std::string& mailbox,
                     const std::string& to, const std::string& extra_fields) {
  return "{\"v\":1,\"id\":\"" + id + "\",\"account\":\"" + account + "\",\"mailbox\":\"" + mailbox +
         "\",\"to\":{\"email\":\"" + to + "\",\"name\":\"Bob\"},\"subject\":\"Hello " + id +
         "\",\"text\":\"Hi there,\\n.leading dot line\\nbye\"" + extra_fields + "}";
}

}  // namespace deliverd::testing
