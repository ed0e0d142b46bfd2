#include "core/loop_inbox.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

using deliverd::core::LoopInbox;

// Tasks from several threads run on the loop, each thread's in the order it posted them.
TEST(LoopInbox, TasksFromOtherThreadsRunOnTheLoopInOrder) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  LoopInbox inbox(&loop);
  constexpr int kThreads = 3, kEach = 1000;
  std::vector<std::vector<int>> seen(kThreads);
  int done = 0;
  std::thread::id loop_thread = std::this_thread::get_id();
  bool off_loop = false;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i)
        ASSERT_TRUE(inbox.post([&, t, i] {
          if (std::this_thread::get_id() != loop_thread) off_loop = true;
          seen[t].push_back(i);
          if (++done == kThreads * kEach) inbox.close();
        }));
    });
  uv_run(&loop, UV_RUN_DEFAULT);  // ends when the last task closes the inbox
  for (auto& th : threads) th.join();
  EXPECT_FALSE(off_loop);
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(seen[t].size(), static_cast<size_t>(kEach));
    for (int i = 0; i < kEach; ++i) EXPECT_EQ(seen[t][i], i);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

// Once closed, a post says so and the task never runs (a drained loop takes no more work).
TEST(LoopInbox, APostAfterCloseIsRefused) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  LoopInbox inbox(&loop);
  bool ran = false;
  inbox.post([&] { ran = true; });
  inbox.close();  // before the loop ran: the queued task is dropped too
  EXPECT_FALSE(inbox.post([&] { ran = true; }));
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_FALSE(ran);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}
