// prctl settings: per process (dumpable, transparent huge pages disabled,
// child subreaper) and per thread (timer slack, keep-capabilities, the
// parent-death signal). Most show nowhere in /proc, so the checkpoint asks
// each held thread with injected prctl(PR_GET_*), all six alike. A restore that left them as
// the restoring side has them would change what the process relies on:
// one that made itself non-dumpable, to keep its memory from other
// processes of its user, would come back dumpable.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstring>

#include "common/error.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

namespace {

long get(CheckpointContext& c, proc::Tracee& t, int option, const char* what) {
  long rc = c.seizure.syscall(t, SYS_prctl, option);
  if (rc < 0) fail("thread ", t.tid, ": prctl(", what, ") failed: ", std::strerror(int(-rc)));
  return rc;
}

// The options that answer through an int* rather than the return value.
int get_int(CheckpointContext& c, proc::Tracee& t, int option, const char* what) {
  uint64_t at = c.seizure.scratch(t, sizeof(int));
  long rc = c.seizure.syscall(t, SYS_prctl, option, at);
  if (rc < 0) fail("thread ", t.tid, ": prctl(", what, ") failed: ", std::strerror(int(-rc)));
  int v = 0;
  c.seizure.read_mem(at, &v, sizeof v);
  return v;
}

}  // namespace

void dump_prctl(CheckpointContext& c) {
  auto& p = c.m.process;
  proc::Tracee& leader = c.seizure.leader();
  p.dumpable = static_cast<int>(get(c, leader, PR_GET_DUMPABLE, "PR_GET_DUMPABLE"));
  p.thp_disable = static_cast<uint64_t>(get(c, leader, PR_GET_THP_DISABLE, "PR_GET_THP_DISABLE"));
  p.child_subreaper = get_int(c, leader, PR_GET_CHILD_SUBREAPER, "PR_GET_CHILD_SUBREAPER") != 0;
  for (auto& th : c.m.threads) {
    proc::Tracee* t = nullptr;
    for (auto& x : c.seizure.threads())
      if (x.tid == th.tid) t = &x;
    if (!t) fail("thread ", th.tid, " is not held");
    th.timer_slack_ns = static_cast<uint64_t>(get(c, *t, PR_GET_TIMERSLACK, "PR_GET_TIMERSLACK"));
    th.keep_caps = get(c, *t, PR_GET_KEEPCAPS, "PR_GET_KEEPCAPS") != 0;
    th.pdeath_signal = get_int(c, *t, PR_GET_PDEATHSIG, "PR_GET_PDEATHSIG");
  }
}

void restore_prctl_early(RestoreContext& r) {
  const auto& p = r.m.process;
  // Before the restorer maps memory: pages filled with THP off stay small,
  // as the process had them.
  if ((p.thp_disable & 1) && ::prctl(PR_SET_THP_DISABLE, 1, p.thp_disable & ~uint64_t{1}, 0, 0) != 0)
    fail_errno("disable transparent huge pages (PR_SET_THP_DISABLE ", p.thp_disable, "), as the process had them");
  if (p.child_subreaper && ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
    fail_errno("make it a child subreaper, as it was");
}

void plan_prctl(RestoreContext& r) {
  const auto& p = r.m.process;
  // 2 (suid_dumpable) cannot be asked for; a credential change gives it.
  r.plan.args.dumpable = p.dumpable == 0 || p.dumpable == 1 ? p.dumpable : -1;
  if (r.plan.threads.size() != r.m.threads.size()) fail("plan_prctl before plan_threads");
  for (size_t i = 0; i < r.m.threads.size(); i++) {
    const auto& th = r.m.threads[i];
    auto& t = r.plan.threads[i];
    t.timer_slack_ns = th.timer_slack_ns;
    t.keep_caps = th.keep_caps;
    // A held process's SIGKILL is set again: the restorer's change of
    // credentials (a non-root image) clears it.
    t.pdeath_signal = r.held ? SIGKILL : th.pdeath_signal;
  }
}

void set_prctl_injected(proc::Seizure& s, proc::Tracee& t, const image::Thread& th, const image::Thread& creator,
                        const image::Process* process) {
  auto set = [&](int option, uint64_t value, const char* what) {
    long rc = s.syscall(t, SYS_prctl, option, value);
    if (rc < 0) fail("thread ", th.tid, ": prctl(", what, ", ", value, "): ", std::strerror(int(-rc)));
  };
  // A fork or clone copies the creator's timer slack and keep-capabilities
  // and clears the death signal and subreaper.
  if (th.timer_slack_ns && th.timer_slack_ns != creator.timer_slack_ns)
    set(PR_SET_TIMERSLACK, th.timer_slack_ns, "PR_SET_TIMERSLACK");
  if (th.keep_caps != creator.keep_caps) set(PR_SET_KEEPCAPS, th.keep_caps, "PR_SET_KEEPCAPS");
  if (th.pdeath_signal) set(PR_SET_PDEATHSIG, static_cast<uint64_t>(th.pdeath_signal), "PR_SET_PDEATHSIG");
  if (process && process->child_subreaper) set(PR_SET_CHILD_SUBREAPER, 1, "PR_SET_CHILD_SUBREAPER");
}

}  // namespace thaw::engine
