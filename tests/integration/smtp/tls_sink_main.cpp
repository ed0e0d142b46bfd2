// tls_sink: the in-tree TLS SMTP sink as a process, for bench/e2e and tls_idle_rss.
//   tls_sink --cert PEM --key PEM --mode starttls|implicit --port-file FILE [--ip 127.0.0.1] [--port N]
// Writes the bound port to FILE once listening; on SIGTERM prints "messages=N connections=N".
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "tests/integration/smtp/tls_sink.h"

namespace {
volatile sig_atomic_t stop = 0;
void on_term(int) { stop = 1; }
}  // namespace

int main(int argc, char** argv) {
  std::string cert, key, mode = "starttls", port_file, ip = "127.0.0.1";
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--cert")
      cert = v;
    else if (k == "--key")
      key = v;
    else if (k == "--mode")
      mode = v;
    else if (k == "--port-file")
      port_file = v;
    else if (k == "--ip")
      ip = v;
    else if (k == "--port")
      port = std::stoi(v);
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  deliverd::testing::TlsSink sink(
      cert, key,
      mode == "implicit" ? deliverd::testing::TlsSink::Mode::Implicit : deliverd::testing::TlsSink::Mode::StartTls, ip,
      port);
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << sink.port() << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  while (!stop) pause();
  std::printf("messages=%zu connections=%zu\n", sink.messages(), sink.connections());
  return 0;
}
