// Signal dispositions (handler, flags, restorer, mask per signal) and the
// signals pending for the whole process. Per-thread masks and queues are in
// threads.cpp.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

namespace {
struct KernelSigaction {  // what rt_sigaction reads and writes on x86-64
  uint64_t handler, flags, restorer, mask;
};
}  // namespace

void dump_signals(CheckpointContext& c) {
  auto& leader = c.seizure.leader();
  uint64_t scratch = c.seizure.scratch(leader, sizeof(KernelSigaction));
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    long rc = c.seizure.syscall(leader, SYS_rt_sigaction, sig, 0, scratch, 8);
    if (rc < 0) fail("read action of signal ", sig, ": ", std::strerror(int(-rc)));
    KernelSigaction ka;
    c.seizure.read_mem(scratch, &ka, sizeof ka);
    if (ka.handler == 0 && ka.flags == 0 && ka.mask == 0) continue;  // default
    c.m.process.sigactions.push_back(image::SigAction{sig, ka.handler, ka.flags, ka.restorer, ka.mask});
  }
  c.m.process.shared_pending = peek_shared_signals(c.pid);
}

void restore_signals(RestoreContext& r) {
  // The image lists only actions that are not the default; whatever the
  // restoring side ignores or handles (a server ignoring SIGPIPE) must not
  // carry over.
  for (int sig = 1; sig <= 64; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    KernelSigaction dfl{0, 0, 0, 0};
    ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, 8);
  }
  for (const auto& a : r.m.process.sigactions) {
    KernelSigaction ka{a.handler, a.flags, a.restorer, a.mask};
    if (::syscall(SYS_rt_sigaction, a.signo, &ka, nullptr, 8) != 0) fail_errno("set action of signal ", a.signo);
  }
  for (const auto& s : r.m.process.shared_pending) {
    rst_siginfo si{};
    si.tid = 0;
    si.signo = s.signo;
    auto raw = from_hex(s.raw);
    std::memcpy(si.info, raw.data(), std::min(raw.size(), sizeof si.info));
    r.plan.sigs.push_back(si);
  }
}

}  // namespace thaw::engine
