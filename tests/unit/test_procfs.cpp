#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "proc/procfs.h"

using thaw::proc::read_maps;

TEST(Procfs, MapsOfSelfHaveStackAndVdso) {
  auto maps = read_maps(0, true);
  ASSERT_FALSE(maps.empty());
  auto has = [&](const char* name) {
    return std::any_of(maps.begin(), maps.end(), [&](const auto& m) { return m.name == name; });
  };
  EXPECT_TRUE(has("[stack]"));
  EXPECT_TRUE(has("[vdso]"));
  for (const auto& m : maps) {
    EXPECT_LT(m.start, m.end);
    EXPECT_FALSE(m.vmflags.empty()) << "smaps VmFlags missing for " << m.name;
  }
  auto stack = std::find_if(maps.begin(), maps.end(), [](const auto& m) { return m.name == "[stack]"; });
  EXPECT_TRUE(stack->has_flag("gd"));  // the main stack grows down
}

TEST(Procfs, StatusAndThreadsOfSelf) {
  auto st = thaw::proc::read_status("/proc/self");
  EXPECT_EQ(std::stoi(st["Pid"]), ::getpid());
  auto tids = thaw::proc::list_threads(::getpid());
  EXPECT_NE(std::find(tids.begin(), tids.end(), ::getpid()), tids.end());
}

TEST(Procfs, StatFieldsParseAfterCommWithSpaces) {
  auto f = thaw::proc::read_stat_fields(::getpid());
  ASSERT_GT(f.size(), 48u);
  EXPECT_TRUE(f[0] == "R" || f[0] == "S");  // field 3: state
}
