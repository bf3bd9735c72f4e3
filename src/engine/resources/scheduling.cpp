// How the process is scheduled: per thread its policy and real-time
// priority (sched_attr), nice, CPU affinity and I/O priority; per process
// its oom_score_adj. Both sides work from outside, on held threads: the
// kernel lets a privileged process read and set all of these by tid.
#include <linux/sched.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "common/unique_fd.h"
#include "engine/resources/resources.h"
#include "proc/cpus.h"

namespace thaw::engine {

namespace {

constexpr int kIoprioWhoProcess = 1;  // IOPRIO_WHO_PROCESS: a tid

// The kernel's struct sched_attr (its uapi header clashes with glibc's
// sched_param), with the utilization clamps the kernel may fill in.
struct sched_attr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime, sched_deadline, sched_period;
  uint32_t sched_util_min, sched_util_max;
};

const char* policy_name(uint32_t p) {
  switch (p) {
    case SCHED_OTHER: return "SCHED_OTHER";
    case SCHED_FIFO: return "SCHED_FIFO";
    case SCHED_RR: return "SCHED_RR";
    case SCHED_BATCH: return "SCHED_BATCH";
    case SCHED_IDLE: return "SCHED_IDLE";
    case SCHED_DEADLINE: return "SCHED_DEADLINE";
    default: return "an unknown policy";
  }
}

sched_attr get_attr(pid_t tid, const std::string& who) {
  sched_attr a{};
  if (::syscall(SYS_sched_getattr, tid, &a, sizeof a, 0) != 0) fail_errno(who, ": read its scheduling policy");
  return a;
}

int get_nice(pid_t tid, const std::string& who) {
  // sched_getattr reports no nice for a real-time thread; getpriority does.
  errno = 0;
  int n = ::getpriority(PRIO_PROCESS, static_cast<id_t>(tid));
  if (n == -1 && errno != 0) fail_errno(who, ": read its nice value");
  return n;
}

int get_ioprio(pid_t tid, const std::string& who) {
  long v = ::syscall(SYS_ioprio_get, kIoprioWhoProcess, tid);
  if (v < 0) fail_errno(who, ": read its I/O priority");
  return static_cast<int>(v);
}

std::vector<uint32_t> get_cpus(pid_t tid, const std::string& who) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(tid, sizeof set, &set) != 0) fail_errno(who, ": read its CPU affinity");
  std::vector<uint32_t> cpus;
  for (uint32_t i = 0; i < CPU_SETSIZE; i++)
    if (CPU_ISSET(i, &set)) cpus.push_back(i);
  return cpus;
}

bool includes(const std::vector<uint32_t>& big, const std::vector<uint32_t>& small) {
  for (uint32_t c : small)
    if (std::find(big.begin(), big.end(), c) == big.end()) return false;
  return true;
}

std::string cpu_list(const std::vector<uint32_t>& cpus) {
  std::string s;
  for (uint32_t c : cpus) s += cat(s.empty() ? "" : ",", c);
  return s;
}

// A setting this machine or container refuses (no CAP_SYS_NICE or
// CAP_SYS_RESOURCE, no real-time budget, a narrower cpuset) is the
// environment's choice: the process runs on with what it has, and says so.
void note(const std::string& what) {
  std::fprintf(stderr, "thaw: note: restore: %s (%s); it keeps the restoring side's\n", what.c_str(),
               std::strerror(errno));
}

}  // namespace

void dump_scheduling(CheckpointContext& c) {
  auto& p = c.m.process;
  std::string text;
  if (try_read_file(cat("/proc/", c.pid, "/oom_score_adj"), &text)) p.oom_score_adj = std::atoi(text.c_str());
  // An affinity that takes in every CPU the process's cpuset offers is
  // the machine's (or the container's) and not the process's choice:
  // restored elsewhere, it must not pin the process to this machine's
  // CPU numbers. Without a cpuset to read, thaw's own CPUs stand in.
  std::vector<uint32_t> offered = proc::cpuset_cpus(c.pid);
  if (offered.empty()) offered = get_cpus(0, "thaw");
  for (auto& th : c.m.threads) {
    std::string who = cat("thread ", th.tid);
    sched_attr a = get_attr(th.tid, who);
    auto& s = th.sched;
    s.policy = a.sched_policy;
    s.flags = a.sched_flags & SCHED_FLAG_RESET_ON_FORK;
    s.priority = a.sched_priority;
    if (a.sched_policy == SCHED_DEADLINE) {
      s.runtime_ns = a.sched_runtime;
      s.deadline_ns = a.sched_deadline;
      s.period_ns = a.sched_period;
    }
    s.nice = get_nice(th.tid, who);
    s.ioprio = get_ioprio(th.tid, who);
    auto cpus = get_cpus(th.tid, who);
    if (!includes(cpus, offered)) s.cpus = std::move(cpus);
    s.recorded = true;
  }
}

