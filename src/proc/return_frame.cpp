#include "proc/return_frame.h"

#include <cpuid.h>
#include <elf.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "proc/procfs.h"
#include "proc/ptrace.h"

namespace thaw::proc {

namespace {

// The kernel's x86-64 struct sigcontext and struct ucontext (uapi), which
// rt_sigreturn reads.
struct KSigcontext {
  uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
  uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
  uint16_t cs, gs, fs, ss;
  uint64_t err, trapno, oldmask, cr2, fpstate;
  uint64_t reserved1[8];
};
static_assert(sizeof(KSigcontext) == 256);

struct KUcontext {
  uint64_t uc_flags, uc_link;
  uint64_t ss_sp;
  int32_t ss_flags, pad;
  uint64_t ss_size;
  KSigcontext mc;
  uint64_t sigmask;
};
static_assert(sizeof(KUcontext) == 304);

constexpr uint64_t kUcFpXstate = 1, kUcSigcontextSs = 2;
// An altstack mode the kernel refuses with EINVAL, which rt_sigreturn
// ignores: the thread's altstack stays as it is.
constexpr int32_t kAltstackUnchanged = 3;
constexpr uint32_t kXstateMagic1 = 0x46505853, kXstateMagic2 = 0x46505845;
constexpr size_t kSwBytesAt = 464, kXsaveHeaderAt = 512, kMinXstate = 576;
constexpr size_t kSiginfoBytes = 128;

// The XSAVE state as a signal frame holds it: only as far as the last
// component the thread uses (the frame may hold no more than the kernel's
// size for this thread, which leaves out AMX tiles it never enabled), with
// the software bytes and the closing magic the kernel checks. Returns the
// bytes to write (magic included); empty when the state cannot be put in
// a frame.
std::vector<unsigned char> frame_xstate(pid_t tid, const XsaveLayout& layout) {
  std::vector<unsigned char> xs(64 * 1024);
  iovec iov{xs.data(), xs.size()};
  if (::ptrace(PTRACE_GETREGSET, tid, NT_X86_XSTATE, &iov) != 0 || iov.iov_len < kMinXstate) return {};
  uint64_t in_use;
  std::memcpy(&in_use, xs.data() + kXsaveHeaderAt, 8);
  size_t need = kMinXstate;
  for (int i = 2; i < 64; i++)
    if (layout.enabled >> i & 1 && in_use >> i & 1) need = std::max<size_t>(need, layout.end[i]);
  if (need > iov.iov_len) return {};
  uint64_t features = layout.enabled & 3;  // x87 and SSE: the legacy area
  for (int i = 2; i < 64; i++)
    if (layout.enabled >> i & 1 && layout.end[i] <= need) features |= uint64_t{1} << i;
  xs.resize(need + 4);
  struct {
    uint32_t magic1, extended_size;
    uint64_t xfeatures;
    uint32_t xstate_size, padding[7];
  } sw{kXstateMagic1, static_cast<uint32_t>(need + 4), features, static_cast<uint32_t>(need), {}};
  static_assert(sizeof sw == 48);
  std::memcpy(xs.data() + kSwBytesAt, &sw, sizeof sw);
  std::memcpy(xs.data() + need, &kXstateMagic2, 4);
  return xs;
}

}  // namespace

uint64_t xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

XsaveLayout XsaveLayout::of_this_cpu() {
  XsaveLayout l;
  l.enabled = xcr0();
  for (int i = 2; i < 64; i++) {
    if (!(l.enabled >> i & 1)) continue;
    unsigned size, offset, ecx, edx;
    __cpuid_count(0xd, i, size, offset, ecx, edx);
    l.end[i] = offset + size;
  }
  return l;
}

namespace {

using Pattern = std::vector<unsigned char>;
const Pattern kSyscallRet{0x0f, 0x05, 0xc3};
const Pattern kSigreturnRax{0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
const Pattern kSigreturnEax{0xb8, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05};
const Pattern kPopRaxRet{0x58, 0xc3};

// Whether `pid`'s memory at `addr` holds `p`.
bool holds(pid_t pid, uint64_t addr, const Pattern& p) {
  unsigned char buf[16];
  iovec local{buf, p.size()}, remote{reinterpret_cast<void*>(addr), p.size()};
  return ::process_vm_readv(pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(p.size()) &&
         std::memcmp(buf, p.data(), p.size()) == 0;
}

}  // namespace

bool ReturnGadgets::still_in(pid_t pid) const {
  return found() && holds(pid, syscall_ret, kSyscallRet) &&
         (holds(pid, sigreturn, kSigreturnRax) || holds(pid, sigreturn, kSigreturnEax)) &&
         (!pop_rax_ret || holds(pid, pop_rax_ret, kPopRaxRet));
}

ReturnGadgets find_return_gadgets(pid_t pid) {
  auto maps = read_maps(pid, false);
  // libc (which has both) first: fewer bytes read.
  std::stable_sort(maps.begin(), maps.end(), [](const MapEntry& a, const MapEntry& b) {
    return (a.name.find("/libc.so") != std::string::npos) > (b.name.find("/libc.so") != std::string::npos);
  });
  ReturnGadgets g;
  // Read in pieces, stopping once all are found (the target may be held:
  // glibc has them in its first few hundred KiB of code).
  constexpr uint64_t kPiece = 256 << 10, kOverlap = 16;
  std::vector<unsigned char> buf(kPiece);
  for (const auto& m : maps) {
    if (!(m.prot & PROT_EXEC) || !(m.prot & PROT_READ) || m.name == "[vsyscall]") continue;
    uint64_t end = std::min<uint64_t>(m.end, m.start + (8 << 20));
    auto all = [&] { return g.found() && g.pop_rax_ret; };
    for (uint64_t at = m.start; at < end && !all(); at += kPiece - kOverlap) {
      uint64_t len = std::min<uint64_t>(kPiece, end - at);
      iovec local{buf.data(), len}, remote{reinterpret_cast<void*>(at), len};
      ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
      if (n <= 0) break;
      auto find = [&](const std::vector<unsigned char>& pat) -> uint64_t {
        const void* hit = ::memmem(buf.data(), static_cast<size_t>(n), pat.data(), pat.size());
        return hit ? at + (static_cast<const unsigned char*>(hit) - buf.data()) : 0;
      };
      if (!g.syscall_ret) g.syscall_ret = find(kSyscallRet);
      if (!g.sigreturn) g.sigreturn = find(kSigreturnRax);
      if (!g.sigreturn) g.sigreturn = find(kSigreturnEax);
      if (!g.pop_rax_ret) g.pop_rax_ret = find(kPopRaxRet);
      if (static_cast<uint64_t>(n) < len) break;
    }
    if (all()) break;
  }
  if (g.found()) g.xsave = XsaveLayout::of_this_cpu();
  return g;
}

uint64_t write_return_frame(pid_t tid, const user_regs_struct& regs, const ReturnGadgets& g) {
  std::vector<unsigned char> xs = frame_xstate(tid, g.xsave);
  uint64_t mask = 0;
  if (xs.empty() || ::ptrace(PTRACE_GETSIGMASK, tid, sizeof mask, &mask) != 0) return 0;
  // At the frame: the return address `ret` takes, the ucontext, room for
  // the siginfo rt_sigreturn checks is there, then the FPU state (XRSTOR
  // wants it 64-byte aligned).
  size_t fp_off = (8 + sizeof(KUcontext) + kSiginfoBytes + 63) & ~size_t{63};
  size_t total = fp_off + xs.size();
  uint64_t frame = (regs.rsp - 128 - kScratchRoom - total) & ~uint64_t{63};
  user_regs_struct r = rewound(regs);
  KUcontext uc{};
  uc.uc_flags = kUcFpXstate | kUcSigcontextSs;
  uc.ss_flags = kAltstackUnchanged;
  KSigcontext& sc = uc.mc;
  sc.r8 = r.r8, sc.r9 = r.r9, sc.r10 = r.r10, sc.r11 = r.r11, sc.r12 = r.r12, sc.r13 = r.r13;
  sc.r14 = r.r14, sc.r15 = r.r15, sc.rdi = r.rdi, sc.rsi = r.rsi, sc.rbp = r.rbp, sc.rbx = r.rbx;
  sc.rdx = r.rdx, sc.rax = r.rax, sc.rcx = r.rcx, sc.rsp = r.rsp, sc.rip = r.rip, sc.eflags = r.eflags;
  sc.cs = static_cast<uint16_t>(r.cs);
  sc.ss = static_cast<uint16_t>(r.ss);
  sc.fpstate = frame + fp_off;
  uc.sigmask = mask;
  std::vector<unsigned char> blob(total, 0);
  std::memcpy(blob.data(), &g.sigreturn, 8);
  std::memcpy(blob.data() + 8, &uc, sizeof uc);
  std::memcpy(blob.data() + fp_off, xs.data(), xs.size());
  try {
    write_mem(tid, frame, blob.data(), blob.size());
  } catch (const Error&) {
    return 0;  // below its stack's mapping
  }
  return frame;
}

}  // namespace thaw::proc
