#include "core/loop_inbox.h"

namespace deliverd::core {

LoopInbox::LoopInbox(uv_loop_t* loop) {
  uv_async_init(loop, &async_, on_async);
  async_.data = this;
}

bool LoopInbox::post(std::function<void()> task) {
  std::lock_guard lock(mu_);
  if (closed_) return false;
  tasks_.push_back(std::move(task));
  // Under the lock, so that close() cannot close the handle between the check and the send.
  uv_async_send(&async_);
  return true;
}

void LoopInbox::close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    tasks_.clear();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
}

void LoopInbox::on_async(uv_async_t* a) {
  auto* self = static_cast<LoopInbox*>(a->data);
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(self->mu_);
    batch.swap(self->tasks_);
  }
  // A task may close the inbox (a drain ending): what follows it is dropped, as close() says.
  for (auto& task : batch) {
    {
      std::lock_guard lock(self->mu_);
      if (self->closed_) return;
    }
    task();
  }
}

}  // namespace deliverd::core
