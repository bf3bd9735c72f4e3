// The restore sequence. thaw creates a fresh pid namespace whose init (our
// child) creates the process with its old pid (clone3 + set_tid); that
// process rebuilds its fds and attributes with ordinary code, then jumps
// into the restorer blob, which replaces the address space and creates the
// threads. Every thread parks; thaw loads registers through ptrace, unmaps
// the blob, and lets them go.
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <set>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <dirent.h>
#include <thread>

#include "common/error.h"
#include "common/interrupt.h"
#include "common/io.h"
#include "common/mapping.h"
#include "common/timing.h"
#include "engine/engine.h"
#include "engine/pager.h"
#include "engine/restorer_error.h"
#include "engine/resources/gpu.h"
#include "engine/resources/resources.h"
#include "engine/resources/tree.h"
#include "image/working_set.h"

extern "C" const char thaw_restorer_blob[];
extern "C" const char thaw_restorer_blob_end[];

namespace thaw::engine {

namespace {

constexpr uint64_t kTaskSize = 0x7ffffffff000ull;
constexpr int kRestoreFailed = 70;

uint64_t page_up(uint64_t v) { return (v + 4095) & ~uint64_t{4095}; }

// Tells thaw (through the status pipe) why the restore failed.
[[noreturn]] void child_fail(int status_fd, const std::string& msg) {
  std::string line = "E" + msg + "\n";
  ssize_t ignored = ::write(status_fd, line.data(), line.size());
  (void)ignored;
  ::_exit(kRestoreFailed);
}

// One byte, with an fd attached when fd >= 0.
bool send_fd(int sock, char tag, int fd) {
  char cbuf[CMSG_SPACE(sizeof(int))] = {};
  iovec io{&tag, 1};
  msghdr mh{};
  mh.msg_iov = &io;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  }
  return ::sendmsg(sock, &mh, MSG_NOSIGNAL) == 1;
}

// The fd sent with send_fd, or -1 (none sent, or the peer is gone).
int recv_fd(int sock) {
  char tag, cbuf[CMSG_SPACE(sizeof(int))];
  iovec io{&tag, 1};
  msghdr mh{};
  mh.msg_iov = &io;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  ssize_t n;
  while ((n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (n != 1) return -1;
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  if (!cm || cm->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  std::memcpy(&fd, CMSG_DATA(cm), sizeof fd);
  return fd;
}

template <typename T>
uint64_t put_array(std::vector<char>& blk, const std::vector<T>& v) {
  uint64_t off = (blk.size() + 63) & ~uint64_t{63};
  blk.resize(off + v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(blk.data() + off, v.data(), v.size() * sizeof(T));
  return off;
}

// Drops the rseq area glibc registered for this thread: the restorer unmaps
// it, and the kernel would fault writing to it.
void unregister_rseq() {
  if (__rseq_size == 0) return;
  char* area = static_cast<char*>(__builtin_thread_pointer()) + __rseq_offset;
  for (uint32_t len : {32u, __rseq_size}) {
    if (::syscall(SYS_rseq, area, len, 1 /* RSEQ_FLAG_UNREGISTER */, 0x53053053) == 0) return;
  }
}

[[noreturn]] void jump_to_restorer(RestoreContext& r, int pages_fd, int status_fd) {
  auto& p = r.plan;
  // vdso pieces of this process, matched with the image's.
  auto mine = proc::read_maps(0, false);
  uint64_t park_bytes = 0;
  for (const auto& v : r.m.vmas) {
    if (v.kind != "vdso" && v.kind != "vvar" && v.kind != "vvar_vclock") continue;
    auto it = std::find_if(mine.begin(), mine.end(), [&](const proc::MapEntry& e) { return e.name == v.name; });
    if (it == mine.end() || it->end - it->start != v.end - v.start)
      fail("the kernel's vdso layout differs from the image's (", v.name,
           "); restore on the kernel that took the image");
    p.remaps.push_back(rst_remap{it->start, park_bytes, v.start, v.end - v.start});
    park_bytes += v.end - v.start;
  }
  for (const auto& e : mine)
    if ((e.name == "[vdso]" || e.name == "[vvar]" || e.name == "[vvar_vclock]") &&
        std::none_of(p.remaps.begin(), p.remaps.end(), [&](const rst_remap& x) { return x.from == e.start; }))
      fail("this kernel has ", e.name, " but the image has none; restore on the kernel that took the image");

  uint64_t blob_bytes = page_up(thaw_restorer_blob_end - thaw_restorer_blob) + (64 << 10);
  std::vector<char> blk(sizeof(rst_args));
  p.args.vmas_off = put_array(blk, p.vmas);
  p.args.segs_off = put_array(blk, p.segs);
  p.args.threads_off = put_array(blk, p.threads);
  p.args.sigs_off = put_array(blk, p.sigs);
  p.args.remaps_off = put_array(blk, p.remaps);
  p.args.close_off = put_array(blk, p.close_fds);
  p.args.auxv_off = put_array(blk, p.auxv);
  p.args.timers_off = put_array(blk, p.timers);
  p.args.hashes_off = put_array(blk, p.hashes);
  p.args.zeros_off = put_array(blk, p.zeros);
  p.args.locks_off = put_array(blk, p.locks);
  uint64_t args_bytes = page_up(blk.size());
  // Memory is filled by as many threads as there are CPUs (they exit before
  // the image's threads are created), with tids no image thread has.
  uint64_t stored = 0;
  for (const auto& sgm : p.segs) stored += sgm.len;
  cpu_set_t cpus;
  int ncpu = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  uint32_t fillers = stored >= (8u << 20) ? std::min<uint32_t>(ncpu - 1, RST_MAX_FILLERS) : 0;
  std::string pid_max_s;
  int pid_max = try_read_file("/proc/sys/kernel/pid_max", &pid_max_s) ? std::atoi(pid_max_s.c_str()) : 32768;
  // Every id of the tree is taken (its other processes are being made
  // meanwhile), not only this process's.
  std::set<pid_t> taken;
  std::vector<const image::Manifest*> members = r.tree;
  if (members.empty()) members.push_back(&r.m);
  for (const image::Manifest* mm : members) {
    taken.insert(restore_pid(*mm));
    for (const auto& t : mm->threads) taken.insert(restore_tid(*mm, t));
    for (const auto& z : mm->process.zombies) taken.insert(z.pid);
  }
  // Each process of a tree from its own range: theirs run at the same time.
  for (int tid = pid_max - 1 - int(r.member * RST_MAX_FILLERS); tid > 1 && p.args.nr_fillers < fillers; tid--)
    if (!taken.count(tid)) p.args.filler_tids[p.args.nr_fillers++] = tid;
  uint64_t stacks_bytes = uint64_t(p.threads.size() + p.args.nr_fillers) * RST_STACK_BYTES;
  uint64_t size = blob_bytes + args_bytes + stacks_bytes + park_bytes;
  // A hole in the image's layout that is also free in this process now.
  uint64_t base = reserve_free_range({&r.m}, size, PROT_READ | PROT_WRITE | PROT_EXEC);

  uint64_t args_at = base + blob_bytes, stacks_at = args_at + args_bytes, park_at = stacks_at + stacks_bytes;
  auto* threads = reinterpret_cast<rst_thread*>(blk.data() + p.args.threads_off);
  for (size_t i = 0; i < p.threads.size(); i++) threads[i].stack_top = stacks_at + (i + 1) * RST_STACK_BYTES - 64;
  for (size_t k = 0; k < p.args.nr_fillers; k++)
    p.args.filler_stack_tops[k] = stacks_at + (p.threads.size() + k + 1) * RST_STACK_BYTES - 64;
  auto* remaps = reinterpret_cast<rst_remap*>(blk.data() + p.args.remaps_off);
  for (size_t i = 0; i < p.remaps.size(); i++) remaps[i].park += park_at;

  rst_args& a = p.args;
  a.magic = RST_MAGIC;
  a.hash_avx2 = __builtin_cpu_supports("avx2");
  a.region_start = base;
  a.region_end = base + size;
  a.stage_start = r.stage_start;
  a.stage_end = r.stage_end;
  a.task_size = kTaskSize;
  a.pages_fd = pages_fd;
  a.status_fd = status_fd;
  a.nr_vmas = static_cast<uint32_t>(p.vmas.size());
  a.nr_segs = static_cast<uint32_t>(p.segs.size());
  a.nr_threads = static_cast<uint32_t>(p.threads.size());
  a.nr_sigs = static_cast<uint32_t>(p.sigs.size());
  a.nr_remaps = static_cast<uint32_t>(p.remaps.size());
  a.nr_close = static_cast<uint32_t>(p.close_fds.size());
  a.nr_timers = static_cast<uint32_t>(p.timers.size());
  a.nr_locks = static_cast<uint32_t>(p.locks.size());
  std::memcpy(blk.data(), &a, sizeof a);

  std::memcpy(reinterpret_cast<void*>(base), thaw_restorer_blob, thaw_restorer_blob_end - thaw_restorer_blob);
  std::memcpy(reinterpret_cast<void*>(args_at), blk.data(), blk.size());
  uint64_t stack_top = threads[0].stack_top;
  unregister_rseq();
  __asm__ volatile("mov %0, %%rsp\n\tjmp *%1" ::"S"(stack_top), "r"(base), "D"(args_at) : "memory");
  __builtin_unreachable();
}

[[noreturn]] void become_restored(RestoreContext& r, int pages_fd, int status_fd, int init_sock);

// A child of a tree's process, just made by make_children.
void become_restored_child(RestoreContext& r) { become_restored(r, r.pages_fd, r.status_fds[r.member], -1); }

// Everything the new process does with ordinary code before the jump.
[[noreturn]] void become_restored(RestoreContext& r, int pages_fd, int status_fd, int init_sock) {
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  if (init_sock >= 0) {
    // The userfaultfd must be made here: it serves the address space of
    // whoever creates it. Init holds it from now on, thaw takes a copy.
    int uffd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (uffd < 0 || !send_fd(init_sock, 'U', uffd)) {
      send_fd(init_sock, 'N', -1);  // no userfaultfd here: restore every page now
      r.lazy.clear();
    }
    if (uffd >= 0) ::close(uffd);
    ::close(init_sock);
  }
  try {
    restore_zombies(r);
    r.pages_fd = pages_fd;
    // In a tree, the status pipes of the processes still to be made and
    // the pool's descriptions pass through this one to its children.
    std::vector<int*> keep = {&r.pages_fd, &status_fd};
    for (size_t j = 0; j < r.status_fds.size(); j++)
      if (j != r.member && r.status_fds[j] >= 0) keep.push_back(&r.status_fds[j]);
    for (int& fd : r.pool_fds) keep.push_back(&fd);
    if (r.member == 0) r.on_tty = stdio_is_tty(r);
    for (int& fd : r.shmem_fds)
      if (fd >= 0) keep.push_back(&fd);
    std::vector<int> fillers = prepare_fd_table(r, keep);
    pages_fd = r.pages_fd;
    r.status_fd = status_fd;
    // A tree's root makes the shared memory and the shared descriptions of
    // every process; each child has them from its parent.
    if (r.member == 0) restore_shmem_objects(r);
    for (int fd : r.shmem_fds)
      if (r.member != 0 && fd >= 0) r.plan.close_fds.push_back(fd);
    restore_session(r);
    // SQLite's WAL files gone since the checkpoint are made again before
    // any is opened: the root's pool opens those its children share with it.
    make_sqlite_wal_files(r.m, r.pool());
    if (!r.tree.empty()) {
      r.status_fds[r.member] = status_fd;
      if (r.member == 0) {
        open_pool(r);
        stage_shared_memory(r);
      }
      make_children(r, become_restored_child);
    }
    // Files are checked here, inside the namespaces the process will live
    // in, where paths resolve as they did for it.
    check_mapped_files(r.m, r.pool());
    restore_files(r);
    finish_fd_table(r, fillers);
    plan_posix_locks(r);
    restore_process_early(r);
    restore_prctl_early(r);
    restore_signals(r);
    restore_timers(r);
    plan_memory(r);
    plan_threads(r);
    plan_prctl(r);
    plan_process(r);
    restore_fd_limit(r);
    jump_to_restorer(r, pages_fd, status_fd);
  } catch (const std::exception& e) {
    remove_own_made_paths(status_fd);
    child_fail(status_fd, e.what());
  }
}


// Until thaw is done with the process, init watches it: a thaw killed
// mid-restore (kill -9 cannot be caught) would leave the process parked
// for good, every signal blocked, holding its memory; so init kills
// everything in the namespace. While the pager fills memory, init also
// holds a copy of the userfaultfd, so that the missing pages do not turn
// into zeros under the process (which is what closing the last copy does)
// before that. `watch` is readable with 'D' when thaw (or its pager) is
// done, EOF if it died. `uffd` is -1 for an eager restore.
void watch_thaw(int watch, int uffd, pid_t child, int* status, bool* child_done) {
  for (;;) {
    pollfd pf{watch, POLLIN, 0};
    int n = ::poll(&pf, 1, 50);
    int st;
    pid_t w;
    while ((w = ::waitpid(-1, &st, __WALL | WNOHANG)) > 0)
      if (w == child && (WIFEXITED(st) || WIFSIGNALED(st))) {
        *status = st;
        *child_done = true;
      }
    if (n <= 0) {
      if (*child_done) break;  // nothing left to protect
      continue;
    }
    char c = 0;
    ssize_t r = ::read(watch, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r != 1 || c != 'D') ::kill(-1, SIGKILL);
    break;
  }
  if (uffd >= 0) ::close(uffd);
  ::close(watch);
}

// pid 1 of the restored process's namespace: reaps, forwards termination
// signals, and exits the way the restored process did. Its wait status
// goes to thaw on `exit_fd` as soon as it ends; init stays while any other
// process of the namespace lives (an orphan: a child the process left
// running, which would have outlived it before the checkpoint too, and
// which init's exit would kill).
[[noreturn]] void run_init(RestoreContext& r, const RestoreOptions& o, int pages_fd, int status_fd, int watch,
                          int exit_fd, bool lazy) {
  if (o.namespaces && ::unshare(o.namespaces) != 0)
    child_fail(status_fd, cat("create namespaces: ", std::strerror(errno)));
  // The process lives in a new pid namespace: with the host's /proc,
  // /proc/<getpid()> would be some other process (the CUDA driver reads it,
  // for one). Unless the caller sets up the mounts itself, it gets a mount
  // namespace of its own with a /proc of its pid namespace. Slave, not
  // private: mounts and unmounts on the host still reach it. Where that
  // cannot be done (a chroot, an LSM), it keeps the host's /proc as before.
  bool own_mounts = o.namespaces & CLONE_NEWNS;
  if (!own_mounts && ::unshare(CLONE_NEWNS) == 0) {
    own_mounts = true;
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0 ||
        ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      std::fprintf(stderr, "thaw: note: restore: no /proc of the new pid namespace (%s); the host's stays\n",
                   std::strerror(errno));
  }
  // Never over the host's own /dev/shm: in a namespace of its own, and
  // one whose mounts do not reach back (a remount as slave that failed
  // above, or a caller's namespace not made private yet, would let the
  // tmpfs propagate to the host's).
  if (o.private_shm && !own_mounts) child_fail(status_fd, "--private-shm: no mount namespace of its own here");
  if (o.private_shm && ::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    child_fail(status_fd, cat("--private-shm: make its mounts reach no other namespace: ", std::strerror(errno)));
  if (o.private_shm && ::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
    child_fail(status_fd, cat("mount a /dev/shm of its own (--private-shm): ", std::strerror(errno)));
  if (o.in_namespace) {
    try {
      o.in_namespace();
    } catch (const std::exception& e) {
      child_fail(status_fd, cat("set up the namespace: ", e.what()));
    }
  }
  int sv[2] = {-1, -1};
  if (lazy && ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    child_fail(status_fd, cat("socketpair: ", std::strerror(errno)));
  pid_t child = clone_with_pid(restore_pid(r.m));
  if (child < 0) child_fail(status_fd, cat("clone3 with pid ", restore_pid(r.m), ": ", std::strerror(errno)));
  if (child == 0) {
    ::close(watch);
    ::close(exit_fd);
    if (lazy) ::close(sv[0]);
    become_restored(r, pages_fd, status_fd, sv[1]);
  }
  ::close(pages_fd);
  // The process has its copies of the caller's stdio; init holding them too
  // would keep `pid=$(thaw restore --detach …)` waiting for EOF for as long
  // as the process lives.
  if (int null = ::open("/dev/null", O_RDWR | O_CLOEXEC); null >= 0) {
    for (int fd = 0; fd <= 2; fd++)
      if (fd != null) ::dup2(null, fd);
    if (null > 2) ::close(null);
  }
  int uffd = -1;
  if (lazy) {
    ::close(sv[1]);
    uffd = recv_fd(sv[0]);
    ::close(sv[0]);
    // Tell thaw which of our fds it is, so it can take its own copy.
    std::string line = uffd >= 0 ? cat("U ", uffd, "\n") : std::string("N\n");
    ssize_t ignored = ::write(status_fd, line.data(), line.size());
    (void)ignored;
  }
  ::close(status_fd);
  // Nor the status pipes of a tree's other processes (the root took them
  // along): thaw must see each close with its process.
  for (size_t j = 1; j < r.status_fds.size(); j++)
    if (r.status_fds[j] >= 0) ::close(r.status_fds[j]);
  // Nor any other fd the caller let thaw inherit (the process has its own
  // copies of those it was given): a caller waiting for EOF on one would
  // wait as long as the process lives.
  std::vector<int> keep = {0, 1, 2, watch, exit_fd};
  if (uffd >= 0) keep.push_back(uffd);
  try {
    close_all_except(keep);
  } catch (const std::exception&) {
    // no /proc/self/fd: they stay open, which loses nothing but the EOF
  }
  static pid_t forward_to;
  forward_to = child;
  struct sigaction sa{};
  sa.sa_handler = [](int sig) { ::kill(forward_to, sig); };
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) ::sigaction(sig, &sa, nullptr);
  int status = 0;
  bool child_done = false;
  watch_thaw(watch, uffd, child, &status, &child_done);
  while (!child_done) {
    pid_t w = ::waitpid(-1, &status, __WALL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) ::_exit(kRestoreFailed);
    child_done = w == child && (WIFEXITED(status) || WIFSIGNALED(status));
  }
  ssize_t ignored = ::write(exit_fd, &status, sizeof status);
  (void)ignored;
  ::close(exit_fd);
  // From now on a termination signal goes to every process left.
  forward_to = -1;
  for (;;) {
    pid_t w = ::waitpid(-1, nullptr, __WALL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) break;  // ECHILD: nobody is left
  }
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

pid_t ns_tid_of(pid_t host_tid) { return innermost_id(proc::read_status(cat("/proc/", host_tid))["NSpid"]); }

// A syscall instruction inside the restorer blob, mapped at region_start:
// it serves to run munmap on the blob from outside.
uint64_t blob_gadget(uint64_t region_start) {
  for (const char* p = thaw_restorer_blob; p + 1 < thaw_restorer_blob_end; p++)
    if (p[0] == '\x0f' && p[1] == '\x05') return region_start + (p - thaw_restorer_blob);
  return 0;
}

// Final step, from outside: load each parked thread's registers, unmap the
// restorer region from inside the process, bring back GPU state (the
// image's, if any, through `gpu`), release every thread.
void finish(pid_t host_pid, const image::Manifest& m, uint64_t region_start, uint64_t region_len, GpuRestore* gpu) {
  proc::Seizure s(host_pid);
  // Until every register is loaded a thread must never run again (it would
  // resume inside the restorer, which is gone): a failure kills them held.
  s.kill_on_release();
  s.set_gadget(blob_gadget(region_start));
  if (s.threads().size() != m.threads.size())
    fail("restored process has ", s.threads().size(), " threads, image has ", m.threads.size());
  proc::Tracee* leader = nullptr;
  std::vector<std::pair<pid_t, const image::Thread*>> held;
  // By tid, once: looking each up anew cost a 1 500-thread restore 1.3 s.
  std::map<pid_t, const image::Thread*> by_tid;
  for (const auto& th : m.threads) by_tid[restore_tid(m, th)] = &th;
  for (auto& t : s.threads()) {
    pid_t ns_tid = ns_tid_of(t.tid);
    auto found = by_tid.find(ns_tid);
    if (found == by_tid.end()) fail("restored thread ", ns_tid, " is not in the image");
    const image::Thread* it = found->second;
    if (ns_tid == restore_pid(m)) {
      leader = &t;
      long rc = s.syscall(t, SYS_munmap, region_start, region_len);
      if (rc != 0) fail("unmap the restorer: ", std::strerror(int(-rc)));
    }
    load_thread_registers(t.tid, *it);
    held.emplace_back(t.tid, it);
  }
  if (!leader) fail("restored process has no main thread");
  restore_scheduling(host_pid, held, m);
  if (gpu) gpu->resume(s);
  // A process stopped by job control at checkpoint stops again before it
  // runs a single instruction: the signal is taken on the way out of ptrace.
  if (m.process.stopped && ::kill(host_pid, SIGSTOP) != 0) fail_errno("stop the restored process (it was stopped)");
  s.detach_as_is();
}

// Every process below `host` (ours), by its pid in its own namespace.
std::map<pid_t, pid_t> pids_below(pid_t host) {
  std::map<pid_t, pid_t> out;
  std::vector<pid_t> todo{host};
  while (!todo.empty()) {
    pid_t h = todo.back();
    todo.pop_back();
    out[ns_tid_of(h)] = h;
    for (pid_t kid : proc::list_children(h)) todo.push_back(kid);
  }
  return out;
}

pid_t child_of(pid_t init) {
  std::string kids;
  if (!try_read_file(cat("/proc/", init, "/task/", init, "/children"), &kids)) return 0;
  return std::atoi(trim(kids).c_str());
}

}  // namespace

int RestoreContext::park_fd(int fd) {
  if (fd < 0) fail_errno("open");
  if (fd >= spare_fd_base) return fd;
  int nfd = ::fcntl(fd, F_DUPFD_CLOEXEC, spare_fd_base);
  if (nfd < 0) fail_errno("move fd ", fd, " out of the way");
  ::close(fd);
  return nfd;
}

namespace {

// What the restore's status pipe said: "U <fd>" / "N" from init (whether
// memory is left to the pager), "M <dev> <ino> <path>" for each file the
// process made (a unix socket's, bound to a path; a file of /dev/shm made
// again: into `made`, also when the restore then fails), "C" once a
// process that failed removed those itself (out of `made` again), then
// "R ..." from the restorer or "E <why>".
struct Status {
  std::string ready;   // the restorer's "R ..." line
  int init_uffd = -1;  // init's fd number of the userfaultfd
  bool lazy_known = false;
};

Status read_status(int fd, bool want_lazy, const image::Manifest& m, std::vector<MadePath>* made) {
  Status st;
  st.lazy_known = !want_lazy;
  size_t first_made = made ? made->size() : 0;  // this pipe's are the ones from here
  std::string buf;
  char tmp[4096];
  for (;;) {
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.rfind("E", 0) == 0) {
        // The process ran under the image's RLIMIT_AS, capped by our hard
        // one (restore_process_early cannot raise past it).
        struct rlimit own;
        uint64_t as_limit = ::getrlimit(RLIMIT_AS, &own) == 0 ? own.rlim_max : RLIM_INFINITY;
        for (const auto& rl : m.process.rlimits)
          if (rl.resource == RLIMIT_AS) as_limit = std::min<uint64_t>(as_limit, rl.cur);
        if (as_limit == RLIM_INFINITY) as_limit = UINT64_MAX;
        std::string maps;
        uint64_t max_maps = try_read_file("/proc/sys/vm/max_map_count", &maps) ? std::strtoull(maps.c_str(), nullptr, 10) : 0;
        fail(explain_restorer_error(trim(line.substr(1)), as_limit, max_maps));
      }
      MadePath path;
      if (line.rfind("M ", 0) == 0 && parse_made_path(line, &path)) {
        if (made) made->push_back(path);
      } else if (line == "C") {
        if (made) made->resize(first_made);
      } else if (line.rfind("U ", 0) == 0) {
        st.init_uffd = std::atoi(line.c_str() + 2);
        st.lazy_known = true;
      } else if (line == "N") {
        st.lazy_known = true;
      } else if (line.rfind("R", 0) == 0) {
        st.ready = line;
      } else {
        fail("restorer sent a malformed message: ", line);
      }
    }
    if (!st.ready.empty() && st.lazy_known) {
      // The restorer closes the pipe right after its "R" line. Stopping its
      // thread before that close would leave the process an fd it never
      // had (the pipe's write end, above its highest fd): wait for EOF,
      // which comes once every write end is closed (init's is already).
      for (;;) {
        ssize_t n = ::read(fd, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_errno("read the restore's status pipe");
        if (n == 0) return st;
        fail("restorer sent more than its ready line: ", std::string(tmp, n));
      }
    }
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("the new process died before it was restored");
    buf.append(tmp, n);
  }
}

// The "M" lines still in a status pipe, not read because the restore
// failed first (a tree's process not heard from yet): what it made, to be
// removed with it. Only what is there now: nothing waits for more.
void drain_made(int fd, std::vector<MadePath>& made) {
  std::string buf;
  char tmp[4096];
  pollfd pf{fd, POLLIN, 0};
  while (fd >= 0 && ::poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN)) {
    ssize_t n = ::read(fd, tmp, sizeof tmp);
    if (n <= 0) break;
    buf.append(tmp, n);
  }
  std::vector<MadePath> mine;
  for (const auto& line : split(buf, '\n')) {
    MadePath p;
    if (parse_made_path(line, &p)) mine.push_back(p);
    if (line == "C") mine.clear();  // removed by the process itself
  }
  made.insert(made.end(), mine.begin(), mine.end());
}

UniqueFd take_fd(pid_t pid, int fd) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) fail_errno("pidfd_open ", pid);
  UniqueFd mine(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!mine) fail_errno("take the userfaultfd from the restored process's init");
  return mine;
}

// Tells init (watch_thaw) that thaw is done with the process. Init may
// have gone already, the process having ended meanwhile: no SIGPIPE.
void tell_done(int watch) {
  ssize_t ignored = ::send(watch, "D", 1, MSG_NOSIGNAL);
  (void)ignored;
}

// Runs the pager to the end; tells init it may let go ('D') only if every
// page was given. If not, init kills the process; a detached pager first
// says why on the process's own stderr, the one place its user looks
// (nobody waits for thaw's).
// Then, with a working set to keep, adds the blocks this restore faulted
// on to the image's (after 'D': the process does not wait for it).
PagerStats run_pager(Pager& pager, UniqueFd& watch, const UniqueFd& exit_pidfd, const RestoreOptions& o,
                     const image::Reader& img) {
  PagerStats st = pager.run(exit_pidfd.get(), o.lazy_background);
  if (st.ok) {
    tell_done(watch.get());
  } else if (o.detach) {
    // Taken while the process lives; written once init killed it (the
    // watch closed), and never blocking on a full pipe.
    UniqueFd err(static_cast<int>(::syscall(SYS_pidfd_getfd, exit_pidfd.get(), 2, 0)));
    watch.reset();
    std::string msg = cat("thaw: restore of ", img.dir(), ": ", kPagerFailed, "\n");
    pollfd pf{err.get(), POLLOUT, 0};
    if (err && ::poll(&pf, 1, 100) == 1 && (pf.revents & POLLOUT)) {
      ssize_t ignored = ::write(err.get(), msg.data(), msg.size());
      (void)ignored;
    }
  }
  watch.reset();
  if (st.ok && o.working_set && pager.working_set_grew())
    image::store_working_set(img.dir(), img.memory_id(), pager.working_set());
  return st;
}

}  // namespace

HeldProcess restore_held(const image::Reader& img, const image::Manifest& m, const std::map<int, int>& inherit) {
  return with_context("restore a held copy", [&] {
    check_cpu_compatible(m);
    check_mapping_count(m);
    check_files(m, inherit);
    if (m.threads.size() != 1) fail("the image has ", m.threads.size(), " threads; a held copy takes one");
    if (!m.children.empty())
      fail("the image holds ", m.children.size() + 1, " processes (a process tree); a held copy takes one");
    int sp[2];
    if (::pipe2(sp, O_CLOEXEC) != 0) fail_errno("pipe");
    UniqueFd status_r(sp[0]), status_w(sp[1]);
    RestoreContext ctx{m, img, inherit};  // no lazy mappings: every page now
    ctx.held = true;
    pid_t pid = ::fork();
    if (pid < 0) fail_errno("fork");
    if (pid == 0) {
      status_r.reset();
      // Until it is seized (PTRACE_O_EXITKILL from then on), our death
      // must take it along: it would run the image's code on its own.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      become_restored(ctx, ::fcntl(img.pages_fd(), F_DUPFD_CLOEXEC, 0), status_w.release(), -1);
    }
    status_w.reset();
    bool seized = false;  // from then on the seizure kills and reaps it
    try {
      Status st = read_status(status_r.get(), false, m, nullptr);
      unsigned long long rs = 0, re = 0;
      long long mem_ns = 0, rest_ns = 0;
      if (std::sscanf(st.ready.c_str(), "R %llx %llx %lld %lld", &rs, &re, &mem_ns, &rest_ns) != 4 || re <= rs)
        fail("restorer sent a malformed message: ", trim(st.ready));
      auto s = std::make_unique<proc::Seizure>(pid);
      s->kill_on_release();
      seized = true;
      s->set_gadget(blob_gadget(rs));
      if (s->threads().size() != 1) fail("the held copy has ", s->threads().size(), " threads, not 1");
      proc::Tracee& t = s->leader();
      long rc = s->syscall(t, SYS_munmap, rs, re - rs);
      if (rc != 0) fail("unmap the restorer: ", std::strerror(int(-rc)));
      load_thread_registers(pid, m.threads[0]);
      // These are the registers every copy starts from; injected calls
      // start from them too (with the blob gone, at a syscall instruction
      // of the image's own code).
      if (::ptrace(PTRACE_GETREGS, pid, nullptr, &t.regs) != 0) fail_errno("read back the registers");
      t.regs_dirty = false;
      s->set_gadget(proc::find_syscall_gadget(pid));
      return HeldProcess{pid, std::move(s)};
    } catch (...) {
      if (!seized) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, __WALL);
      }
      throw;
    }
  });
}

RestoreResult restore(const RestoreOptions& o) {
  return with_context("restore", [&] {
    auto t0 = std::chrono::steady_clock::now();
    std::optional<image::Reader> own;
    if (!o.preloaded) own.emplace(o.dir);
    const image::Reader& img = o.preloaded ? *o.preloaded : *own;
    const auto& m = img.manifest();
    std::map<int, int> inherit = o.inherit;
    for (const auto& e : m.fds) {
      int fd = e["fd"];
      const auto* f = &m.files.at(e["file"].get<size_t>());
      if ((*f)["kind"] == "pooled") f = &m.pool.at((*f)["pool"].get<size_t>());  // shared with its children
      if (fd <= 2 && !inherit.count(fd) && (*f)["kind"] == "external") inherit[fd] = fd;
    }
    check_cpu_compatible(m);
    check_mapping_count(m);
    for (const auto& kid : m.children) check_mapping_count(kid);
    check_files(m, inherit);

    int sp[2];
    if (::pipe2(sp, O_CLOEXEC) != 0) fail_errno("pipe");
    UniqueFd status_r(sp[0]), status_w(sp[1]);
    RestoreContext ctx{m, img, inherit};
    // A process tree: each of its processes reports on a status pipe of its own.
    std::vector<UniqueFd> kid_status_r, kid_status_w;
    if (!m.children.empty()) {
      ctx.tree.push_back(&m);
      ctx.status_fds.push_back(status_w.get());
      for (const auto& kid : m.children) {
        if (::pipe2(sp, O_CLOEXEC) != 0) fail_errno("pipe");
        kid_status_r.emplace_back(sp[0]);
        kid_status_w.emplace_back(sp[1]);
        ctx.tree.push_back(&kid);
        ctx.status_fds.push_back(sp[1]);
      }
    }
    // The driver's restore thread reads its host copy of device memory
    // while the application's threads are still held: a process with GPU
    // state gets all its memory first, unless asked to have the pager serve
    // that thread too (started before the driver then, not after).
    bool with_gpu = !m.gpu.uuid.empty();
    // In a tree, the root's only: the others are made by their parents,
    // where no pager is, and get all their memory first.
    if (o.lazy && (!with_gpu || o.gpu_lazy)) ctx.lazy = choose_lazy(m);
    // What the root's children share with it comes in before they are made.
    ctx.stage = staged_mappings(ctx.tree);
    for (size_t i = 0; i < ctx.stage.size() && i < ctx.lazy.size(); i++)
      if (ctx.stage[i]) ctx.lazy[i] = false;
    // Each process holds the staging area (a slot and a gap per mapping)
    // beside its own mappings until its restorer has moved them.
    if (size_t staged = std::count(ctx.stage.begin(), ctx.stage.end(), true)) {
      check_mapping_count(m, 2 * staged);
      for (const auto& kid : m.children) check_mapping_count(kid, 2 * staged);
    }
    bool want_lazy = std::find(ctx.lazy.begin(), ctx.lazy.end(), true) != ctx.lazy.end();
    // A socket, not a pipe: init may be gone (the process ended before the
    // pager did) when 'D' is sent, which must not kill thaw with SIGPIPE.
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) fail_errno("socketpair");
    UniqueFd watch_r(sp[0]), watch_w(sp[1]);  // init's watch_thaw
    if (::pipe2(sp, O_CLOEXEC) != 0) fail_errno("pipe");
    UniqueFd exit_r(sp[0]), exit_w(sp[1]);  // the process's wait status, from init

    // Opened before anything starts: a path that cannot be written is an
    // error, not a pid silently missing.
    UniqueFd pidfile;
    if (!o.pidfile.empty()) {
      pidfile.reset(::open(o.pidfile.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!pidfile) fail_errno("--pidfile ", o.pidfile);
    }

    double load_ms = ms_since(t0);
    auto t_forked = std::chrono::steady_clock::now();
    // unshare() makes our next child pid 1 of a new namespace; setns() back
    // afterwards, because while the two differ the kernel refuses to create
    // threads (the pager is one) and later children would land in there too.
    UniqueFd own_ns(::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC));
    if (!own_ns) fail_errno("open /proc/self/ns/pid");
    if (::unshare(CLONE_NEWPID) != 0) fail_errno("create a pid namespace");
    pid_t init = ::fork();
    if (init > 0 && ::setns(own_ns.get(), CLONE_NEWPID) != 0) {
      ::kill(init, SIGKILL);
      ::waitpid(init, nullptr, 0);
      fail_errno("return to our own pid namespace");
    }
    if (init < 0) fail_errno("fork");
    if (init == 0) {
      status_r.reset();
      watch_w.reset();
      exit_r.reset();
      run_init(ctx, o, ::fcntl(img.pages_fd(), F_DUPFD_CLOEXEC, 0), status_w.release(), watch_r.release(),
               exit_w.release(),
               want_lazy);
    }
    std::optional<GpuRestore> gpu;
    status_w.reset();
    exit_w.reset();
    kid_status_w.clear();
    watch_r.reset();
    RestoreResult res;
    res.init_pid = init;
    res.load_ms = load_ms;
    std::optional<Pager> pager;
    std::thread pager_thread;  // its run ends once the process is gone
    bool pager_started = false;
    std::vector<MadePath> made;  // files the processes made (made_paths.cpp)
    auto reap_failed = [&](const std::string& why) -> RestoreResult {
      // The files go with the processes: those reported but not read yet
      // too. Removed through init's root, so before init is killed.
      drain_made(status_r.get(), made);
      for (const auto& fd : kid_status_r) drain_made(fd.get(), made);
      remove_made_paths(init, made);
      ::kill(init, SIGKILL);
      ::waitpid(init, nullptr, 0);
      if (pager_thread.joinable()) pager_thread.join();
      fail(why);
    };
    Status st;
    try {
      // After the fork (the child must not inherit a CUDA context or the
      // driver's fds) and back in our own pid namespace (threads).
      if (!m.gpu.uuid.empty()) gpu.emplace(m);
      st = read_status(status_r.get(), want_lazy, m, &made);
      if (o.stop_on_interrupt) throw_if_interrupted("the half-restored process was stopped");
    } catch (const std::exception& e) {
      return reap_failed(e.what());
    }
    pid_t host = child_of(init);
    if (host <= 0) return reap_failed("restored process vanished");
    res.host_pid = host;
    unsigned long long rs = 0, re = 0;
    long long mem_ns = 0, rest_ns = 0;
    if (std::sscanf(st.ready.c_str(), "R %llx %llx %lld %lld", &rs, &re, &mem_ns, &rest_ns) != 4 || re <= rs)
      return reap_failed("restorer sent a malformed message: " + trim(st.ready));
    // The rest of a tree, once each of its processes is ready: where its
    // restorer region is, and its pid here.
    std::vector<std::pair<pid_t, std::pair<uint64_t, uint64_t>>> kids_ready;
    try {
      for (size_t j = 0; j < m.children.size(); j++) {
        const image::Manifest& km = m.children[j];
        std::string what = cat("child process ", restore_pid(km), " (", km.process.comm, ")");
        Status ks = with_context(what, [&] { return read_status(kid_status_r[j].get(), false, km, &made); });
        unsigned long long ks_start = 0, ks_end = 0;
        long long a = 0, b = 0;
        if (std::sscanf(ks.ready.c_str(), "R %llx %llx %lld %lld", &ks_start, &ks_end, &a, &b) != 4 || ks_end <= ks_start)
          fail(what, ": restorer sent a malformed message: ", trim(ks.ready));
        kids_ready.push_back({0, {ks_start, ks_end}});
      }
      // Only once every process is ready are they all made (a grandchild
      // is made by its parent while an earlier child may be ready).
      std::map<pid_t, pid_t> host_of = m.children.empty() ? std::map<pid_t, pid_t>() : pids_below(host);
      for (size_t j = 0; j < m.children.size(); j++) {
        auto it = host_of.find(restore_pid(m.children[j]));
        if (it == host_of.end()) fail("child process ", restore_pid(m.children[j]), " vanished");
        kids_ready[j].first = it->second;
      }
    } catch (const std::exception& e) {
      return reap_failed(e.what());
    }
    res.memory_ms = mem_ns / 1e6;
    res.threads_ms = rest_ns / 1e6;
    res.setup_ms = ms_since(t_forked) - res.memory_ms - res.threads_ms;
    auto t_finish = std::chrono::steady_clock::now();
    UniqueFd host_pidfd;
    // From the moment it runs, whoever holds the pager must stay until
    // every page is in: a thread of ours, or with `detach` a daemon.
    auto start_pager = [&] {
      if (!pager || pager_started) return;
      pager_started = true;
      if (!o.detach) {
        pager_thread = std::thread([&] { res.pager = run_pager(*pager, watch_w, host_pidfd, o, img); });
        return;
      }
      // Double fork, so nobody has to reap it.
      pid_t mid = ::fork();
      if (mid == 0) {
        if (::fork() == 0) {
          ::setsid();
          // Hold nothing of the caller's: someone may wait for EOF on them.
          std::vector<int> keep = pager->fds();
          keep.push_back(watch_w.get());
          keep.push_back(host_pidfd.get());
          close_all_except(keep);
          int null = ::open("/dev/null", O_RDWR);
          for (int fd = 0; fd <= 2; fd++)
            if (null != fd) ::dup2(null, fd);
          run_pager(*pager, watch_w, host_pidfd, o, img);
          ::_exit(0);
        }
        ::_exit(0);
      }
      if (mid > 0) ::waitpid(mid, nullptr, 0);
      // Without the fork, init sees the watch close and stops the process.
      pager.reset();
      watch_w.reset();
    };
    try {
      if (st.init_uffd >= 0) {
        host_pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, host, 0)));
        if (!host_pidfd) fail_errno("pidfd_open ", host);
        // Faults only (tests, diagnosis): nothing is copied unasked.
        std::vector<uint64_t> hot;
        if (o.lazy_background && o.working_set)
          hot = image::load_working_set(img.dir(), img.memory_id(), m.pages_bytes);
        pager.emplace(m, ctx.lazy, img.pages_fd(), take_fd(init, st.init_uffd), hot);
        pager->arm();
        res.lazy_bytes = pager->lazy_bytes();
      }
      if (gpu && pager) {
        // The daemon is forked with no other thread of ours running (one
        // is loading the driver): wait for it, as resume() would.
        if (o.detach) gpu->wait_prepared();
        start_pager();
      }
      if (o.stop_on_interrupt) throw_if_interrupted("the half-restored process was stopped");
      // Children first: a parent let go first could wait for one still held.
      for (size_t j = kids_ready.size(); j-- > 0;) {
        auto [kid_host, region] = kids_ready[j];
        with_context(cat("child process ", restore_pid(m.children[j])), [&] {
          finish(kid_host, m.children[j], region.first, region.second - region.first, nullptr);
        });
      }
      finish(host, m, rs, re - rs, gpu ? &*gpu : nullptr);
      if (gpu) {
        res.gpu_ms = gpu->total_ms();
        res.gpu_detail = gpu->detail();
      }
    } catch (const std::exception& e) {
      return reap_failed(e.what());
    }
    res.finish_ms = ms_since(t_finish);
    res.ready_ms = ms_since(t0);

    // From here the process runs.
    start_pager();
    if (!pager_started) {  // no pager: thaw is done with it
      tell_done(watch_w.get());
      watch_w.reset();
    }
    if (pidfile) {
      std::string s = cat(host, "\n");
      write_all(pidfile.get(), s.data(), s.size(), o.pidfile);
    }
    if (o.on_running) o.on_running(res);
    if (o.detach) return res;
    // The process's own status, which init sends as soon as it ends: init
    // may stay on for processes the process left running (run_init). If
    // init is gone without sending it (killed), its own status says why.
    int status = 0;
    ssize_t got;
    while ((got = ::read(exit_r.get(), &status, sizeof status)) < 0 && errno == EINTR) {
    }
    if (got == sizeof status) {
      // Reaped here if nothing was left; else it goes on without us.
      for (int i = 0; i < 20 && ::waitpid(init, nullptr, WNOHANG) == 0; i++) ::usleep(10000);
    } else {
      while (::waitpid(init, &status, 0) < 0 && errno == EINTR) {
      }
    }
    if (pager_thread.joinable()) pager_thread.join();
    res.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return res;
  });
}

pid_t clone_with_pid(pid_t pid) {
  int64_t tid = pid;
  clone_args ca{};
  ca.exit_signal = SIGCHLD;
  ca.set_tid = reinterpret_cast<uint64_t>(&tid);
  ca.set_tid_size = 1;
  return static_cast<pid_t>(::syscall(SYS_clone3, &ca, sizeof ca));
}

}  // namespace thaw::engine
