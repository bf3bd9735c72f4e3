// Threads: general registers, extended FPU/AVX state, signal mask,
// sigaltstack, clear-child-tid, robust futex list, rseq, name, and signals
// queued for the thread. Restore creates each thread in the restorer
// (clone3 with its old tid) and loads its registers through ptrace last.
#include <cpuid.h>
#include <elf.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

namespace {

constexpr size_t kRegCount = sizeof(user_regs_struct) / sizeof(uint64_t);

struct RseqConfig {  // struct ptrace_rseq_configuration
  uint64_t ptr;
  uint32_t size, sig, flags, pad;
};

std::vector<image::SigInfo> peek_signals(pid_t tid, bool shared) {
  std::vector<image::SigInfo> out;
  // Many at a time: the kernel walks the queue from its head to `off` at
  // each call, so one by one, a queue of tens of thousands of real-time
  // signals took seconds (quadratic).
  constexpr uint32_t kBatch = 512;
  std::vector<siginfo_t> batch(kBatch);
  // And the kernel walks from the head for each entry it copies, so a
  // queue of N costs N²/2 steps under the target's signal lock: 20 000
  // take about 2 s here, the 94 000 a flood of real-time signals can reach
  // (RLIMIT_SIGPENDING) took minutes, with the target held. Longer queues
  // than kMaxQueued (seconds) are refused up front, which costs one walk.
  constexpr uint32_t kMaxQueued = 32768;
  __ptrace_peeksiginfo_args probe{kMaxQueued, shared ? uint32_t(PTRACE_PEEKSIGINFO_SHARED) : 0u, 1};
  long beyond = ::ptrace(PTRACE_PEEKSIGINFO, tid, &probe, batch.data());
  if (beyond < 0) fail_errno("read pending signals of thread ", tid);
  if (beyond > 0)
    fail(shared ? cat("process ", tid, " has") : cat("thread ", tid, " has"), " more than ", kMaxQueued,
         " signals queued (real-time signals sent faster than it takes them); reading them all would hold it for "
         "seconds to minutes: not supported. Checkpoint it once its queue is shorter.");
  for (uint32_t off = 0;;) {
    __ptrace_peeksiginfo_args args{off, shared ? uint32_t(PTRACE_PEEKSIGINFO_SHARED) : 0u, kBatch};
    long n = ::ptrace(PTRACE_PEEKSIGINFO, tid, &args, batch.data());
    if (n < 0) fail_errno("read pending signals of thread ", tid);
    for (long i = 0; i < n; i++) out.push_back(image::SigInfo{batch[i].si_signo, to_hex(&batch[i], sizeof batch[i])});
    if (n < static_cast<long>(kBatch)) break;
    off += static_cast<uint32_t>(n);
  }
  return out;
}

}  // namespace

std::vector<image::SigInfo> peek_shared_signals(pid_t pid) { return peek_signals(pid, true); }

namespace {

// A process checkpointed inside a pid namespace (a container's) knows only
// its ids there: getpid(), and the tids glibc caches in each thread's
// descriptor. The restore's fresh namespace gives it those ids back. Not
// for an image without them (taken before they were recorded), nor for a
// process that was pid 1 of its namespace: there pid 1 is the engine's init.
bool use_ns_ids(const image::Manifest& m) {
  if (m.process.ns_pid <= 1) return false;
  return std::all_of(m.threads.begin(), m.threads.end(), [](const image::Thread& t) { return t.ns_tid > 1; });
}

}  // namespace

pid_t restore_pid(const image::Manifest& m) { return use_ns_ids(m) ? m.process.ns_pid : m.process.pid; }

pid_t restore_tid(const image::Manifest& m, const image::Thread& t) { return use_ns_ids(m) ? t.ns_tid : t.tid; }

image::Cpu this_cpu() {
  image::Cpu cpu;
  std::istringstream in(read_file("/proc/cpuinfo"));
  std::string line;
  while (std::getline(in, line)) {
    auto pos = line.find(':');
    if (pos == std::string::npos) continue;
    std::string k = trim(line.substr(0, pos)), v = trim(line.substr(pos + 1));
    if (k == "vendor_id" && cpu.vendor.empty()) cpu.vendor = v;
    if (k == "model name" && cpu.model.empty()) cpu.model = v;
  }
  cpu.xfeatures = proc::xcr0();
  unsigned a, b, c, d;
  __cpuid_count(0xd, 0, a, b, c, d);
  cpu.xstate_size = b;
  return cpu;
}

void check_cpu_compatible(const image::Manifest& m) {
  image::Cpu here = this_cpu();
  uint64_t missing = m.cpu.xfeatures & ~here.xfeatures;
  if (missing)
    fail("the image was taken on a CPU with extended-state features this CPU lacks (XCR0 0x", std::hex,
         m.cpu.xfeatures, " vs 0x", here.xfeatures, "; missing 0x", missing,
         "); restore it on a machine like the one that took it");
}

