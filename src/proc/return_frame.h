// A way back for a held thread should its tracer die (kill -9 of thaw)
// while a system call is injected into it: the kernel then lets the thread
// go from wherever it is, with the registers the injection borrowed.
//
// An injected call runs at a `syscall; ret` sequence of the target's own
// code with the stack pointer on a signal frame (written below the thread's
// stack, under the room kept for scratch data) whose return address is the
// target's `rt_sigreturn` sequence (glibc's __restore_rt). With the tracer
// alive the thread never gets past the call: the tracer takes it back at
// the syscall-exit stop. With the tracer gone it returns through the frame,
// which holds its own registers (an interrupted system call rewound to run
// again), signal mask and FPU/AVX state, and carries on as if never held.
#pragma once
#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>

namespace thaw::proc {

// XCR0: the XSAVE components this CPU has enabled.
uint64_t xcr0();

// Where each XSAVE component ends in the standard format, for this CPU's
// enabled components (XCR0); read once (cpuid is slow in a VM).
struct XsaveLayout {
  uint64_t enabled = 0;
  uint32_t end[64] = {};
  static XsaveLayout of_this_cpu();
};

// Addresses of both sequences in the target's executable mappings.
struct ReturnGadgets {
  uint64_t syscall_ret = 0;  // 0f 05 c3
  uint64_t sigreturn = 0;    // mov $15, %rax (or %eax); syscall
  // pop %rax; ret (58 c3): with syscall_ret, a way for a process that has
  // only its stack to make a call of its choosing (proc/cow_fork.cpp).
  // Searched along with the two above; 0 where not found.
  uint64_t pop_rax_ret = 0;
  XsaveLayout xsave;
  bool found() const { return syscall_ret && sigreturn; }
  // Whether both are still where they were found (the process ran since).
  bool still_in(pid_t pid) const;
};
ReturnGadgets find_return_gadgets(pid_t pid);

// Room below the red zone kept for Seizure::scratch; the frame goes below.
constexpr uint64_t kScratchRoom = 8192;

// Writes the frame for held thread `tid` whose registers as stopped are
// `regs`; returns the stack pointer an injected call runs with, or 0 when
// the frame cannot be written (its stack has no room: the call then runs
// unprotected).
uint64_t write_return_frame(pid_t tid, const user_regs_struct& regs, const ReturnGadgets& g);

}  // namespace thaw::proc
