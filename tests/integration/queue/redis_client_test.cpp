// RedisClient against a real redis-server, and against a scripted fake server for the cases a
// real one will not produce on demand (replies split byte by byte, garbage, silence, huge reply).
#include "queue/redis_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/metrics.h"
#include "tests/integration/fixtures/redis_sentinel.h"
#include "tests/integration/fixtures/redis_server.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/queue/test_loop.h"

namespace deliverd::queue {
namespace {

using deliverd::testing::RedisServer;
using deliverd::testing::TestLoop;

RedisConfig config_for(int port) {
  RedisConfig cfg;
  cfg.port = port;
  cfg.connect_timeout_ms = 5000;
  return cfg;
}

// Connects a fresh client and runs the loop until the handshake finished.
RedisClient* connect_client(TestLoop& loop, const RedisConfig& cfg) {
  RedisClient* c = RedisClient::create(loop.get(), cfg);
  bool done = false, ok = false;
  std::string error;
  c->connect([&](bool k, const std::string& e) {
    done = true;
    ok = k;
    error = e;
  });
  EXPECT_TRUE(loop.run_until([&] { return done; }));
  EXPECT_TRUE(ok) << error;
  return c;
}

// One loopback connection served by a thread running `session` on the accepted socket.
class FakeServer {
 public:
  explicit FakeServer(std::function<void(int fd)> session) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(listen_fd_, 4);
    thread_ = std::thread([this, session = std::move(session)] {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1) return;
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      session(fd);
      ::close(fd);
    });
  }
  ~FakeServer() {
    thread_.join();
    ::close(listen_fd_);
  }
  int port() const { return port_; }

  // Reads until n bytes arrived (or the peer went away); returns what was read.
  static std::string read_bytes(int fd, size_t n) {
    std::string got;
    char buf[4096];
    while (got.size() < n) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1) break;
      ssize_t r = ::read(fd, buf, sizeof buf);
      if (r <= 0) break;
      got.append(buf, static_cast<size_t>(r));
    }
    return got;
  }
  // Waits until the client closes the connection (bounded).
  static void wait_for_close(int fd) {
    char buf[4096];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1) return;
      if (::read(fd, buf, sizeof buf) <= 0) return;
    }
  }

 private:
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

TEST(RedisClient, RunsCommandsAndCopiesEveryReplyType) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = connect_client(loop, config_for(redis.port()));
  ASSERT_TRUE(c->connected());
  std::vector<RedisReply> replies;
  auto keep = [&](const RedisReply& r) { replies.push_back(r); };
  c->command({"SET", "k", std::string("a\0b\r\n", 5)}, keep);
  c->command({"GET", "k"}, keep);
  c->command({"GET", "missing"}, keep);
  c->command({"INCRBY", "n", "41"}, keep);
  c->command({"RPUSH", "l", "x", "y"}, keep);
  c->command({"LRANGE", "l", "0", "-1"}, keep);
  ASSERT_TRUE(loop.run_until([&] { return replies.size() == 6; }));
  EXPECT_EQ(replies[0].type, RedisReply::Type::Status);
  EXPECT_EQ(replies[0].str, "OK");
  EXPECT_EQ(replies[1].type, RedisReply::Type::String);
  EXPECT_EQ(replies[1].str, std::string("a\0b\r\n", 5));  // binary-safe both ways
  EXPECT_EQ(replies[2].type, RedisReply::Type::Nil);
  EXPECT_EQ(replies[3].type, RedisReply::Type::Integer);
  EXPECT_EQ(replies[3].integer, 41);
  ASSERT_EQ(replies[5].type, RedisReply::Type::Array);
  ASSERT_EQ(replies[5].elements.size(), 2u);
  EXPECT_EQ(replies[5].elements[1].str, "y");
  c->close();
}

TEST(RedisClient, ServerErrorIsAReplyAndTheConnectionStaysUp) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = connect_client(loop, config_for(redis.port()));
  std::vector<RedisReply> replies;
  c->command({"SET", "s", "text"}, [&](const RedisReply& r) { replies.push_back(r); });
  c->command({"INCR", "s"}, [&](const RedisReply& r) { replies.push_back(r); });
  c->command({"NOSUCHCOMMAND"}, [&](const RedisReply& r) { replies.push_back(r); });
  c->command({"PING"}, [&](const RedisReply& r) { replies.push_back(r); });
  ASSERT_TRUE(loop.run_until([&] { return replies.size() == 4; }));
  EXPECT_TRUE(replies[1].is_error());
  EXPECT_FALSE(replies[1].connection_error);
  EXPECT_EQ(replies[1].error_code(), "ERR");
  EXPECT_TRUE(replies[2].is_error());
  EXPECT_EQ(replies[3].str, "PONG");
  EXPECT_TRUE(c->connected());
  c->close();
}

