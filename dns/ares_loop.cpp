#include "dns/ares_loop.h"

#include <arpa/inet.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace deliverd::dns {

std::string server_csv_entry(const std::string& s) {
  std::string host = s;
  int port = 53;
  auto bad = [&] { return std::runtime_error("dns: bad server '" + s + "' (want 1.2.3.4[:port] or [::1][:port])"); };
  auto parse_port = [&](const std::string& p) {
    if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) throw bad();
    port = std::stoi(p);
    if (port < 1 || port > 65535) throw bad();
  };
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos) throw bad();
    host = s.substr(1, close - 1);
    std::string rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') throw bad();
      parse_port(rest.substr(1));
    }
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    host = s.substr(0, s.find(':'));
    parse_port(s.substr(s.find(':') + 1));
  }
  in_addr a4{};
  in6_addr a6{};
  if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) return host + ":" + std::to_string(port);
  if (::inet_pton(AF_INET6, host.c_str(), &a6) == 1) return "[" + host + "]:" + std::to_string(port);
  throw bad();
}

AresLoop::AresLoop(uv_loop_t* loop, const AresOptions& opts, std::function<void()> on_closed)
    : loop_(loop), on_closed_(std::move(on_closed)) {
  if (opts.timeout_ms < 1 || opts.tries < 1) throw std::runtime_error("dns: timeout_ms and tries must be at least 1");
  for (const auto& s : opts.servers) csv_ += (csv_.empty() ? "" : ",") + server_csv_entry(s);
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  ares_options o{};
  o.sock_state_cb = &AresLoop::on_sock_state;
  o.sock_state_cb_data = this;
  o.timeout = opts.timeout_ms;
  o.tries = opts.tries;
  o.flags = opts.flags;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | (opts.flags ? ARES_OPT_FLAGS : 0);
  int rc = ares_init_options(&channel_, &o, mask);
  if (rc == ARES_SUCCESS && !csv_.empty()) rc = ares_set_servers_ports_csv(channel_, csv_.c_str());
  if (rc != ARES_SUCCESS) {
    if (channel_) ares_destroy(channel_);  // no socket is open yet: nothing reaches on_sock_state
    throw std::runtime_error("dns: c-ares init failed for '" + csv_ + "': " + ares_strerror(rc));
  }
  uv_timer_init(loop_, &ares_timer_);
  ares_timer_.data = this;
  uv_timer_init(loop_, &deliver_timer_);
  deliver_timer_.data = this;
  open_handles_ = 2;
}

AresLoop::~AresLoop() = default;

void AresLoop::schedule(std::function<void()> fn) {
  if (closing_) return;
  deliver_.push_back(std::move(fn));
  if (deliver_armed_) return;
  deliver_armed_ = true;
  uv_timer_start(&deliver_timer_, &AresLoop::on_deliver_timer, 0, 0);
}

void AresLoop::on_deliver_timer(uv_timer_t* t) {
  auto* self = static_cast<AresLoop*>(t->data);
  self->deliver_armed_ = false;
  std::vector<std::function<void()>> batch;
  batch.swap(self->deliver_);
  for (auto& fn : batch) {
    if (self->closing_) return;  // a callback closed the owner: the rest is dropped, as close() promises
    fn();
  }
}

void AresLoop::rearm_timer() {
  if (closing_) return;
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv)) {
    uint64_t ms = static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec + 999) / 1000;
    uv_timer_start(&ares_timer_, &AresLoop::on_ares_timer, ms, 0);
  } else {
    uv_timer_stop(&ares_timer_);
  }
}

void AresLoop::on_ares_timer(uv_timer_t* t) {
  auto* self = static_cast<AresLoop*>(t->data);
  ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  self->rearm_timer();
}

void AresLoop::on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
  auto* self = static_cast<AresLoop*>(data);
  auto it = self->polls_.find(fd);
  if (!readable && !writable) {
    if (it == self->polls_.end()) return;
    SockPoll* p = it->second;
    self->polls_.erase(it);
    self->close_poll(p);  // now, before c-ares closes the fd, so a reused number gets a new handle
    return;
  }
  SockPoll* p = it == self->polls_.end() ? nullptr : it->second;
  if (!p) {
    p = new SockPoll;
    p->owner = self;
    p->fd = fd;
    p->poll.data = p;
    if (uv_poll_init_socket(self->loop_, &p->poll, fd) != 0) {
      delete p;
      return;  // c-ares times the query out; nothing better to do without a poll handle
    }
    ++self->open_handles_;
    self->polls_.emplace(fd, p);
  }
  uv_poll_start(&p->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), &AresLoop::on_poll);
}

void AresLoop::on_poll(uv_poll_t* h, int status, int events) {
  auto* p = static_cast<SockPoll*>(h->data);
  AresLoop* self = p->owner;
  // On a poll error let c-ares read and write, so it sees the socket error and retries elsewhere.
  ares_socket_t rfd = (status < 0 || (events & UV_READABLE)) ? p->fd : ARES_SOCKET_BAD;
  ares_socket_t wfd = (status < 0 || (events & UV_WRITABLE)) ? p->fd : ARES_SOCKET_BAD;
  ares_process_fd(self->channel_, rfd, wfd);
  self->rearm_timer();
}

void AresLoop::close_poll(SockPoll* p) {
  uv_poll_stop(&p->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&p->poll), [](uv_handle_t* h) {
    auto* sp = static_cast<SockPoll*>(h->data);
    AresLoop* owner = sp->owner;
    delete sp;
    owner->handle_closed();
  });
}

void AresLoop::handle_closed() {
  if (--open_handles_ > 0 || !closing_) return;
  // The owner may free itself, and this with it: nothing of this is touched afterwards.
  auto done = std::move(on_closed_);
  if (done) done();
}

void AresLoop::close() {
  if (closing_) return;
  closing_ = true;
  deliver_.clear();
  if (channel_) {
    ares_destroy(channel_);  // runs the query callbacks (their owner sees closing()) and closes sockets
    channel_ = nullptr;
  }
  for (auto& [fd, p] : polls_) close_poll(p);
  polls_.clear();
  auto closed = [](uv_handle_t* h) { static_cast<AresLoop*>(h->data)->handle_closed(); };
  uv_close(reinterpret_cast<uv_handle_t*>(&ares_timer_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&deliver_timer_), closed);
}

}  // namespace deliverd::dns
