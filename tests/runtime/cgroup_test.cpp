// Container cgroups on this host's real hierarchies: limits in force, limits
// reported when they cannot be, and the OOM killer's count.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <cstring>
#include <string>

#include "common/io.h"
#include "container/cgroup.h"
#include "container/fsutil.h"

using thaw::container::Cgroup;

namespace {

std::string test_id(const char* what) { return std::string("unit-") + what + "-" + std::to_string(::getpid()); }

std::string read_trimmed(const std::string& path) {
  std::string s;
  if (!thaw::try_read_file(path, &s)) return "<unreadable>";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool writable_hierarchy(const std::string& dir) { return ::access((dir + "/cgroup.procs").c_str(), W_OK) == 0; }

bool any_warning_has(const Cgroup& cg, const std::string& text) {
  for (const auto& w : cg.warnings())
    if (w.find(text) != std::string::npos) return true;
  return false;
}

// Runs fn in a child that first joins the groups; returns its wait status.
template <typename Fn>
int in_child(const Cgroup& cg, Fn fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    thaw::container::join_cgroups(cg.dirs());
    fn();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

}  // namespace

TEST(Cgroup, V1MemoryLimitIsInForceAndAnOomKillIsCounted) {
  if (!writable_hierarchy("/sys/fs/cgroup/memory")) GTEST_SKIP() << "no writable cgroup v1 memory hierarchy";
  constexpr uint64_t kLimit = 64ull << 20;
  Cgroup cg = Cgroup::create(test_id("mem"), kLimit);
  ASSERT_TRUE(cg.warnings().empty()) << cg.warnings().front();
  std::string dir = "/sys/fs/cgroup/memory/thaw/" + test_id("mem");
  EXPECT_EQ(read_trimmed(dir + "/memory.limit_in_bytes"), std::to_string(kLimit));
  EXPECT_EQ(cg.memory_limit_bytes(), kLimit);
  EXPECT_EQ(cg.oom_kills(), 0u);
  // Touching twice the limit gets the child killed by the OOM killer, when
  // there is no swap to page out to.
  std::string swaps;
  thaw::try_read_file("/proc/swaps", &swaps);
  if (swaps.find('\n') != swaps.rfind('\n')) GTEST_SKIP() << "swap is on: the group would page out";
  int status = in_child(cg, [] {
    size_t n = 2 * kLimit;
    char* p = static_cast<char*>(::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (p == MAP_FAILED) ::_exit(3);
    std::memset(p, 1, n);
  });
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  EXPECT_GE(cg.oom_kills(), 1u);
}

TEST(Cgroup, V1CpuLimitSetsTheQuota) {
  if (!writable_hierarchy("/sys/fs/cgroup/cpu")) GTEST_SKIP() << "no writable cgroup v1 cpu hierarchy";
  Cgroup cg = Cgroup::create(test_id("cpu"), 0, 0.5);
  ASSERT_TRUE(cg.warnings().empty()) << cg.warnings().front();
  std::string dir = "/sys/fs/cgroup/cpu/thaw/" + test_id("cpu");
  EXPECT_EQ(read_trimmed(dir + "/cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(read_trimmed(dir + "/cpu.cfs_period_us"), "100000");
}

TEST(Cgroup, V2WithoutTheMemoryControllerSaysTheLimitIsNotApplied) {
  // On this kind of host the v1 hierarchies hold every controller and the
  // v2 one (mounted beside them) has none: a limit cannot be applied there.
  const std::string root = "/sys/fs/cgroup/unified";
  if (!writable_hierarchy(root) || !thaw::container::exists(root + "/cgroup.controllers"))
    GTEST_SKIP() << "no writable cgroup v2 hierarchy at " << root;
  std::string controllers = read_trimmed(root + "/cgroup.controllers");
  if (controllers.find("memory") != std::string::npos) GTEST_SKIP() << "the v2 hierarchy has the memory controller";
  std::string id = test_id("v2");
  Cgroup cg = Cgroup::create(id, 32ull << 20, 0, root);
  ASSERT_EQ(cg.dirs().size(), 1u);
  EXPECT_EQ(cg.dirs()[0], root + "/thaw/" + id);
  EXPECT_EQ(cg.memory_limit_bytes(), 0u);
  ASSERT_EQ(cg.warnings().size(), 1u);
  EXPECT_TRUE(any_warning_has(cg, "the memory limit of 32 MiB is not applied")) << cg.warnings()[0];
  EXPECT_TRUE(any_warning_has(cg, "no memory controller")) << cg.warnings()[0];
  // The group itself works: a process can join it.
  int status = in_child(cg, [&] {
    std::string self;
    thaw::try_read_file("/proc/self/cgroup", &self);
    ::_exit(self.find("0::/thaw/" + id) != std::string::npos ? 0 : 4);
  });
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST(Cgroup, NoHierarchyAtAllMeansNoGroupAndAWarningPerLimit) {
  char tmpl[] = "/tmp/thaw-cgroup-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  {
    Cgroup cg = Cgroup::create(test_id("none"), 16ull << 20, 1.5, tmpl);
    EXPECT_TRUE(cg.dirs().empty());
    ASSERT_EQ(cg.warnings().size(), 2u);
    EXPECT_TRUE(any_warning_has(cg, "the memory limit of 16 MiB is not applied: no memory cgroup"));
    EXPECT_TRUE(any_warning_has(cg, "the CPU limit of 1.5 cores is not applied: no cpu cgroup"));
    Cgroup none = Cgroup::create(test_id("none2"), 0, 0, tmpl);
    EXPECT_TRUE(none.warnings().empty());
    EXPECT_EQ(none.oom_kills(), 0u);
  }
  thaw::container::remove_tree(tmpl);
}

// A runtime killed with SIGKILL leaves its containers' groups: the next
// runtime removes the empty ones made long enough ago, and no other.
TEST(Cgroup, StaleEmptyGroupsAreSweptAndNoOther) {
  if (!writable_hierarchy("/sys/fs/cgroup/memory")) GTEST_SKIP() << "no writable cgroup v1 memory hierarchy";
  auto dir_of = [](const std::string& id) { return "/sys/fs/cgroup/memory/thaw/" + id; };
  auto make_old = [](const std::string& dir) {
    struct timespec old[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
    return ::utimensat(AT_FDCWD, dir.c_str(), old, 0) == 0;
  };
  std::string stale = test_id("stale"), busy = test_id("busy"), young = test_id("young");
  for (const auto& id : {stale, busy, young}) ASSERT_EQ(::mkdir(dir_of(id).c_str(), 0755), 0) << id;
  ASSERT_TRUE(make_old(dir_of(stale)) && make_old(dir_of(busy)));
  pid_t sleeper = ::fork();
  if (sleeper == 0) {
    thaw::container::join_cgroups({dir_of(busy)});
    ::pause();
    ::_exit(0);
  }
  // Until the child is in its group, the group is empty.
  for (int i = 0; i < 500 && read_trimmed(dir_of(busy) + "/cgroup.procs").empty(); i++) ::usleep(10000);
  ASSERT_FALSE(read_trimmed(dir_of(busy) + "/cgroup.procs").empty());
  thaw::container::sweep_stale_cgroups(std::chrono::minutes(10));
  EXPECT_FALSE(thaw::container::exists(dir_of(stale))) << "an old empty group was left";
  EXPECT_TRUE(thaw::container::exists(dir_of(busy))) << "a group with a process was removed";
  EXPECT_TRUE(thaw::container::exists(dir_of(young))) << "a group made just now was removed";
  ::kill(sleeper, SIGKILL);
  ::waitpid(sleeper, nullptr, 0);
  for (const auto& id : {stale, busy, young})
    for (int i = 0; i < 50 && ::rmdir(dir_of(id).c_str()) != 0 && errno == EBUSY; i++) ::usleep(20000);
}