TEST(RedisClient, PipelinesAThousandCommandsInOrder) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = connect_client(loop, config_for(redis.port()));
  std::vector<long long> got;
  for (int i = 0; i < 1000; ++i)
    c->command({"INCR", "counter"}, [&](const RedisReply& r) { got.push_back(r.integer); });
  // All 1,000 are written before the first reply is read.
  EXPECT_EQ(c->pending(), 1000u);
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 1000; }));
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(got[static_cast<size_t>(i)], i + 1);
  EXPECT_EQ(c->pending(), 0u);
  EXPECT_EQ(redis.command({"GET", "counter"}), "1000");
  c->close();
}

// Commands are gathered and written once per loop turn. One made in a timer callback, with no
// I/O to wake the loop, must still go out before the loop waits: here the loop runs without the
// test loop's wake-up tick, so a command left in the buffer would wait for its timeout.
TEST(RedisClient, ACommandMadeInATimerCallbackGoesOutBeforeTheLoopWaits) {
  RedisServer redis;
  TestLoop loop;
  RedisConfig cfg = config_for(redis.port());
  cfg.command_timeout_ms = 3000;
  RedisClient* c = connect_client(loop, cfg);
  struct Ctx {
    RedisClient* client;
    std::optional<RedisReply> reply;
  } ctx{c, std::nullopt};
  uv_timer_t timer;
  uv_timer_init(loop.get(), &timer);
  timer.data = &ctx;
  uv_timer_start(
      &timer,
      [](uv_timer_t* t) {
        auto* x = static_cast<Ctx*>(t->data);
        x->client->command({"PING"}, [x](const RedisReply& r) { x->reply = r; });
      },
      1, 0);
  for (int i = 0; i < 5 && !ctx.reply; ++i) uv_run(loop.get(), UV_RUN_ONCE);
  ASSERT_TRUE(ctx.reply);
  EXPECT_EQ(ctx.reply->str, "PONG") << "the command waited in the buffer until it timed out";
  EXPECT_TRUE(c->connected());
  uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  c->close();
}

// calls=N of one command in INFO commandstats (0 if it never ran).
long long calls_of(RedisServer& redis, const std::string& command) {
  const std::string info = redis.command({"INFO", "commandstats"});
  const std::string key = "cmdstat_" + command + ":calls=";
  auto pos = info.find(key);
  return pos == std::string::npos ? 0 : std::atoll(info.c_str() + pos + key.size());
}

TEST(RedisClient, ScriptsRunByHashAfterOneLoadPerConnection) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = connect_client(loop, config_for(redis.port()));
  static const LuaScript incr{"return redis.call('INCRBY', KEYS[1], ARGV[1])"};
  std::vector<long long> got;
  auto run = [&](const std::string& by) {
    c->eval(incr, {"1", "n", by}, [&](const RedisReply& r) { got.push_back(r.is_error() ? -1 : r.integer); });
  };
  for (int i = 0; i < 101; ++i) run(i == 0 ? "5" : "1");
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 101; }));
  EXPECT_EQ(got.front(), 5);
  EXPECT_EQ(got.back(), 105);
  EXPECT_EQ(redis.command({"SCRIPT", "EXISTS", incr.sha1()}), "[1]") << "our hash is the server's name for it";
  EXPECT_EQ(calls_of(redis, "script|load"), 1) << "the body went once";
  EXPECT_EQ(calls_of(redis, "evalsha"), 101);
  EXPECT_EQ(calls_of(redis, "eval"), 0);

  // A server that forgot it (SCRIPT FLUSH) mid-connection: the call is sent again with the body.
  redis.command({"SCRIPT", "FLUSH"});
  run("10");
  ASSERT_TRUE(loop.run_until([&] { return got.size() == 102; }));
  EXPECT_EQ(got.back(), 115);
  EXPECT_EQ(calls_of(redis, "eval"), 1);

  // A script error is the caller's reply, not a reason to resend.
  static const LuaScript broken{"return redis.call('NOSUCHCOMMAND')"};
  RedisReply error;
  bool done = false;
  c->eval(broken, {"0"}, [&](const RedisReply& r) {
    error = r;
    done = true;
  });
  ASSERT_TRUE(loop.run_until([&] { return done; }));
  EXPECT_TRUE(error.is_error());
  EXPECT_FALSE(error.connection_error);
  EXPECT_TRUE(c->connected());
  c->close();
}

// A script call made from a reply's callback runs after the calls made before it, even on a
// server that has never seen the script (policy scripts compare clocks across calls).
TEST(RedisClient, ScriptCallsRunInTheOrderTheyWereMade) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = connect_client(loop, config_for(redis.port()));
  static const LuaScript push{"return redis.call('RPUSH', KEYS[1], ARGV[1])"};
  int replies = 0;
  auto count = [&](const RedisReply& r) {
    EXPECT_FALSE(r.is_error()) << r.str;
    ++replies;
  };
  c->eval(push, {"1", "order", "1"}, count);
  c->command({"PING"}, [&](const RedisReply&) { c->eval(push, {"1", "order", "3"}, count); });
  c->eval(push, {"1", "order", "2"}, count);
  ASSERT_TRUE(loop.run_until([&] { return replies == 3; }));
  EXPECT_EQ(redis.command({"LRANGE", "order", "0", "-1"}), "[1, 2, 3]");
  c->close();
}