void dump_threads(CheckpointContext& c) {
  c.m.cpu = this_cpu();
  // The leader first: the restorer runs on it and creates the others.
  std::vector<proc::Tracee*> order;
  order.push_back(&c.seizure.leader());
  for (auto& t : c.seizure.threads())
    if (t.tid != c.pid) order.push_back(&t);

  for (proc::Tracee* tp : order) {
    proc::Tracee& t = *tp;
    image::Thread th;
    th.tid = t.tid;
    std::string where = cat("thread ", t.tid);
    th.ns_tid = innermost_id(proc::read_status(cat("/proc/", c.pid, "/task/", t.tid))["NSpid"]);
    user_regs_struct r = proc::rewound(t.regs);
    th.regs.assign(reinterpret_cast<uint64_t*>(&r), reinterpret_cast<uint64_t*>(&r) + kRegCount);

    std::vector<unsigned char> xs(64 * 1024);
    iovec iov{xs.data(), xs.size()};
    if (::ptrace(PTRACE_GETREGSET, t.tid, NT_X86_XSTATE, &iov) != 0) fail_errno(where, ": read FPU/AVX state");
    // Most of the area is zeros (components in their initial state): a
    // thread's 11 KiB came to 2.7 KiB without its trailing ones, and 1 500
    // threads' manifest from 34 to about 9 MB.
    size_t used = iov.iov_len;
    while (used > 0 && xs[used - 1] == 0) used--;
    th.xstate = to_hex(xs.data(), used);
    th.xstate_len = iov.iov_len;

    th.sigmask = proc::own_signal_mask(t);

    uint64_t scratch = c.seizure.scratch(t, 64);
    long rc = c.seizure.syscall(t, SYS_sigaltstack, 0, scratch);
    if (rc < 0) fail(where, ": sigaltstack failed: ", std::strerror(int(-rc)));
    struct {
      uint64_t sp;
      int32_t flags, pad;
      uint64_t size;
    } ss;
    c.seizure.read_mem(scratch, &ss, sizeof ss);
    th.altstack_sp = ss.sp;
    th.altstack_flags = ss.flags;
    th.altstack_size = ss.size;

    rc = c.seizure.syscall(t, SYS_prctl, PR_GET_TID_ADDRESS, scratch);
    if (rc < 0) fail(where, ": PR_GET_TID_ADDRESS failed: ", std::strerror(int(-rc)));
    c.seizure.read_mem(scratch, &th.clear_tid, sizeof th.clear_tid);

    uint64_t head = 0;
    size_t len = 0;
    if (::syscall(SYS_get_robust_list, t.tid, &head, &len) != 0) fail_errno(where, ": read robust futex list");
    th.robust_head = head;
    th.robust_len = len;

    RseqConfig rs{};
    if (::ptrace(static_cast<__ptrace_request>(0x420f) /* PTRACE_GET_RSEQ_CONFIGURATION */, t.tid,
                 sizeof rs, &rs) > 0) {
      th.rseq_ptr = rs.ptr;
      th.rseq_len = rs.size;
      th.rseq_sig = rs.sig;
      th.rseq_flags = rs.flags;
    }
    std::string comm;
    if (try_read_file(cat("/proc/", c.pid, "/task/", t.tid, "/comm"), &comm)) th.comm = trim(comm);
    th.pending = peek_signals(t.tid, false);
    c.m.threads.push_back(std::move(th));
  }
}

void plan_threads(RestoreContext& r) {
  for (const auto& th : r.m.threads) {
    rst_thread t{};
    t.tid = restore_tid(r.m, th);
    t.clear_tid = th.clear_tid;
    t.robust_head = th.robust_head;
    t.robust_len = th.robust_len;
    t.rseq_ptr = th.rseq_ptr;
    t.rseq_len = th.rseq_len;
    t.rseq_sig = static_cast<uint32_t>(th.rseq_sig);
    t.altstack_sp = th.altstack_sp;
    t.altstack_size = th.altstack_size;
    t.altstack_flags = th.altstack_flags;
    std::strncpy(t.comm, th.comm.c_str(), sizeof t.comm - 1);
    r.plan.threads.push_back(t);
    for (const auto& s : th.pending) {
      rst_siginfo si{};
      si.tid = t.tid;
      si.signo = s.signo;
      auto raw = from_hex(s.raw);
      std::memcpy(si.info, raw.data(), std::min(raw.size(), sizeof si.info));
      r.plan.sigs.push_back(si);
    }
  }
}

void load_thread_registers(pid_t tid, const image::Thread& t) {
  if (t.regs.size() != kRegCount) fail("image: thread ", t.tid, " has ", t.regs.size(), " registers");
  user_regs_struct regs;
  std::memcpy(&regs, t.regs.data(), sizeof regs);
  regs.orig_rax = static_cast<unsigned long long>(-1);
  auto xs = from_hex(t.xstate);
  if (t.xstate_len > xs.size()) xs.resize(t.xstate_len, 0);  // the kernel takes the whole area
  iovec iov{xs.data(), xs.size()};
  if (!xs.empty() && ::ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov) != 0)
    fail_errno("thread ", t.tid, ": load FPU/AVX state");
  if (::ptrace(PTRACE_SETREGS, tid, nullptr, &regs) != 0) fail_errno("thread ", t.tid, ": load registers");
  uint64_t mask = t.sigmask;
  if (::ptrace(PTRACE_SETSIGMASK, tid, sizeof mask, &mask) != 0) fail_errno("thread ", t.tid, ": set signal mask");
}

}  // namespace thaw::engine
