#pragma once
// A blocking HTTP/1.1 client for admin tests, run on a thread other than the server's loop.
// It can bind a chosen loopback source address, so tests can be two different clients.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>

namespace deliverd::admin::testclient {

struct HttpReply {
  int status = 0;
  std::string headers, body;
  bool has_header(const std::string& line) const { return headers.find(line) != std::string::npos; }
  std::string header(const std::string& name) const {
    size_t p = headers.find("\r\n" + name + ": ");
    if (p == std::string::npos) return {};
    p += name.size() + 4;
    return headers.substr(p, headers.find("\r\n", p) - p);
  }
};

class Client {
 public:
  explicit Client(int port, const std::string& source_ip = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{15, 0};  // generous: only a broken server takes this long
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (!source_ip.empty()) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      ::inet_pton(AF_INET, source_ip.c_str(), &src.sin_addr);
      ::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src);
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  bool connected() const { return connected_; }

  bool send(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // One response (Content-Length framed); nullopt on EOF, error or timeout.
  std::optional<HttpReply> read_reply(bool head_request = false) {
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return std::nullopt;
    HttpReply r;
    r.headers = buf_.substr(0, end + 2);
    if (r.headers.rfind("HTTP/1.1 ", 0) != 0) return std::nullopt;
    r.status = std::stoi(r.headers.substr(9, 3));
    size_t len = 0;
    size_t cl = r.headers.find("Content-Length: ");
    if (cl != std::string::npos && !head_request) len = std::stoul(r.headers.substr(cl + 16));
    while (buf_.size() < end + 4 + len)
      if (!fill()) return std::nullopt;
    r.body = buf_.substr(end + 4, len);
    buf_.erase(0, end + 4 + len);
    return r;
  }

  // Sends one request and reads its answer; status 0 when there was none.
  HttpReply request(const std::string& method, const std::string& path, const std::string& token = "",
                    const std::string& body = "", const std::string& extra_headers = "") {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n";
    if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
    if (!body.empty() || method == "POST" || method == "PATCH")
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += extra_headers + "\r\n" + body;
    if (!send(req)) return {};
    return read_reply(method == "HEAD").value_or(HttpReply{});
  }

  // Whether the server has sent something (or closed) within timeout_ms.
  bool readable(int timeout_ms) {
    if (!buf_.empty()) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) > 0;
  }

  // True when the server closed the connection (EOF or reset) with nothing more to read.
  bool closed_by_server() {
    if (!buf_.empty()) return false;
    char c;
    ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  bool fill() {
    char tmp[16384];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }
  int fd_;
  bool connected_ = false;
  std::string buf_;
};

}  // namespace deliverd::admin::testclient