TEST(RedisClient, CommandsIssuedBeforeConnectWaitForTheHandshake) {
  RedisServer redis({"--requirepass", "s3cret"});
  TestLoop loop;
  RedisConfig cfg = config_for(redis.port());
  cfg.password = "s3cret";
  cfg.db = 2;
  RedisClient* c = RedisClient::create(loop.get(), cfg);
  RedisReply set_reply;
  bool set_done = false, connected = false;
  c->command({"SET", "in-db-2", "yes"}, [&](const RedisReply& r) {
    set_reply = r;
    set_done = true;
  });
  c->connect([&](bool ok, const std::string& e) {
    EXPECT_TRUE(ok) << e;
    connected = ok;
  });
  ASSERT_TRUE(loop.run_until([&] { return set_done && connected; }));
  EXPECT_EQ(set_reply.str, "OK");
  EXPECT_EQ(redis.command({"GET", "in-db-2"}), "(nil)");
  EXPECT_EQ(redis.command({"SELECT", "2"}), "OK");
  EXPECT_EQ(redis.command({"GET", "in-db-2"}), "yes");
  c->close();
}

TEST(RedisClient, AuthWithUsernameAndWrongPassword) {
  RedisServer redis;
  redis.command({"ACL", "SETUSER", "deliverd", "on", ">pw1", "~*", "+@all"});
  TestLoop loop;
  RedisConfig cfg = config_for(redis.port());
  cfg.username = "deliverd";
  cfg.password = "pw1";
  RedisClient* good = connect_client(loop, cfg);
  RedisReply who;
  bool done = false;
  good->command({"ACL", "WHOAMI"}, [&](const RedisReply& r) {
    who = r;
    done = true;
  });
  ASSERT_TRUE(loop.run_until([&] { return done; }));
  EXPECT_EQ(who.str, "deliverd");
  good->close();

  cfg.password = "wrong";
  RedisClient* bad = RedisClient::create(loop.get(), cfg);
  bool failed = false;
  std::string error;
  bad->connect([&](bool ok, const std::string& e) {
    failed = !ok;
    error = e;
  });
  ASSERT_TRUE(loop.run_until([&] { return failed; }));
  EXPECT_NE(error.find("AUTH failed"), std::string::npos) << error;
  EXPECT_EQ(error.find("wrong"), std::string::npos) << "the password must not appear in errors";
  EXPECT_FALSE(bad->connected());
  bad->close();
}

TEST(RedisClient, ConnectionRefusedAndBadHostAreReported) {
  TestLoop loop;
  const int port = deliverd::testing::free_port();  // nothing listens there
  RedisClient* c = RedisClient::create(loop.get(), config_for(port));
  bool done = false, ok = true;
  c->connect([&](bool k, const std::string&) {
    done = true;
    ok = k;
  });
  bool cmd_done = false;
  RedisReply cmd_reply;
  c->command({"PING"}, [&](const RedisReply& r) {
    cmd_done = true;
    cmd_reply = r;
  });
  ASSERT_TRUE(loop.run_until([&] { return done && cmd_done; }));
  EXPECT_FALSE(ok);
  EXPECT_TRUE(cmd_reply.connection_error);
  c->close();

  RedisConfig named = config_for(6379);
  named.host = "redis.example.org";
  RedisClient* n = RedisClient::create(loop.get(), named);
  std::string error;
  bool called_inline = true, n_done = false;
  n->connect([&](bool, const std::string& e) {
    error = e;
    n_done = true;
  });
  called_inline = n_done;
  ASSERT_TRUE(loop.run_until([&] { return n_done; }));
  EXPECT_FALSE(called_inline) << "callbacks never run inside connect()";
  EXPECT_NE(error.find("IP address"), std::string::npos) << error;
  n->close();
}

