// The image manifest: everything about a process except its page data.
// Serialized as JSON (manifest.json), except the mappings, which are the bulk
// of it (thousands for a torch process) and go to a binary table
// (memory.bin, see memory_table.h); page data lives in pages.img, referenced
// by PageRun offsets. docs/image-format.md describes all three.
#pragma once
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace thaw::image {

constexpr int kFormatVersion = 10;
constexpr uint64_t kPageSize = 4096;
// Page data is stored and restored in runs of at most this size.
constexpr uint64_t kSegmentBytes = 2ull << 20;
// Each run carries one XXH3-64 per block of this size: small enough that a
// page fault served lazily verifies only the block it copies, large enough
// that the hashes are a tiny fraction of the image.
constexpr uint64_t kHashBlock = 64ull << 10;

// A contiguous range of stored bytes: `len` bytes for address (or object
// offset) `addr`, found at `offset` in pages.img, with the XXH3-64 of each
// kHashBlock-sized block (the last one may be shorter).
struct PageRun {
  uint64_t addr = 0, len = 0, offset = 0;
  std::vector<uint64_t> hashes;
};

inline uint64_t hash_blocks(uint64_t len) { return (len + kHashBlock - 1) / kHashBlock; }

// Identity of a file the image depends on, checked at restore.
struct FileId {
  std::string path;
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0;
  // A file of /dev/shm (or a small tmpfs file mapped shared: a named POSIX
  // semaphore) lives in memory only: its content is kept in the image, as
  // the Manifest::shmem object with this index, to make it again where it
  // is gone (-1: not kept).
  int kept = -1;
};

struct Vma {
  uint64_t start = 0, end = 0;
  int prot = 0;
  bool shared = false;
  bool growsdown = false;
  uint64_t pgoff = 0;
  // anon | file | shmem | vdso | vvar | vvar_vclock | vsyscall
  std::string kind;
  std::string name;  // as /proc/PID/maps shows it: [heap], [stack], a path
  int file = -1;     // index into Manifest::mapped_files, kind "file"
  int shmem = -1;    // index into Manifest::shmem, kind "shmem"
  uint32_t madv = 0; // MadvFlag bits to re-apply
  std::vector<PageRun> runs;  // private pages that differ from what mmap gives
};

enum MadvFlag : uint32_t {
  kMadvDontFork = 1, kMadvDontDump = 2, kMadvHugePage = 4, kMadvNoHugePage = 8,
  kMadvWipeOnFork = 16, kMadvMergeable = 32,
  kLocked = 64,      // mlock()ed (VM_LOCKED)
  kNoReserve = 128,  // MAP_NORESERVE (VM_NORESERVE): not charged to overcommit
};

// A shared memory object (MAP_SHARED|MAP_ANONYMOUS, memfd, SysV-like shmem):
// its whole content is stored once, mappings and fds refer to it by index.
struct Shmem {
  uint64_t dev = 0, ino = 0, size = 0;
  bool memfd = false;
  std::string name;  // memfd name, without the "memfd:" prefix
  uint32_t seals = 0;
  std::vector<PageRun> runs;  // addr = offset inside the object
  // A deleted file of a disk filesystem (memfd is true): the directory it
  // was in, where a restore makes it anew without a name (O_TMPFILE); ""
  // for a memfd or a file of a tmpfs.
  std::string dir;
  // A deleted file's owner and permission bits, which a restore gives the
  // file it makes (mode 0: not recorded, except with `path`).
  uint32_t uid = 0, gid = 0, mode = 0;
  // A named file of a tmpfs kept whole (FileId::kept, the "kept" of a file
  // entry): its path, where a restore that finds it gone makes it again
  // (memfd is false, dir empty); "" for every other object.
  std::string path;
  // Of such a file: its modification time, which a file made again gets
  // (a private mapping of it is checked against it), and the owner and
  // mode of each directory between /dev/shm and it ({uid, gid, mode},
  // outermost first), made again where gone.
  int64_t mtime_ns = 0;
  std::vector<std::array<uint32_t, 3>> dirs;
};

struct SigAction {
  int signo = 0;
  uint64_t handler = 0, flags = 0, restorer = 0, mask = 0;
};

struct SigInfo {
  int signo = 0;
  std::string raw;  // hex of the 128-byte siginfo_t
};

// How a thread is scheduled. `recorded` is false in images taken before
// thaw kept it: a restore then leaves the thread as it comes.
struct Sched {
  bool recorded = false;
  uint32_t policy = 0;            // SCHED_OTHER, SCHED_FIFO, ...
  uint64_t flags = 0;             // SCHED_FLAG_RESET_ON_FORK
  int nice = 0;
  uint32_t priority = 0;          // real-time priority
  uint64_t runtime_ns = 0, deadline_ns = 0, period_ns = 0;  // SCHED_DEADLINE
  std::vector<uint32_t> cpus;     // allowed CPUs; empty: not narrowed below what thaw had
  int ioprio = 0;                 // ioprio_get: class << 13 | level
};

struct Thread {
  int tid = 0;     // as the checkpointing side's /proc shows it (the host's, usually)
  int ns_tid = 0;  // in the process's own, innermost pid namespace; 0: not recorded
  std::vector<uint64_t> regs;  // struct user_regs_struct, in order
  std::string xstate;          // hex of the NT_X86_XSTATE regset, without its trailing zero bytes
  uint64_t xstate_len = 0;     // the regset's whole length (0: as long as xstate)
  uint64_t sigmask = 0;
  uint64_t altstack_sp = 0, altstack_size = 0;
  int altstack_flags = 0;
  uint64_t clear_tid = 0;
  uint64_t robust_head = 0, robust_len = 0;
  uint64_t rseq_ptr = 0, rseq_sig = 0;
  uint32_t rseq_len = 0, rseq_flags = 0;
  std::string comm;
  std::vector<SigInfo> pending;
  Sched sched;
  // prctl settings of the thread's own (prctl.cpp); 0 / false: the default.
  uint64_t timer_slack_ns = 0;  // 0: not recorded
  bool keep_caps = false;
  int pdeath_signal = 0;
};

struct Rlimit {
  int resource = 0;
  uint64_t cur = 0, max = 0;
};

struct Timer {  // interval timers: which = ITIMER_REAL/VIRTUAL/PROF
  int which = 0;
  int64_t interval_us = 0, value_us = 0;
};

struct PosixTimer {
  int id = 0, clock = 0, signo = 0, notify = 0, notify_tid = 0;
  uint64_t sigval = 0;
  int64_t interval_ns = 0, value_ns = 0;
};

struct MmFields {
  uint64_t start_code = 0, end_code = 0, start_data = 0, end_data = 0;
  uint64_t start_brk = 0, brk = 0, start_stack = 0;
  uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  std::vector<uint64_t> auxv;
};

struct Creds {
  std::vector<uint32_t> uids, gids;  // real, effective, saved, fs
  std::vector<uint32_t> groups;
};

constexpr int kOomScoreAdjUnknown = -1001;  // older images: left as it comes

// A child that had exited and was not reaped yet: made again at restore, so
// that the parent's wait finds it (resources/process.cpp).
struct Zombie {
  int pid = 0;     // in the process's pid namespace
  int status = 0;  // as waitpid reports it
};

struct Process {
  int pid = 0;
  int ns_pid = 0;  // in its own, innermost pid namespace (NStgid); 0: not recorded
  std::string comm;
  FileId exe;
  uint64_t personality = 0;
  uint32_t umask = 022;
  std::string cwd;
  Creds creds;
  MmFields mm;
  std::vector<Rlimit> rlimits;
  std::vector<SigAction> sigactions;
  std::vector<SigInfo> shared_pending;
  std::vector<Timer> itimers;
  std::vector<PosixTimer> posix_timers;
  bool stopped = false;  // job-control stopped (SIGSTOP) at checkpoint: restored stopped
  // Led its session / its process group (sid or pgid == pid): the restored
  // process makes its own. Otherwise it joins the restoring side's.
  bool session_leader = false, group_leader = false;
  // In a process tree, a member of a process group that another process of
  // the tree leads: that leader's pid at restore (restore_pid), which it
  // joins again. 0 otherwise.
  int pgid = 0;
  int oom_score_adj = kOomScoreAdjUnknown;
  // Process-wide prctl settings (prctl.cpp).
  int dumpable = -1;          // PR_GET_DUMPABLE; -1: not recorded
  uint64_t thp_disable = 0;   // PR_GET_THP_DISABLE: bit 0 disabled, higher bits its flags
  bool child_subreaper = false;
  std::vector<Zombie> zombies;
  // In a process tree (Manifest::children), a child's parent: the pid it
  // gets at restore (restore_pid). 0 for the tree's root.
  int parent = 0;
};

struct Cpu {
  std::string vendor, model;
  uint64_t xfeatures = 0;  // XCR0 of the machine that took the image
  uint64_t xstate_size = 0;
};

// A CUDA process's GPU state. The device memory itself is in the process's
// anonymous memory, where the driver copied it at checkpoint; this says what
// it came from and how much must fit back (docs/image-format.md, "gpu").
// An empty uuid means the image holds no GPU state.
struct Gpu {
  std::string model, uuid;       // "NVIDIA H100 80GB HBM3", "GPU-…"
  int driver_version = 0;        // cuDriverGetVersion: 13000 is CUDA 13.0
  std::string display_driver;    // "580.65.06"
  uint64_t memory_bytes = 0;     // device memory the process held
  int restore_tid = 0;           // the driver's restore thread, a tid of the image
};

struct Manifest {
  int version = kFormatVersion;
  std::string thaw_version;
  std::string kernel;
  Cpu cpu;
  Process process;
  std::vector<Thread> threads;
  std::vector<Vma> vmas;
  std::vector<FileId> mapped_files;
  std::vector<Shmem> shmem;
  // Open file descriptions (one per distinct struct file) and the fd table
  // pointing at them; each description's fields depend on its kind and are
  // owned by the resource file for that kind.
  nlohmann::json files = nlohmann::json::array();
  nlohmann::json fds = nlohmann::json::array();
  uint64_t pages_bytes = 0;
  Gpu gpu;
  // The running descendants of the process (a process tree), parents before
  // their children, each with the state above of its own (version, cpu,
  // gpu and pages_bytes are the root's). Their page data is in the same
  // pages.img; their mappings follow the root's in memory.bin, each table
  // memory_table_bytes long.
  std::vector<Manifest> children;
  uint64_t memory_table_bytes = 0;
  // Open file descriptions that fds of more than one process of the tree
  // refer to (or pipes and socket pairs whose ends are in different ones):
  // each is opened once, by the root, before it makes its children; a
  // process's own `files` entry for one is {"kind": "pooled", "pool": N}.
  nlohmann::json pool = nlohmann::json::array();
};

// Runs kept in JSON (shared memory objects, buffered file data) are
// [addr, len, offset, [hash, ...]] arrays.
inline void to_json(nlohmann::json& j, const PageRun& r) { j = nlohmann::json::array({r.addr, r.len, r.offset, r.hashes}); }
inline void from_json(const nlohmann::json& j, PageRun& r) {
  if (j.is_array()) {
    r = PageRun{j.at(0).get<uint64_t>(), j.at(1).get<uint64_t>(), j.at(2).get<uint64_t>(),
                j.at(3).get<std::vector<uint64_t>>()};
  } else {  // file data kept as an object with only "len" when empty
    r = PageRun{j.value("addr", uint64_t{0}), j.value("len", uint64_t{0}), j.value("offset", uint64_t{0}), {}};
  }
  if (r.hashes.size() != hash_blocks(r.len)) throw std::runtime_error("page run with a wrong number of hashes");
}
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(FileId, path, dev, ino, size, mtime_ns, kept)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Shmem, dev, ino, size, memfd, name, seals, runs, dir, uid, gid,
                                                mode, path, mtime_ns, dirs)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SigAction, signo, handler, flags, restorer, mask)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(SigInfo, signo, raw)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Sched, recorded, policy, flags, nice, priority, runtime_ns,
                                                deadline_ns, period_ns, cpus, ioprio)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Thread, tid, ns_tid, regs, xstate, xstate_len, sigmask, altstack_sp,
                                                altstack_size, altstack_flags, clear_tid,
                                                robust_head, robust_len, rseq_ptr, rseq_sig,
                                                rseq_len, rseq_flags, comm, pending, sched,
                                                timer_slack_ns, keep_caps, pdeath_signal)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Rlimit, resource, cur, max)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Timer, which, interval_us, value_us)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(PosixTimer, id, clock, signo, notify, notify_tid,
                                                sigval, interval_ns, value_ns)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(MmFields, start_code, end_code, start_data, end_data,
                                                start_brk, brk, start_stack, arg_start, arg_end,
                                                env_start, env_end, auxv)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Creds, uids, gids, groups)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Zombie, pid, status)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Process, pid, ns_pid, comm, exe, personality, umask, cwd,
                                                creds, mm, rlimits, sigactions, shared_pending,
                                                itimers, posix_timers, stopped, session_leader,
                                                group_leader, oom_score_adj, dumpable, thp_disable,
                                                child_subreaper, zombies, parent, pgid)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Cpu, vendor, model, xfeatures, xstate_size)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Gpu, model, uuid, driver_version, display_driver,
                                                memory_bytes, restore_tid)
// vmas are not in the JSON: memory.bin holds them.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Manifest, version, thaw_version, kernel, cpu, process,
                                                threads, mapped_files, shmem, files, fds,
                                                pages_bytes, gpu, children, memory_table_bytes, pool)

}  // namespace thaw::image
