#include <sched.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "common/io.h"
#include "proc/cpus.h"
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

// The staging memory of a checkpoint is sized by this: inside a memory
// cgroup with a limit, the limit counts, not the machine's free memory.
TEST(Procfs, MemoryHeadroomFollowsTheMemoryCgroup) {
  std::string self;
  ASSERT_TRUE(thaw::try_read_file("/proc/self/cgroup", &self));
  auto at = self.find(":memory:");
  if (at == std::string::npos || ::access("/sys/fs/cgroup/memory", W_OK) != 0)
    GTEST_SKIP() << "no writable cgroup v1 memory hierarchy";
  std::string path = self.substr(at + 8, self.find('\n', at) - at - 8);
  std::string dir = "/sys/fs/cgroup/memory" + (path == "/" ? "" : path) + "/thaw-unit-" + std::to_string(::getpid());
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0) << dir << ": " << std::strerror(errno);
  const uint64_t limit = 256ull << 20;
  {
    std::ofstream(dir + "/memory.limit_in_bytes") << limit;
  }
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  pid_t child = ::fork();
  if (child == 0) {
    { std::ofstream(dir + "/cgroup.procs") << ::getpid(); }
    uint64_t h = thaw::proc::memory_headroom_bytes();
    (void)!::write(p[1], &h, sizeof h);
    ::_exit(0);
  }
  uint64_t headroom = 0;
  ASSERT_EQ(::read(p[0], &headroom, sizeof headroom), static_cast<ssize_t>(sizeof headroom));
  ::waitpid(child, nullptr, 0);
  ::close(p[0]);
  ::close(p[1]);
  ::rmdir(dir.c_str());
  EXPECT_GT(headroom, 0u);
  EXPECT_LE(headroom, limit);
  EXPECT_GT(thaw::proc::memory_headroom_bytes(), limit) << "outside that cgroup the machine has more";
}

TEST(Procfs, CpuListsParseRangesAndSingles) {
  using thaw::proc::parse_cpu_list;
  EXPECT_EQ(parse_cpu_list("0-3,8,10-11\n"), (std::vector<uint32_t>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(parse_cpu_list("5"), (std::vector<uint32_t>{5}));
  EXPECT_TRUE(parse_cpu_list("\n").empty());  // an empty cpuset
  EXPECT_EQ(parse_cpu_list("1-"), (std::vector<uint32_t>{}));
}

TEST(Procfs, OwnCpusetHoldsTheCpusWeRunOn) {
  auto cpus = thaw::proc::cpuset_cpus(::getpid());
  if (cpus.empty()) GTEST_SKIP() << "no cpuset cgroup readable here";
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  for (int i = 0; i < CPU_SETSIZE; i++)
    if (CPU_ISSET(i, &set)) {
      EXPECT_NE(std::find(cpus.begin(), cpus.end(), uint32_t(i)), cpus.end()) << i;
    }
}