TEST(RedisClient, RepliesSplitAtEveryByteAreReassembled) {
  const std::string response = "+OK\r\n*3\r\n$5\r\nhello\r\n*2\r\n:42\r\n$-1\r\n$0\r\n\r\n-ERR bad thing\r\n:-7\r\n";
  FakeServer server([&](int fd) {
    FakeServer::read_bytes(fd, 4 * 14);  // four "*1\r\n$4\r\nPING\r\n"
    for (size_t i = 0; i < response.size(); i += 1 + i % 3) {
      size_t n = std::min<size_t>(1 + i % 3, response.size() - i);
      if (::send(fd, response.data() + i, n, MSG_NOSIGNAL) < 0) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    FakeServer::wait_for_close(fd);
  });
  TestLoop loop;
  RedisClient* c = connect_client(loop, config_for(server.port()));
  std::vector<RedisReply> replies;
  for (int i = 0; i < 4; ++i) c->command({"PING"}, [&](const RedisReply& r) { replies.push_back(r); });
  ASSERT_TRUE(loop.run_until([&] { return replies.size() == 4; }));
  EXPECT_EQ(replies[0].str, "OK");
  ASSERT_EQ(replies[1].type, RedisReply::Type::Array);
  ASSERT_EQ(replies[1].elements.size(), 3u);
  EXPECT_EQ(replies[1].elements[0].str, "hello");
  EXPECT_EQ(replies[1].elements[1].elements[0].integer, 42);
  EXPECT_EQ(replies[1].elements[1].elements[1].type, RedisReply::Type::Nil);
  EXPECT_EQ(replies[1].elements[2].type, RedisReply::Type::String);
  EXPECT_EQ(replies[1].elements[2].str, "");
  EXPECT_EQ(replies[2].str, "ERR bad thing");
  EXPECT_FALSE(replies[2].connection_error);
  EXPECT_EQ(replies[3].integer, -7);
  EXPECT_TRUE(c->connected());
  c->close();
}

// Runs one command against a fake server session and returns the reply and whether the
// disconnect handler ran.
struct FailureResult {
  RedisReply reply;
  bool disconnected = false;
  std::string reason;
};
FailureResult fail_with(const std::function<void(int)>& session, RedisConfig cfg_overrides) {
  FakeServer server(session);
  TestLoop loop;
  cfg_overrides.port = server.port();
  RedisClient* c = connect_client(loop, cfg_overrides);
  FailureResult out;
  c->set_disconnect_handler([&](const std::string& reason) {
    out.disconnected = true;
    out.reason = reason;
  });
  bool done = false, second_done = false;
  RedisReply second;
  c->command({"GET", "x"}, [&](const RedisReply& r) {
    out.reply = r;
    done = true;
  });
  c->command({"GET", "y"}, [&](const RedisReply& r) {
    second = r;
    second_done = true;
  });
  EXPECT_TRUE(loop.run_until([&] { return done && second_done && out.disconnected; }));
  EXPECT_TRUE(second.connection_error) << "every pending command is failed, not only the first";
  EXPECT_FALSE(c->connected());
  // A command after the failure is answered (later) with an error, not silently lost.
  bool late = false;
  c->command({"PING"}, [&](const RedisReply& r) { late = r.connection_error; });
  EXPECT_TRUE(loop.run_until([&] { return late; }));
  c->close();
  return out;
}

TEST(RedisClient, ProtocolGarbageFailsTheConnection) {
  auto r = fail_with(
      [](int fd) {
        FakeServer::read_bytes(fd, 1);
        (void)!::send(fd, "!nonsense\r\n", 11, MSG_NOSIGNAL);
        FakeServer::wait_for_close(fd);
      },
      RedisConfig{});
  EXPECT_TRUE(r.reply.connection_error);
  EXPECT_NE(r.reason.find("protocol"), std::string::npos) << r.reason;
}

TEST(RedisClient, ReplyLargerThanTheLimitFailsTheConnection) {
  RedisConfig cfg;
  cfg.max_reply_bytes = 64 * 1024;
  auto r = fail_with(
      [](int fd) {
        FakeServer::read_bytes(fd, 1);
        std::string chunk = "$10000000\r\n" + std::string(16384, 'x');
        for (int i = 0; i < 64; ++i)
          if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0) break;
        FakeServer::wait_for_close(fd);
      },
      cfg);
  EXPECT_TRUE(r.reply.connection_error);
  EXPECT_NE(r.reason.find("larger than"), std::string::npos) << r.reason;
}

TEST(RedisClient, CommandTimeoutFailsTheConnection) {
  RedisConfig cfg;
  cfg.command_timeout_ms = 300;
  auto r = fail_with([](int fd) { FakeServer::wait_for_close(fd); }, cfg);
  EXPECT_TRUE(r.reply.connection_error);
  EXPECT_NE(r.reason.find("timeout"), std::string::npos) << r.reason;
}

TEST(RedisClient, HandshakeTimeoutFailsConnect) {
  FakeServer server([](int fd) { FakeServer::wait_for_close(fd); });  // accepts, never answers AUTH
  TestLoop loop;
  RedisConfig cfg = config_for(server.port());
  cfg.password = "pw";
  cfg.connect_timeout_ms = 300;
  RedisClient* c = RedisClient::create(loop.get(), cfg);
  bool done = false;
  std::string error;
  c->connect([&](bool ok, const std::string& e) {
    EXPECT_FALSE(ok);
    error = e;
    done = true;
  });
  ASSERT_TRUE(loop.run_until([&] { return done; }));
  EXPECT_NE(error.find("timeout"), std::string::npos) << error;
  c->close();
}

TEST(RedisClient, ServerKilledFailsPendingCallbacksWithoutCrashing) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = connect_client(loop, config_for(redis.port()));
  bool disconnected = false;
  c->set_disconnect_handler([&](const std::string&) { disconnected = true; });
  int errors = 0, blocked_errors = 0;
  // A blocking command that would wait 30 s, and normal commands queued behind it.
  c->command({"BLPOP", "nothing", "30"}, [&](const RedisReply& r) { blocked_errors += r.connection_error; },
             40000);
  for (int i = 0; i < 100; ++i) c->command({"PING"}, [&](const RedisReply& r) { errors += r.connection_error; });
  loop.run_for(100);
  redis.kill();
  ASSERT_TRUE(loop.run_until([&] { return disconnected && errors == 100 && blocked_errors == 1; }));
  EXPECT_FALSE(c->connected());
  EXPECT_EQ(c->pending(), 0u);
  c->close();
}

