// Which pid and tids a restored process gets: those of its own pid
// namespace when the image has them.
#include <gtest/gtest.h>

#include "engine/resources/resources.h"

namespace {

using thaw::engine::innermost_id;
using thaw::engine::restore_pid;
using thaw::engine::restore_tid;

thaw::image::Manifest in_container() {
  thaw::image::Manifest m;
  m.process.pid = 41000;
  m.process.ns_pid = 2;
  m.threads.push_back({});
  m.threads[0].tid = 41000;
  m.threads[0].ns_tid = 2;
  m.threads.push_back({});
  m.threads[1].tid = 41007;
  m.threads[1].ns_tid = 9;
  return m;
}

TEST(Pids, InnermostIdIsTheLastField) {
  EXPECT_EQ(innermost_id("41000\t2"), 2);
  EXPECT_EQ(innermost_id("41000\t77\t2\n"), 2);
  EXPECT_EQ(innermost_id("1234"), 1234);
  EXPECT_EQ(innermost_id(""), 0);
}

TEST(Pids, ARestoreGetsTheIdsOfItsOwnNamespace) {
  auto m = in_container();
  EXPECT_EQ(restore_pid(m), 2);
  EXPECT_EQ(restore_tid(m, m.threads[0]), 2);
  EXPECT_EQ(restore_tid(m, m.threads[1]), 9);
}

TEST(Pids, WithoutNamespaceIdsTheRecordedOnesAreUsed) {
  auto m = in_container();
  m.process.ns_pid = 0;  // an image taken before they were recorded
  for (auto& t : m.threads) t.ns_tid = 0;
  EXPECT_EQ(restore_pid(m), 41000);
  EXPECT_EQ(restore_tid(m, m.threads[1]), 41007);
}

TEST(Pids, ANamespaceInitKeepsTheOuterIds) {
  auto m = in_container();
  m.process.ns_pid = 1;  // pid 1 of the new namespace is the engine's init
  m.threads[0].ns_tid = 1;
  EXPECT_EQ(restore_pid(m), 41000);
  EXPECT_EQ(restore_tid(m, m.threads[1]), 41007);
}

TEST(Pids, AThreadWithoutItsNamespaceIdMakesAllUseTheOuterIds) {
  auto m = in_container();
  m.threads[1].ns_tid = 0;
  EXPECT_EQ(restore_pid(m), 41000);
  EXPECT_EQ(restore_tid(m, m.threads[0]), 41000);
}

}  // namespace
