// Stopping a live process from outside (PTRACE_SEIZE + PTRACE_INTERRUPT on
// every thread) and running system calls inside its stopped threads.
#pragma once
#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <vector>

#include "proc/return_frame.h"

namespace thaw::proc {

struct Tracee {
  pid_t tid = 0;
  user_regs_struct regs{};     // as stopped
  bool regs_dirty = false;     // registers were used for injection
  std::vector<int> resend;     // signals swallowed during injection
  std::vector<siginfo_t> resend_info;  // and what came with each (si_signo 0: unknown)
  pid_t new_child = 0;         // the child an injected clone() made (our pid namespace)
  // Options to set at the clone event of an injected clone (>= 0): the
  // thread's own PTRACE_O_EXITKILL, for its child to inherit, is dropped as
  // soon as the child exists, not after the call.
  long options_at_clone = -1;
  uint64_t frame = 0;          // its return frame (proc/return_frame.h); 0: none
  bool frame_tried = false;
  // Every signal blocked while held (once it has a frame, whose sigreturn
  // puts its own mask back should thaw die): a signal that comes stays
  // queued in the kernel, siginfo and order intact, instead of stopping
  // each injected call. `own_mask` is what release() puts back.
  bool blocked = false;
  uint64_t own_mask = 0;
};

// The thread's own signal mask, also while Seizure blocks every signal.
uint64_t own_signal_mask(const Tracee& t);

// Registers as they should be resumed: a system call interrupted by our stop
// is rewound so it runs again (the kernel would restart it the same way).
// For a new process (an image): a timed wait starts its whole timeout anew.
user_regs_struct rewound(const user_regs_struct& r);
// The same for the thread it was taken from, let go: a timed wait the
// kernel keeps a restart for (poll, nanosleep, a futex wait with a timeout)
// goes on with restart_syscall, for what is left of its time, as the
// kernel itself resumes it.
user_regs_struct resumed(const user_regs_struct& r);

// The memory of any process we may trace (throws with the address).
void write_mem(pid_t pid, uint64_t addr, const void* data, size_t len);
void read_mem(pid_t pid, uint64_t addr, void* data, size_t len);

// All threads of one process, stopped. The destructor puts every thread back
// exactly as it was and detaches, so a failed checkpoint leaves the target
// running as before.
class Seizure {
 public:
  // kLeaderOnly stops just the main thread, for a system call run in it
  // while the others go on.
  enum class Scope { kAllThreads, kLeaderOnly };
  explicit Seizure(pid_t pid, Scope scope = Scope::kAllThreads);
  ~Seizure();
  Seizure(const Seizure&) = delete;
  Seizure& operator=(const Seizure&) = delete;

  pid_t pid() const { return pid_; }
  std::vector<Tracee>& threads() { return threads_; }
  Tracee& leader();

  // Runs system call `nr` in thread `t` and returns its raw result (-errno on
  // failure). `gadget` is the address of a `syscall` instruction mapped
  // executable in the target.
  long syscall(Tracee& t, long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
               uint64_t a5 = 0, uint64_t a6 = 0);
  void set_gadget(uint64_t addr) { gadget_ = addr; }
  uint64_t gadget() const { return gadget_; }
  // From now on, injected calls leave each thread a way back should thaw
  // die in the middle of one (proc/return_frame.h). Returns false when the
  // target lacks the code for it (no glibc): calls then run as before.
  // `known`: gadgets another seizure of the process found, used again
  // where they still are.
  bool protect_from_our_death(const ReturnGadgets* known = nullptr);
  const ReturnGadgets& return_gadgets() const { return ret_; }
  bool protecting() const { return protect_; }
  // Scratch memory inside the target (below the red zone of the thread's
  // stack) for syscall arguments; returns its address.
  uint64_t scratch(const Tracee& t, size_t len) const;
  void write_mem(uint64_t addr, const void* data, size_t len) { proc::write_mem(pid_, addr, data, len); }
  void read_mem(uint64_t addr, void* data, size_t len) { proc::read_mem(pid_, addr, data, len); }

  // Kill the target instead of resuming it (after the image is safely written).
  void kill_on_release() { kill_ = true; }
  void release();
  bool released() const { return released_; }
  // Detach leaving registers as they are now (after restore loaded them).
  void detach_as_is();

 private:
  void wait_syscall_stop(Tracee& t);
  std::vector<bool> queue_held_signals_inside(Tracee& t);
  // Blocks every signal of `t`, its own mask kept in the Tracee for
  // release() to put back; false if ptrace refused.
  bool block_signals(Tracee& t);
  pid_t pid_;
  std::vector<Tracee> threads_;
  uint64_t gadget_ = 0;
  ReturnGadgets ret_;
  bool protect_ = false;
  bool kill_ = false;
  bool released_ = false;
};

// Kills a process we trace (and may be the parent of) and waits until it is
// gone as far as we are concerned: its exit reaped, or not ours to wait for.
void kill_and_reap(pid_t pid);

// A new child of a traced process starts attached and stopped: waits for
// that first stop. False if it died first (or is not ours to wait for).
bool wait_first_stop(pid_t pid);


// Finds a `syscall` instruction (0f 05) in an executable mapping of `pid`,
// preferring the vdso. Throws if none.
uint64_t find_syscall_gadget(pid_t pid);

}  // namespace thaw::proc