TEST(RedisClient, CloseDropsPendingCallbacks) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = connect_client(loop, config_for(redis.port()));
  int called = 0;
  for (int i = 0; i < 10; ++i) c->command({"PING"}, [&](const RedisReply&) { ++called; });
  c->close();
  loop.run_for(100);
  EXPECT_EQ(called, 0);
}

TEST(RedisClient, CloseFromInsideACallbackIsSafe) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = connect_client(loop, config_for(redis.port()));
  int called = 0;
  for (int i = 0; i < 10; ++i)
    c->command({"PING"}, [&](const RedisReply&) {
      ++called;
      c->close();
    });
  loop.run_for(200);
  EXPECT_EQ(called, 1);
}

// ---- TLS (rediss://) ----

RedisConfig tls_config(const RedisServer& redis, const std::string& ca_file) {
  auto parsed = parse_redis_url(redis.tls_url());
  EXPECT_TRUE(parsed.ok());
  RedisConfig cfg = parsed.value();
  cfg.ca_file = ca_file;
  return cfg;
}

double connected_value(const std::string& name) {
  return core::Registry::global().gauge("deliverd_redis_connected", "", {"conn"}).with({name}).value();
}
double reconnects_value(const std::string& name) {
  return core::Registry::global().counter("deliverd_redis_reconnects_total", "", {"conn"}).with({name}).value();
}

// Runs one command and the loop until its reply came.
RedisReply run_command(TestLoop& loop, RedisClient* c, std::vector<std::string> argv) {
  RedisReply reply;
  bool done = false;
  c->command(std::move(argv), [&](const RedisReply& r) {
    reply = r;
    done = true;
  });
  EXPECT_TRUE(loop.run_until([&] { return done; }));
  return reply;
}

// Connects and returns the connect callback's error ("" when it succeeded).
std::string connect_error(TestLoop& loop, RedisClient* c) {
  bool done = false;
  std::string error;
  c->connect([&](bool ok, const std::string& e) {
    done = true;
    error = ok ? std::string() : e;
    if (!ok && error.empty()) error = "(failed without a reason)";
  });
  EXPECT_TRUE(loop.run_until([&] { return done; }));
  return error;
}

TEST(RedisClientTls, VerifiedConnectionToAnIpLiteralRunsCommands) {
  RedisServer redis(RedisServer::Options{{}, true});
  TestLoop loop;
  RedisConfig cfg = tls_config(redis, redis.ca_file());
  ASSERT_EQ(cfg.host, "127.0.0.1");  // the certificate carries only IP:127.0.0.1
  cfg.name = "tls-ok";
  EXPECT_EQ(connected_value("tls-ok"), 0);
  RedisClient* c = connect_client(loop, cfg);
  ASSERT_TRUE(c->connected());
  EXPECT_EQ(connected_value("tls-ok"), 1);
  EXPECT_EQ(run_command(loop, c, {"PING"}).str, "PONG");
  // Big enough to span many TLS records, binary-safe.
  std::string value(300000, 'v');
  value[7] = '\0';
  EXPECT_EQ(run_command(loop, c, {"SET", "over-tls", value}).str, "OK");
  EXPECT_EQ(run_command(loop, c, {"GET", "over-tls"}).str, value);
  EXPECT_EQ(redis.command({"STRLEN", "over-tls"}), "300000");  // the plain port sees the same data
  c->close();
  EXPECT_EQ(connected_value("tls-ok"), 0);
}

TEST(RedisClientTls, UntrustedCertificateFailsWithTheVerifyReason) {
  RedisServer redis(RedisServer::Options{{}, true});
  deliverd::testing::TestCa other;
  TestLoop loop;
  RedisClient* c = RedisClient::create(loop.get(), tls_config(redis, other.ca_file()));
  bool cmd_failed = false;
  c->command({"PING"}, [&](const RedisReply& r) { cmd_failed = r.connection_error; });
  const std::string error = connect_error(loop, c);
  EXPECT_EQ(error.rfind("redis TLS: certificate verify failed:", 0), 0u) << error;
  EXPECT_TRUE(loop.run_until([&] { return cmd_failed; })) << "the queued command is failed, not sent in clear";
  EXPECT_FALSE(c->connected());
  c->close();
}

TEST(RedisClientTls, NameTheCertificateDoesNotCarryIsRefused) {
  RedisServer redis(RedisServer::Options{{}, true});
  TestLoop loop;
  for (const std::string name : {"localhost", "redis.example.org", "127.0.0.2"}) {
    RedisConfig cfg = tls_config(redis, redis.ca_file());
    cfg.tls_server_name = name;
    RedisClient* c = RedisClient::create(loop.get(), cfg);
    const std::string error = connect_error(loop, c);
    EXPECT_EQ(error.rfind("redis TLS: certificate verify failed:", 0), 0u) << name << ": " << error;
    c->close();
  }
}

