#include "proc/cow_fork.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <cstring>

#include "common/error.h"
#include "proc/procfs.h"

namespace thaw::proc {

namespace {

constexpr long kOptions = PTRACE_O_TRACESYSGOOD;
// The injected clone() reports PTRACE_EVENT_CLONE and its child starts
// attached and stopped instead of running the target's code. The child
// inherits these options: EXITKILL makes the kernel kill it should thaw die,
// rather than let a second copy of the target run. (The target's thread has
// it only between two ptrace calls around the clone.)
constexpr long kForkOptions =
    kOptions | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_EXITKILL;

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status;
  while (::waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {
  }
}

bool wait_first_stop(pid_t pid) {
  for (;;) {
    int status;
    if (::waitpid(pid, &status, __WALL) < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (WIFSTOPPED(status)) return true;
    if (WIFEXITED(status) || WIFSIGNALED(status)) return false;
  }
}

}  // namespace

std::unique_ptr<CowFork> CowFork::make(Seizure& s, std::string* why) {
  // A seccomp filter may forbid clone() or kill the process for trying.
  std::string seccomp = read_status(cat("/proc/", s.pid()))["Seccomp"];
  if (!seccomp.empty() && seccomp != "0") {
    *why = "it has a seccomp filter";
    return nullptr;
  }
  Tracee& t = s.leader();
  if (::ptrace(PTRACE_SETOPTIONS, t.tid, nullptr, kForkOptions) != 0) {
    *why = cat("setting ptrace options failed: ", std::strerror(errno));
    return nullptr;
  }
  t.new_child = 0;
  long r = -1;
  try {
    // clone(flags 0: exit signal 0, nothing shared; same stack, a copy)
    r = s.syscall(t, SYS_clone, 0, 0, 0, 0, 0);
  } catch (...) {
    ::ptrace(PTRACE_SETOPTIONS, t.tid, nullptr, kOptions);
    if (t.new_child > 0) kill_and_reap(t.new_child);
    throw;
  }
  ::ptrace(PTRACE_SETOPTIONS, t.tid, nullptr, kOptions);
  if (r < 0) {
    *why = cat("clone() in it failed: ", std::strerror(static_cast<int>(-r)));
    return nullptr;
  }
  if (t.new_child <= 0) {
    // Cannot happen with PTRACE_O_TRACECLONE; if it did, the child would be
    // running, and thaw cannot tell which pid it is here.
    fail("clone() in the process made child ", r, " without a ptrace event; it was not stopped");
  }
  std::unique_ptr<CowFork> f(new CowFork(s, t.new_child, static_cast<pid_t>(r)));
  if (!wait_first_stop(f->pid_)) {
    *why = "the forked copy did not stop";
    return nullptr;  // the destructor kills and reaps whatever there is
  }
  // The copy holds every file of the target open: close them, so that a
  // peer waiting for the target to close one is not kept waiting by it.
  Tracee ct;
  ct.tid = f->pid_;
  if (::ptrace(PTRACE_GETREGS, ct.tid, nullptr, &ct.regs) == 0)
    s.syscall(ct, SYS_close_range, 0, ~0u, 0);  // best effort (Linux 5.9+)
  return f;
}

CowFork::~CowFork() {
  if (pid_ > 0) kill_and_reap(pid_);
  try {
    reap_in_target();
  } catch (...) {
    // The target exited or cannot be stopped again: the child stays a
    // zombie until the target exits.
  }
}

// Our wait above ended the child as its tracer; its zombie now waits for its
// parent, the target. WNOHANG: the target's thread must never block here.
void CowFork::reap_in_target() {
  const long options = WEXITED | __WCLONE | WNOHANG;
  if (!seizure_.released()) {
    seizure_.syscall(seizure_.leader(), SYS_waitid, P_PID, ns_pid_, 0, options, 0);
    return;
  }
  Seizure again(seizure_.pid());
  again.set_gadget(seizure_.gadget());
  again.syscall(again.leader(), SYS_waitid, P_PID, ns_pid_, 0, options, 0);
}

}  // namespace thaw::proc