void restore_scheduling(pid_t host_pid, const std::vector<std::pair<pid_t, const image::Thread*>>& threads,
                        const image::Manifest& m) {
  if (m.process.oom_score_adj != image::kOomScoreAdjUnknown) {
    std::string path = cat("/proc/", host_pid, "/oom_score_adj"), now;
    if (!try_read_file(path, &now)) fail_errno("read ", path);
    if (std::atoi(now.c_str()) != m.process.oom_score_adj) {
      std::string v = cat(m.process.oom_score_adj, "\n");
      UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd || ::write(fd.get(), v.data(), v.size()) != static_cast<ssize_t>(v.size()))
        note(cat("the image's oom_score_adj ", m.process.oom_score_adj, " cannot be set"));
    }
  }
  std::vector<uint32_t> online;
  for (const auto& [tid, th] : threads) {
    const auto& s = th->sched;
    if (!s.recorded) continue;
    std::string who = cat("thread ", th->tid);
    // Affinity first: a SCHED_DEADLINE thread must keep every CPU.
    if (!s.cpus.empty()) {
      if (online.empty()) online = proc::online_cpus();
      cpu_set_t set;
      CPU_ZERO(&set);
      std::vector<uint32_t> here;
      for (uint32_t cpu : s.cpus)
        if (cpu < CPU_SETSIZE && (online.empty() || includes(online, {cpu}))) {
          CPU_SET(cpu, &set);
          here.push_back(cpu);
        }
      // The kernel narrows the set to the CPUs this container may use;
      // with none of them left it refuses, and the thread runs anywhere.
      if (here.empty() || ::sched_setaffinity(tid, sizeof set, &set) != 0)
        std::fprintf(stderr, "thaw: note: restore: %s ran on CPUs %s, which this machine does not offer; "
                     "it runs on any CPU\n", who.c_str(), cpu_list(s.cpus).c_str());
    }
    if (get_nice(tid, who) != s.nice && ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), s.nice) != 0)
      note(cat(who, ": its nice value ", s.nice, " cannot be set"));
    sched_attr now = get_attr(tid, who);
    if (now.sched_policy != s.policy || (now.sched_flags & SCHED_FLAG_RESET_ON_FORK) != s.flags ||
        now.sched_priority != s.priority || s.policy == SCHED_DEADLINE) {
      sched_attr a{};
      a.size = sizeof a;
      a.sched_policy = s.policy;
      a.sched_flags = s.flags;
      a.sched_nice = s.nice;
      a.sched_priority = s.priority;
      a.sched_runtime = s.runtime_ns;
      a.sched_deadline = s.deadline_ns;
      a.sched_period = s.period_ns;
      if (::syscall(SYS_sched_setattr, tid, &a, 0) != 0)
        note(cat(who, ": its scheduling policy ", policy_name(s.policy),
                 s.policy == SCHED_FIFO || s.policy == SCHED_RR ? cat(" (priority ", s.priority, ")") : "",
                 " is not allowed here"));
    }
    // Class NONE means "not set" (older kernels report a level with it,
    // which newer ones refuse to set).
    if (s.ioprio >> 13 != 0 && get_ioprio(tid, who) != s.ioprio &&
        ::syscall(SYS_ioprio_set, kIoprioWhoProcess, tid, s.ioprio) != 0)
      note(cat(who, ": its I/O priority class ", s.ioprio >> 13, " level ", s.ioprio & 7, " cannot be set"));
  }
}

}  // namespace thaw::engine