TEST(RedisClientTls, MissingCaFileIsAConfigurationError) {
  TestLoop loop;
  RedisConfig cfg = parse_redis_url("rediss://127.0.0.1:1").value();
  cfg.ca_file = "/nonexistent/ca.pem";
  RedisClient* c = RedisClient::create(loop.get(), cfg);
  const std::string error = connect_error(loop, c);
  EXPECT_NE(error.find("/nonexistent/ca.pem"), std::string::npos) << error;
  c->close();
}

TEST(RedisClientTls, AclUserOverTlsAndWrongPasswordSurfacesTheServerError) {
  RedisServer redis(RedisServer::Options{{}, true});
  redis.add_acl_user("deliverd", "pw-good");
  TestLoop loop;
  RedisConfig cfg = tls_config(redis, redis.ca_file());
  cfg.username = "deliverd";
  cfg.password = "pw-good";
  cfg.db = 1;
  RedisClient* good = connect_client(loop, cfg);
  EXPECT_EQ(run_command(loop, good, {"ACL", "WHOAMI"}).str, "deliverd");
  EXPECT_EQ(run_command(loop, good, {"SET", "who", "acl"}).str, "OK");
  EXPECT_EQ(redis.command({"SELECT", "1"}), "OK");
  EXPECT_EQ(redis.command({"GET", "who"}), "acl");
  good->close();

  cfg.password = "pw-BAD-guess";
  RedisClient* bad = RedisClient::create(loop.get(), cfg);
  const std::string error = connect_error(loop, bad);
  EXPECT_NE(error.find("AUTH failed: WRONGPASS"), std::string::npos) << error;
  EXPECT_EQ(error.find("pw-BAD-guess"), std::string::npos) << "the password must not appear in errors";
  bad->close();
}

TEST(RedisClient, PasswordWithoutUserSendsPlainAuth) {
  RedisServer redis({"--requirepass", "only-pass"});
  TestLoop loop;
  RedisConfig cfg = config_for(redis.port());
  cfg.password = "only-pass";
  RedisClient* c = connect_client(loop, cfg);
  EXPECT_EQ(run_command(loop, c, {"ACL", "WHOAMI"}).str, "default");
  c->close();
}

// ---- reconnect ----

struct Watch {
  int connects = 0, disconnects = 0;
  std::string reason;
  void attach(RedisClient* c) {
    c->set_connect_handler([this] { ++connects; });
    c->set_disconnect_handler([this](const std::string& r) {
      ++disconnects;
      reason = r;
    });
  }
};

RedisConfig reconnecting(RedisConfig cfg, const std::string& name) {
  cfg.reconnect = true;
  cfg.reconnect_min_ms = 50;
  cfg.reconnect_max_ms = 400;
  cfg.name = name;
  return cfg;
}

TEST(RedisClientReconnect, ComesBackByItselfAfterTheServerRestarts) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = RedisClient::create(loop.get(), reconnecting(config_for(redis.port()), "reconnect-plain"));
  Watch w;
  w.attach(c);
  ASSERT_EQ(connect_error(loop, c), "");
  EXPECT_EQ(w.connects, 1) << "the connect handler also runs after the first handshake";
  EXPECT_EQ(run_command(loop, c, {"PING"}).str, "PONG");
  const double reconnects_before = reconnects_value("reconnect-plain");

  int pending_errors = 0;
  c->command(
      {"BLPOP", "nothing", "30"}, [&](const RedisReply& r) { pending_errors += r.connection_error; }, 40000);
  for (int i = 0; i < 10; ++i) c->command({"PING"}, [&](const RedisReply& r) { pending_errors += r.connection_error; });
  loop.run_for(50);
  redis.kill();
  ASSERT_TRUE(loop.run_until([&] { return w.disconnects == 1 && pending_errors == 11; }));
  EXPECT_FALSE(c->connected());
  EXPECT_EQ(connected_value("reconnect-plain"), 0);

  // While down, commands are answered at once (a later loop turn) instead of waiting.
  const RedisReply down = run_command(loop, c, {"PING"});
  EXPECT_TRUE(down.connection_error);
  EXPECT_EQ(c->pending(), 0u);
  loop.run_for(400);  // several attempts fail meanwhile
  EXPECT_EQ(w.disconnects, 1) << "failed attempts of one outage do not call the handler again";
  EXPECT_EQ(w.connects, 1);

  redis.restart(false);
  ASSERT_TRUE(loop.run_until([&] { return w.connects == 2; }));
  EXPECT_TRUE(c->connected());
  EXPECT_EQ(run_command(loop, c, {"PING"}).str, "PONG");
  EXPECT_EQ(reconnects_value("reconnect-plain"), reconnects_before + 1);
  EXPECT_EQ(connected_value("reconnect-plain"), 1);

  // And a second outage is handled the same way.
  redis.kill();
  ASSERT_TRUE(loop.run_until([&] { return w.disconnects == 2; }));
  redis.restart(false);
  ASSERT_TRUE(loop.run_until([&] { return w.connects == 3; }));
  EXPECT_EQ(reconnects_value("reconnect-plain"), reconnects_before + 2);
  c->close();
  EXPECT_EQ(connected_value("reconnect-plain"), 0);
}

