#include <gtest/gtest.h>

#include <map>
#include <string>

#include "daemon/app.h"

using deliverd::daemon::App;

// A mailbox's loop is FNV-1a over account, NUL, mailbox id: the same in every build and after a
// restart, so its session, pacing and breaker come back to the same loop.
TEST(LoopOf, IsAStableHashOfAccountAndMailbox) {
  EXPECT_EQ(App::loop_of("acct", "m1", 1), 0u);
  EXPECT_EQ(App::loop_of("acct", "m1", 0), 0u);
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : std::string("a\0b", 3)) {
    h ^= c;
    h *= 1099511628211ull;
  }
  EXPECT_EQ(App::loop_of("a", "b", 7), h % 7);
  // The separator keeps ("ab", "c") and ("a", "bc") apart.
  EXPECT_NE(App::loop_of("ab", "c", 4294967291u), App::loop_of("a", "bc", 4294967291u));
  // Spread: 1,000 mailboxes over 2 loops land within 40 % / 60 %.
  std::map<size_t, int> per_loop;
  for (int i = 0; i < 1000; ++i) ++per_loop[App::loop_of("acct", "mbx-" + std::to_string(i), 2)];
  EXPECT_GT(per_loop[0], 400);
  EXPECT_GT(per_loop[1], 400);
}
