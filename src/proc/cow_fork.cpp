#include "proc/cow_fork.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <chrono>
#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "common/timing.h"
#include "proc/procfs.h"

namespace thaw::proc {

namespace {

constexpr long kOptions = PTRACE_O_TRACESYSGOOD;
// The injected clone() reports PTRACE_EVENT_CLONE and its child starts
// attached and stopped instead of running the target's code; it inherits
// these options.
constexpr long kForkOptions = kOptions | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK;

// Should thaw die, the copy must end rather than run on as a second copy
// of the target. Where the target has return frames (proc/return_frame.h)
// and a `pop %rax; ret`, the copy starts on a stack of its own: the
// `syscall; ret` it returns through then pops `pop %rax; ret`, which
// loads exit_group's number, then the `syscall; ret` again. thaw gives the
// copy PTRACE_O_EXITKILL at its first stop; dying before that, thaw leaves
// it to run those three words (a seized tracee's new child starts with a
// trap, not a SIGSTOP, so it does run). Without them the target's thread
// carries EXITKILL for the copy to inherit, from just before the clone to
// its clone event, and thaw dying in between kills the target.
struct ExitChain {
  uint64_t words[3];
};

// Reaps the killed copy in the target (its parent) through `s`, which holds
// at least the target's main thread. WNOHANG: the target must never block.
void reap_in(Seizure& s, pid_t ns_pid) {
  s.syscall(s.leader(), SYS_waitid, P_PID, ns_pid, 0, WEXITED | __WCLONE | WNOHANG, 0);
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
  const ReturnGadgets& g = s.return_gadgets();
  uint64_t copy_stack = 0;
  try {
    if (s.protecting() && g.pop_rax_ret) {
      if (!t.frame_tried) s.syscall(t, SYS_getpid);  // the frame is made at the first call
      if (t.frame) {
        ExitChain chain{{g.pop_rax_ret, SYS_exit_group, g.syscall_ret}};
        copy_stack = s.scratch(t, sizeof chain);
        s.write_mem(copy_stack, &chain, sizeof chain);
      }
    }
  } catch (const Error& e) {
    *why = cat("preparing the copy's stack failed: ", e.what());
    return nullptr;
  }
  long options = copy_stack ? kForkOptions : kForkOptions | PTRACE_O_EXITKILL;
  if (::ptrace(PTRACE_SETOPTIONS, t.tid, nullptr, options) != 0) {
    *why = cat("setting ptrace options failed: ", std::strerror(errno));
    return nullptr;
  }
  t.new_child = 0;
  t.options_at_clone = kOptions;
  long r = -1;
  try {
    // clone(flags 0: exit signal 0, nothing shared; a copy of the memory,
    // on its own stack where there is one)
    r = s.syscall(t, SYS_clone, 0, copy_stack, 0, 0, 0);
  } catch (...) {
    ::ptrace(PTRACE_SETOPTIONS, t.tid, nullptr, kOptions);
    if (t.new_child > 0) {
      pid_t ns_pid = innermost_id(read_status(cat("/proc/", t.new_child))["NSpid"]);
      kill_and_reap(t.new_child);
      try {
        if (ns_pid > 0) reap_in(s, ns_pid);
      } catch (...) {
        // the first error is the one to report
      }
    }
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
  // From here the copy is owned: every way out kills it and has it reaped.
  std::unique_ptr<CowFork> f(new CowFork(s, t.new_child, static_cast<pid_t>(r)));
  if (!wait_first_stop(f->pid_)) {
    *why = "the forked copy did not stop";
    return nullptr;
  }
  if (copy_stack && ::ptrace(PTRACE_SETOPTIONS, f->pid_, nullptr, kOptions | PTRACE_O_EXITKILL) != 0) {
    *why = cat("setting ptrace options of the copy failed: ", std::strerror(errno));
    return nullptr;
  }
  // The copy holds every file of the target open: close them, so that a
  // peer waiting for the target to close one is not kept waiting by it.
  Tracee ct;
  ct.tid = f->pid_;
  long closed = -1;
  try {
    if (::ptrace(PTRACE_GETREGS, ct.tid, nullptr, &ct.regs) == 0) closed = s.syscall(ct, SYS_close_range, 0, ~0u, 0);
  } catch (const Error& e) {
    *why = cat("closing the copy's files failed: ", e.what());
    return nullptr;
  }
  if (closed != 0) {
    *why = cat("closing the copy's files failed (close_range: ",
               closed < 0 ? std::strerror(static_cast<int>(-closed)) : "no registers", ")");
    return nullptr;
  }
  // Named, so that a later checkpoint knows the zombie a thaw killed from
  // here on leaves (PTRACE_O_EXITKILL) for its own and reaps it.
  try {
    uint64_t at = s.scratch(ct, sizeof kCopyName);
    write_mem(ct.tid, at, kCopyName, sizeof kCopyName);
    long named = s.syscall(ct, SYS_prctl, PR_SET_NAME, at);
    if (named != 0) {
      *why = cat("naming the copy failed: ", std::strerror(static_cast<int>(-named)));
      return nullptr;
    }
  } catch (const Error& e) {
    *why = cat("naming the copy failed: ", e.what());
    return nullptr;
  }
  return f;
}

int CowFork::reap_leftovers(Seizure& s) {
  int reaped = 0;
  for (pid_t kid : list_children(s.pid())) {
    std::vector<std::string> f;
    std::string comm;
    try {
      f = read_stat_fields(kid);
    } catch (const Error&) {
      continue;
    }
    // state, exit_signal (field 38), and the name it was given in make()
    if (f.size() < 36 || f[0] != "Z" || f[35] != "0") continue;
    if (!try_read_file(cat("/proc/", kid, "/comm"), &comm) || trim(comm) != kCopyName) continue;
    pid_t ns_pid = innermost_id(read_status(cat("/proc/", kid))["NSpid"]);
    if (ns_pid <= 0) continue;
    reap_in(s, ns_pid);
    reaped++;
  }
  return reaped;
}

double CowFork::finish() {
  if (finished_) return 0;
  finished_ = true;
  kill_and_reap(pid_);
  // Our wait ended the child as its tracer; its zombie now waits for its
  // parent, the target.
  if (!seizure_.released()) {
    reap_in(seizure_, ns_pid_);
    return 0;
  }
  auto t0 = std::chrono::steady_clock::now();
  Seizure leader(seizure_.pid(), Seizure::Scope::kLeaderOnly);
  // Found again: the address found before the release may be gone.
  leader.set_gadget(find_syscall_gadget(seizure_.pid()));
  leader.protect_from_our_death(&seizure_.return_gadgets());
  reap_in(leader, ns_pid_);
  leader.release();
  return ms_since(t0);
}

CowFork::~CowFork() {
  try {
    finish();
  } catch (...) {
    // The target exited or cannot be stopped again: the child stays a
    // zombie until the target exits.
  }
}

}  // namespace thaw::proc
