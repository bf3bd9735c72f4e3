#include "proc/ptrace.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "common/error.h"
#include "common/io.h"
#include "proc/procfs.h"

namespace thaw::proc {

namespace {
constexpr long kErestartSys = -512, kErestartNoIntr = -513, kErestartNoHand = -514,
               kErestartRestartBlock = -516;

bool is_restart(long rax) {
  return rax == kErestartSys || rax == kErestartNoIntr || rax == kErestartNoHand ||
         rax == kErestartRestartBlock;
}

// How long a thread may take to stop. Ordinary threads stop within
// microseconds; one that never does (a kernel worker thread of the
// process) must fail the checkpoint, not hang it with the others held.
constexpr auto kStopTimeout = std::chrono::seconds(10);

// io_uring's kernel threads (iou-sqp-*, iou-wrk-*) are threads of the
// process that ptrace can attach to but never stop: they are not user code
// and hold no user state, so they are left alone (a process using io_uring
// is refused by its fd anyway).
bool io_worker(pid_t tid) {
  constexpr unsigned long kPfIoWorker = 0x10;
  std::vector<std::string> stat;
  try {
    stat = read_stat_fields(tid);  // /proc/TID works for any thread
  } catch (const std::exception&) {
    return false;  // exited meanwhile: the seizure finds that out
  }
  return stat.size() > 6 && (std::stoul(stat[6]) & kPfIoWorker);  // field 9, flags
}

// Waits until `tid` reports the stop that PTRACE_INTERRUPT asked for. A
// signal caught mid-delivery is delivered (nothing has been read yet, so the
// image simply shows the state after its handler started).
bool wait_interrupt_stop(pid_t tid) {
  auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
  auto nap = std::chrono::microseconds(20);
  for (;;) {
    int status;
    pid_t r = ::waitpid(tid, &status, __WALL | WNOHANG);
    if (r == 0) {
      if (std::chrono::steady_clock::now() > deadline)
        fail("thread ", tid, " did not stop within ", kStopTimeout.count(), " s (state: ",
             trim(proc::read_status(cat("/proc/", tid))["State"]), ")");
      std::this_thread::sleep_for(nap);
      nap = std::min<std::chrono::microseconds>(nap * 2, std::chrono::milliseconds(1));
      continue;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) return false;
    if (!WIFSTOPPED(status)) continue;
    int event = status >> 16;
    if (event == PTRACE_EVENT_STOP) return true;
    int sig = WSTOPSIG(status);
    ::ptrace(PTRACE_CONT, tid, nullptr, event == 0 && sig != (SIGTRAP | 0x80) ? sig : 0);
  }
}
}  // namespace

user_regs_struct rewound(const user_regs_struct& r) {
  user_regs_struct out = r;
  if (static_cast<long>(r.orig_rax) >= 0 && is_restart(static_cast<long>(r.rax))) {
    out.rax = r.orig_rax;
    out.rip -= 2;
  }
  out.orig_rax = static_cast<unsigned long long>(-1);
  return out;
}

user_regs_struct resumed(const user_regs_struct& r) {
  user_regs_struct out = rewound(r);
  // Our injected calls leave the thread's restart block alone (none of them
  // sets one, nor runs rt_sigreturn, which clears it).
  if (static_cast<long>(r.orig_rax) >= 0 && static_cast<long>(r.rax) == kErestartRestartBlock)
    out.rax = SYS_restart_syscall;
  return out;
}

Seizure::Seizure(pid_t pid, Scope scope) : pid_(pid) {
  if (::kill(pid, 0) != 0) fail_errno("process ", pid);
  std::set<pid_t> seized;
  try {
    for (int round = 0;; round++) {
      if (round > 1000) fail("process ", pid, ": threads keep appearing; cannot stop them all");
      std::vector<pid_t> fresh;
      for (pid_t tid : list_threads(pid))
        if (!seized.count(tid) && (scope == Scope::kAllThreads || tid == pid) && !io_worker(tid))
          fresh.push_back(tid);
      if (fresh.empty()) break;
      for (pid_t tid : fresh) {
        if (::ptrace(PTRACE_SEIZE, tid, nullptr, PTRACE_O_TRACESYSGOOD) != 0) {
          if (errno == ESRCH) continue;  // exited meanwhile
          if (errno == EPERM)
            fail_errno("process ", pid, " thread ", tid,
                       ": cannot attach (it is being traced by another process, or thaw lacks "
                       "CAP_SYS_PTRACE)");
          fail_errno("attach to thread ", tid);
        }
        seized.insert(tid);
        Tracee t;
        t.tid = tid;
        threads_.push_back(t);
        if (::ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) fail_errno("interrupt thread ", tid);
      }
      for (auto it = threads_.begin(); it != threads_.end();) {
        if (std::find(fresh.begin(), fresh.end(), it->tid) == fresh.end()) {
          ++it;
          continue;
        }
        if (!wait_interrupt_stop(it->tid)) {
          it = threads_.erase(it);  // the thread exited
          continue;
        }
        ++it;
      }
    }
    if (threads_.empty()) fail("process ", pid, " exited while being stopped");
    for (auto& t : threads_)
      if (::ptrace(PTRACE_GETREGS, t.tid, nullptr, &t.regs) != 0) fail_errno("read registers of thread ", t.tid);
  } catch (...) {
    release();
    throw;
  }
}

Seizure::~Seizure() { release(); }

Tracee& Seizure::leader() {
  for (auto& t : threads_)
    if (t.tid == pid_) return t;
  fail("process ", pid_, ": main thread has exited (only other threads left); not supported");
}

void Seizure::release() {
  if (released_) return;
  released_ = true;
  if (kill_) {
    // The killed threads stay traced by us until we reap their exit: wait
    // for each, so the process's real parent sees it end.
    ::kill(pid_, SIGKILL);
    // The leader's exit is reported only once every other thread is reaped.
    std::stable_partition(threads_.begin(), threads_.end(), [&](const Tracee& t) { return t.tid != pid_; });
    for (auto& t : threads_) {
      int status;
      while (::waitpid(t.tid, &status, __WALL) >= 0 || errno == EINTR) {
        if (WIFEXITED(status) || WIFSIGNALED(status)) break;
      }
    }
    return;
  }
  for (auto& t : threads_) {
    std::vector<bool> queued = queue_held_signals_inside(t);
    if (t.blocked) ::ptrace(PTRACE_SETSIGMASK, t.tid, sizeof t.own_mask, &t.own_mask);
    if (t.regs_dirty) {
      // The thread sits in a syscall-exit stop of an injected call: the
      // kernel's restart logic will not run again, so resume it with the
      // interrupted system call rewound by hand.
      user_regs_struct r = resumed(t.regs);
      ::ptrace(PTRACE_SETREGS, t.tid, nullptr, &r);
    }
    ::ptrace(PTRACE_DETACH, t.tid, nullptr, 0);
    // Sent again with what came with them (a sigqueue's value, its sender),
    // where the kernel lets another process queue that siginfo (si_code < 0
    // but a tgkill's); else as a plain signal. After the detach: a traced
    // thread would stop for each again.
    for (size_t i = 0; i < t.resend.size(); i++) {
      if (i < queued.size() && queued[i]) continue;
      const siginfo_t* info = i < t.resend_info.size() && t.resend_info[i].si_signo == t.resend[i] ? &t.resend_info[i]
                                                                                                  : nullptr;
      if (info && ::syscall(SYS_rt_tgsigqueueinfo, pid_, t.tid, t.resend[i], info) == 0) continue;
      ::syscall(SYS_tgkill, pid_, t.tid, t.resend[i]);
    }
  }
}

// A signal held back during an injected call goes back with its siginfo.
// The kernel lets another process queue only a siginfo that says it came
// from sigqueue, a timer, ... (si_code < 0 but SI_TKILL); kill's and
// tgkill's would come from thaw's pid. The thread itself may queue any, so
// each goes back through an injected rt_tgsigqueueinfo to itself, in the
// order they came, while the thread still sits in its injected call's
// stop. Meanwhile the thread blocks every signal (release() puts its own
// mask back): one it queued would otherwise stop it on its way to the next
// call, be held back again, and so on. Returns which were queued; the
// others are sent from outside.
std::vector<bool> Seizure::queue_held_signals_inside(Tracee& t) {
  std::vector<bool> queued;
  if (t.resend.empty() || !t.regs_dirty || !block_signals(t)) return queued;
  try {
    std::string task = cat("/proc/", pid_, "/task/", t.tid);
    auto st = read_status(task);
    pid_t ns_tgid = innermost_id(st["NStgid"]), ns_tid = innermost_id(st["NSpid"]);
    if (ns_tgid <= 0 || ns_tid <= 0) return queued;
    // Signals that come during these calls join the list, and are sent too.
    for (size_t i = 0; i < t.resend.size(); i++) {
      siginfo_t info = i < t.resend_info.size() ? t.resend_info[i] : siginfo_t{};
      if (info.si_signo != t.resend[i]) break;  // unknown siginfo: this one and the rest from outside
      uint64_t at = scratch(t, sizeof info);
      write_mem(at, &info, sizeof info);
      if (syscall(t, SYS_rt_tgsigqueueinfo, ns_tgid, ns_tid, t.resend[i], at) != 0) break;
      queued.resize(i + 1, false);
      queued[i] = true;
    }
  } catch (const Error&) {
    // the thread cannot take another call: the rest go from outside
  }
  return queued;
}

bool Seizure::block_signals(Tracee& t) {
  if (t.blocked) return true;
  uint64_t all = ~uint64_t{0};
  t.blocked = ::ptrace(PTRACE_GETSIGMASK, t.tid, sizeof t.own_mask, &t.own_mask) == 0 &&
              ::ptrace(PTRACE_SETSIGMASK, t.tid, sizeof all, &all) == 0;
  return t.blocked;
}

void Seizure::detach_as_is() {
  if (released_) return;
  released_ = true;
  // The caller loaded every thread's state, its signal mask too.
  for (auto& t : threads_) ::ptrace(PTRACE_DETACH, t.tid, nullptr, 0);
}

uint64_t own_signal_mask(const Tracee& t) {
  if (t.blocked) return t.own_mask;
  uint64_t mask = 0;
  if (::ptrace(PTRACE_GETSIGMASK, t.tid, sizeof mask, &mask) != 0) fail_errno("thread ", t.tid, ": read signal mask");
  return mask;
}

void Seizure::wait_syscall_stop(Tracee& t) {
  for (;;) {
    int status;
    pid_t r = ::waitpid(t.tid, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      fail_errno("wait for thread ", t.tid);
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) fail("thread ", t.tid, " died during an injected system call");
    if (!WIFSTOPPED(status)) continue;
    if (WSTOPSIG(status) == (SIGTRAP | 0x80)) return;
    int event = status >> 16;
    if (event == 0) {  // a signal arrived: hold it back, with its siginfo
      siginfo_t si{};
      if (::ptrace(PTRACE_GETSIGINFO, t.tid, nullptr, &si) != 0) si.si_signo = 0;
      t.resend.push_back(WSTOPSIG(status));
      t.resend_info.push_back(si);
    }
    if (event == PTRACE_EVENT_CLONE || event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK) {
      unsigned long child = 0;
      if (::ptrace(PTRACE_GETEVENTMSG, t.tid, nullptr, &child) == 0) t.new_child = static_cast<pid_t>(child);
      if (t.options_at_clone >= 0) {
        ::ptrace(PTRACE_SETOPTIONS, t.tid, nullptr, t.options_at_clone);
        t.options_at_clone = -1;
      }
    }
    if (::ptrace(PTRACE_SYSCALL, t.tid, nullptr, 0) != 0) fail_errno("resume thread ", t.tid);
  }
}

long Seizure::syscall(Tracee& t, long nr, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                      uint64_t a6) {
  if (!gadget_) fail("internal: no syscall instruction found in the target");
  user_regs_struct r = t.regs;
  r.rip = gadget_;
  if (protect_) {
    if (!t.frame_tried) {
      t.frame_tried = true;
      t.frame = write_return_frame(t.tid, t.regs, ret_);
    }
    if (t.frame) {
      r.rip = ret_.syscall_ret;
      r.rsp = t.frame;
      block_signals(t);
    }
  }
  r.rax = nr;
  r.orig_rax = static_cast<unsigned long long>(-1);
  r.rdi = a1;
  r.rsi = a2;
  r.rdx = a3;
  r.r10 = a4;
  r.r8 = a5;
  r.r9 = a6;
  t.regs_dirty = true;
  if (::ptrace(PTRACE_SETREGS, t.tid, nullptr, &r) != 0) fail_errno("set registers of thread ", t.tid);
  if (::ptrace(PTRACE_SYSCALL, t.tid, nullptr, 0) != 0) fail_errno("resume thread ", t.tid);
  wait_syscall_stop(t);  // entry
  if (::ptrace(PTRACE_SYSCALL, t.tid, nullptr, 0) != 0) fail_errno("resume thread ", t.tid);
  wait_syscall_stop(t);  // exit
  user_regs_struct out;
  if (::ptrace(PTRACE_GETREGS, t.tid, nullptr, &out) != 0) fail_errno("read registers of thread ", t.tid);
  return static_cast<long>(out.rax);
}

bool Seizure::protect_from_our_death(const ReturnGadgets* known) {
  ret_ = known && known->still_in(pid_) ? *known : find_return_gadgets(pid_);
  protect_ = ret_.found();
  return protect_;
}

uint64_t Seizure::scratch(const Tracee& t, size_t len) const {
  if (len + 256 + 16 > kScratchRoom) fail("internal: ", len, " bytes of scratch memory asked for; at most ",
                                         kScratchRoom - 272);
  // Below the 128-byte red zone, 16-byte aligned; signal frames need far
  // more room than this, so the stack has it.
  return (t.regs.rsp - 128 - len - 256) & ~uint64_t{15};
}

void write_mem(pid_t pid, uint64_t addr, const void* data, size_t len) {
  iovec local{const_cast<void*>(data), len}, remote{reinterpret_cast<void*>(addr), len};
  if (::process_vm_writev(pid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(len))
    fail_errno("write memory of process ", pid, " at 0x", std::hex, addr);
}

void read_mem(pid_t pid, uint64_t addr, void* data, size_t len) {
  iovec local{data, len}, remote{reinterpret_cast<void*>(addr), len};
  if (::process_vm_readv(pid, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(len))
    fail_errno("read memory of process ", pid, " at 0x", std::hex, addr);
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

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  for (;;) {
    int status;
    if (::waitpid(pid, &status, __WALL) < 0) {
      if (errno == EINTR) continue;
      return;  // not ours to wait for (any more)
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) return;
  }
}

uint64_t find_syscall_gadget(pid_t pid) {
  auto maps = read_maps(pid, false);
  std::stable_sort(maps.begin(), maps.end(),
                   [](const MapEntry& a, const MapEntry& b) { return (a.name == "[vdso]") > (b.name == "[vdso]"); });
  for (const auto& m : maps) {
    if (!(m.prot & PROT_EXEC) || !(m.prot & PROT_READ) || m.name == "[vsyscall]") continue;
    uint64_t len = std::min<uint64_t>(m.end - m.start, 1 << 20);
    std::vector<unsigned char> buf(len);
    iovec local{buf.data(), len}, remote{reinterpret_cast<void*>(m.start), len};
    ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 2) continue;
    for (ssize_t i = 0; i + 1 < n; i++)
      if (buf[i] == 0x0f && buf[i + 1] == 0x05) return m.start + i;
  }
  fail("process ", pid, ": no syscall instruction found in its executable mappings");
}

}  // namespace thaw::proc
