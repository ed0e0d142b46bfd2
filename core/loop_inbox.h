#pragma once
// Work handed to an event loop from another thread ([daemon] workers): a job for the loop that
// owns its mailbox, a finished job back to the loop that read it, a reload, a drain. post() may
// be called from any thread; the tasks run on the loop, in the order posted.
#include <uv.h>

#include <functional>
#include <mutex>
#include <vector>

namespace deliverd::core {

class LoopInbox {
 public:
  // On the loop's own thread, or before the loop runs.
  explicit LoopInbox(uv_loop_t* loop);
  // After the loop has ended (close() was called and the loop ran the close).
  ~LoopInbox() = default;
  LoopInbox(const LoopInbox&) = delete;
  LoopInbox& operator=(const LoopInbox&) = delete;

  // Any thread. False once closed: the task is dropped.
  bool post(std::function<void()> task);
  // On the loop's thread. Tasks not yet run are dropped; the handle stops holding the loop.
  void close();

 private:
  static void on_async(uv_async_t* a);

  uv_async_t async_{};
  std::mutex mu_;
  std::vector<std::function<void()>> tasks_;
  bool closed_ = false;
};

}  // namespace deliverd::core