TEST(RedisClientReconnect, RepeatsTheTlsAuthAndSelectHandshake) {
  RedisServer redis(RedisServer::Options{{"--requirepass", "pw"}, true});
  TestLoop loop;
  RedisConfig cfg = tls_config(redis, redis.ca_file());
  cfg.password = "pw";
  cfg.db = 3;
  RedisClient* c = RedisClient::create(loop.get(), reconnecting(cfg, "reconnect-tls"));
  Watch w;
  w.attach(c);
  ASSERT_EQ(connect_error(loop, c), "");
  redis.kill();
  ASSERT_TRUE(loop.run_until([&] { return w.disconnects == 1; }));
  redis.restart(false);
  ASSERT_TRUE(loop.run_until([&] { return w.connects == 2; }));
  EXPECT_EQ(run_command(loop, c, {"SET", "after", "reconnect"}).str, "OK");
  EXPECT_EQ(redis.command({"SELECT", "3"}), "OK");
  EXPECT_EQ(redis.command({"GET", "after"}), "reconnect") << "SELECT was sent again";
  c->close();
}

TEST(RedisClientReconnect, FirstConnectFailureReportsThenKeepsTrying) {
  RedisServer redis;
  redis.kill();
  TestLoop loop;
  RedisClient* c = RedisClient::create(loop.get(), reconnecting(config_for(redis.port()), "reconnect-first"));
  Watch w;
  w.attach(c);
  EXPECT_NE(connect_error(loop, c).find("connect failed"), std::string::npos);
  EXPECT_EQ(w.disconnects, 1);
  redis.restart(false);
  ASSERT_TRUE(loop.run_until([&] { return w.connects == 1; }));
  EXPECT_EQ(run_command(loop, c, {"PING"}).str, "PONG");
  c->close();
}

TEST(RedisClientReconnect, CloseDuringBackoffStopsReconnecting) {
  RedisServer redis;
  TestLoop loop;
  RedisClient* c = RedisClient::create(loop.get(), reconnecting(config_for(redis.port()), "reconnect-close"));
  Watch w;
  w.attach(c);
  ASSERT_EQ(connect_error(loop, c), "");
  redis.kill();
  ASSERT_TRUE(loop.run_until([&] { return w.disconnects == 1; }));
  c->close();
  redis.restart(false);
  loop.run_for(500);
  EXPECT_EQ(w.connects, 1);
  // Only the fixture's own helper connection is there.
  const std::string clients = redis.command({"CLIENT", "LIST"});
  size_t n = 0;
  for (size_t at = clients.find("id="); at != std::string::npos; at = clients.find("id=", at + 1)) ++n;
  EXPECT_EQ(n, 1u) << clients;
}

TEST(RedisClientReconnect, WithoutReconnectTheClientStaysDown) {
  RedisServer redis;
  TestLoop loop;
  RedisConfig cfg = config_for(redis.port());
  cfg.name = "no-reconnect";
  RedisClient* c = RedisClient::create(loop.get(), cfg);
  Watch w;
  w.attach(c);
  ASSERT_EQ(connect_error(loop, c), "");
  const double before = reconnects_value("no-reconnect");
  redis.kill();
  ASSERT_TRUE(loop.run_until([&] { return w.disconnects == 1; }));
  redis.restart(false);
  loop.run_for(500);
  EXPECT_FALSE(c->connected());
  EXPECT_EQ(w.connects, 1);
  EXPECT_EQ(reconnects_value("no-reconnect"), before);
  EXPECT_TRUE(run_command(loop, c, {"PING"}).connection_error);
  c->close();
}


// ---- Redis Sentinel ------------------------------------------------------------------------

RedisConfig through_sentinels(const std::vector<const deliverd::testing::RedisSentinel*>& sentinels) {
  RedisConfig cfg;
  cfg.host = "192.0.2.1";  // never used: the sentinels say where the primary is
  cfg.port = 1;
  cfg.sentinel_master = "mymaster";
  for (const auto* s : sentinels) cfg.sentinels.push_back({"127.0.0.1", s->port()});
  cfg.connect_timeout_ms = 2000;
  return cfg;
}

// Until the sentinel has found the replica and sees it in sync (a manual failover needs one).
bool sentinel_knows_replica(deliverd::testing::RedisSentinel& s) {
  const std::string r = s.command({"SENTINEL", "replicas", "mymaster"});
  return r.find("slave") != std::string::npos && r.find("s_down") == std::string::npos &&
         r.find("disconnected") == std::string::npos;
}

TEST(RedisSentinel, FindsThePrimaryAndFollowsItThroughAFailover) {
  RedisServer primary;
  RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(primary.port())});
  deliverd::testing::RedisSentinel::Options so;
  so.master_port = primary.port();
  so.quorum = 1;
  deliverd::testing::RedisSentinel sentinel(so);
  TestLoop loop;
  RedisConfig cfg = reconnecting(through_sentinels({&sentinel}), "sentinel-test");
  // The first sentinel listed is down: the next one is asked.
  cfg.sentinels.insert(cfg.sentinels.begin(), {"127.0.0.1", deliverd::testing::free_port()});
  RedisClient* c = RedisClient::create(loop.get(), cfg);
  ASSERT_EQ(connect_error(loop, c), "");
  EXPECT_EQ(run_command(loop, c, {"SET", "k", "before"}).str, "OK");
  EXPECT_EQ(primary.command({"GET", "k"}), "before");

  ASSERT_TRUE(loop.run_until([&] { return sentinel_knows_replica(sentinel); }, 30000)) << sentinel.log();
  // The sentinel may still judge the replica unfit for a moment (NOGOODSLAVE: its last report
  // is too old on a loaded machine): ask until it starts the failover.
  ASSERT_TRUE(loop.run_until([&] { return sentinel.command({"SENTINEL", "FAILOVER", "mymaster"}) == "OK"; }, 30000))
      << sentinel.log();
  ASSERT_TRUE(loop.run_until([&] { return sentinel.primary_port() == replica.port(); }, 30000)) << sentinel.log();
  // Once the old primary is a replica, writes there are refused (READONLY): the client asks the
  // sentinel again and writes to the new primary. (Until the old one is told, a write may still
  // land there and be lost: the window docs/redis.md describes.)
  ASSERT_TRUE(loop.run_until([&] {
    run_command(loop, c, {"SET", "k", "after"});
    return replica.command({"GET", "k"}) == "after";
  }, 30000)) << sentinel.log();
  c->close();
}

TEST(RedisSentinel, AReplicaNamedAsPrimaryIsRefusedByItsRole) {
  RedisServer primary;
  RedisServer replica({"--replicaof", "127.0.0.1", std::to_string(primary.port())});
  // A sentinel that (wrongly, or not yet) names the replica as the primary.
  deliverd::testing::RedisSentinel::Options so;
  so.master_port = replica.port();
  so.quorum = 1;
  so.down_after_ms = 60000;
  deliverd::testing::RedisSentinel sentinel(so);
  TestLoop loop;
  RedisClient* c = RedisClient::create(loop.get(), through_sentinels({&sentinel}));
  const std::string error = connect_error(loop, c);
  EXPECT_NE(error.find("is not the primary (ROLE slave)"), std::string::npos) << error;
  c->close();
}

TEST(RedisSentinel, SentinelsAndPrimarySpeakTlsAndAuthenticate) {
  RedisServer primary(RedisServer::Options{{}, true});
  primary.add_acl_user("deliverd", "node-pw");
  deliverd::testing::RedisSentinel::Options so;
  so.master_port = primary.tls_port();
  so.quorum = 1;
  so.ca = primary.ca();
  so.requirepass = "sentinel-pw";
  so.auth_user = "deliverd";
  so.auth_pass = "node-pw";
  deliverd::testing::RedisSentinel sentinel(so);
  TestLoop loop;
  RedisConfig cfg = through_sentinels({&sentinel});
  cfg.tls = true;
  cfg.ca_file = primary.ca_file();
  cfg.username = "deliverd";
  cfg.password = "node-pw";
  cfg.sentinel_username = "default";
  cfg.sentinel_password = "sentinel-pw";
  RedisClient* c = RedisClient::create(loop.get(), cfg);
  ASSERT_EQ(connect_error(loop, c), "");
  EXPECT_EQ(run_command(loop, c, {"ACL", "WHOAMI"}).str, "deliverd");
  c->close();

  // A wrong sentinel password is refused with the sentinel's reason (never the password).
  cfg.sentinel_password = "wrong";
  RedisClient* bad = RedisClient::create(loop.get(), cfg);
  const std::string error = connect_error(loop, bad);
  EXPECT_NE(error.find("127.0.0.1:" + std::to_string(sentinel.port()) + ": AUTH failed"), std::string::npos) << error;
  EXPECT_EQ(error.find("wrong"), std::string::npos);
  bad->close();
}

TEST(RedisSentinel, AddressesAreIpLiteralsWithAPort) {
  auto a = parse_sentinel_address("10.0.0.5:26379");
  ASSERT_TRUE(a) << a.error();
  EXPECT_EQ(a->host, "10.0.0.5");
  EXPECT_EQ(a->port, 26379);
  auto v6 = parse_sentinel_address("[::1]:26380");
  ASSERT_TRUE(v6) << v6.error();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_TRUE(parse_sentinel_address("localhost:26379"));
  EXPECT_FALSE(parse_sentinel_address("10.0.0.5"));
  EXPECT_FALSE(parse_sentinel_address("10.0.0.5:0"));
  EXPECT_FALSE(parse_sentinel_address("sentinel.example:26379"));
  EXPECT_FALSE(parse_sentinel_address("[::1]26379"));
}

}  // namespace
}  // namespace deliverd::queue
