#include "engine/template.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/io.h"
#include "common/packet.h"
#include "common/timing.h"
#include "engine/resources/file_kinds.h"
#include "engine/resources/resources.h"
#include "image/image.h"

namespace thaw::engine {

namespace {

constexpr long kOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                          PTRACE_O_EXITKILL;

std::string errstr(long rc) { return std::strerror(static_cast<int>(-rc)); }

// Our waits for a helper, copy or thread a clone made in the template.
void wait_setup_stop(pid_t pid) {
  if (!proc::wait_first_stop(pid)) fail("process ", pid, " died before it could be set up");
}

// clone3's arguments and the one pid of set_tid, written as one block.
struct CloneBlock {
  clone_args ca;
  int64_t tid;
};

// Devices every copy may share one open of: no position, no per-open state.
bool external(const image::Manifest& m, const nlohmann::json& fd_entry) {
  return m.files.at(fd_entry["file"].get<size_t>())["kind"] == "external";
}

}  // namespace

std::string Template::ineligible(const image::Manifest& m) {
  if (!m.gpu.uuid.empty()) return "it holds GPU state";
  if (!m.children.empty()) return cat("it is a process tree (", m.children.size() + 1, " processes)");
  // An object only fds reach (a memfd, a deleted file) is made anew for
  // each copy with its files; a mapped one would be one for all copies.
  // (A private mapping of a deleted file, a library removed since it was
  // loaded say, is one too: not "shared memory" to whoever reads why.)
  for (const auto& v : m.vmas)
    if (v.kind == "shmem")
      return v.shared ? cat("it has shared memory mapped at 0x", std::hex, v.start, std::dec,
                            " (every copy would share one object)")
                      : cat("it maps a deleted file (or a memfd) privately at 0x", std::hex, v.start, std::dec, " (",
                            v.name, "; every copy would share one object under its own pages)");
  // A file of /dev/shm mapped shared: a fork shares the mapping, so every
  // copy would share the template's object (a named semaphore or shared
  // memory), where restores each make their own in their own /dev/shm.
  for (const auto& v : m.vmas)
    if (v.kind == "file" && v.shared && v.file >= 0 && size_t(v.file) < m.mapped_files.size() &&
        m.mapped_files[v.file].kept >= 0)
      return cat("it maps ", m.mapped_files[v.file].path, " shared at 0x", std::hex, v.start, std::dec,
                 " (a named semaphore or shared memory: every copy would share one object)");
  // Mapped privately (a library compiled into the temporary directory):
  // the template, held outside any container, has no such file to map;
  // each copy makes its own in its own /dev/shm.
  for (const auto& v : m.vmas)
    if (v.kind == "file" && v.file >= 0 && size_t(v.file) < m.mapped_files.size() &&
        m.mapped_files[v.file].kept >= 0)
      return cat("it maps ", m.mapped_files[v.file].path, " at 0x", std::hex, v.start, std::dec,
                 ", a file of its /dev/shm, which the template has not: each copy makes its own");
  for (const auto& v : m.vmas)
    if ((v.madv & (image::kMadvDontFork | image::kMadvWipeOnFork)) && (v.kind != "anon" || v.shared))
      return cat("a mapping at 0x", std::hex, v.start, std::dec, " is MADV_DONTFORK or MADV_WIPEONFORK and not "
                 "private anonymous memory");
  if (!m.process.itimers.empty() || !m.process.posix_timers.empty()) return "it has timers (a fork drops them)";
  if (!m.process.shared_pending.empty()) return "it has pending signals";
  for (const auto& t : m.threads)
    if (!t.pending.empty()) return cat("thread ", t.tid, " has pending signals");
  if (std::none_of(m.threads.begin(), m.threads.end(),
                   [&](const image::Thread& t) { return restore_tid(m, t) == restore_pid(m); }))
    return "its main thread is gone";
  if (m.process.stopped) return "it was stopped";
  if (!m.process.zombies.empty()) return "it has children that had exited (a fork of it would not have them)";
  if (restore_pid(m) <= 1) return "it was pid 1 of its namespace";
  for (uint32_t uid : m.process.creds.uids)
    if (uid != 0) return cat("it runs as uid ", uid, " (a template makes namespaces for its copies: root only)");
  for (const auto& e : m.fds) {
    const auto& f = m.files.at(e["file"].get<size_t>());
    if (f["kind"] == "file" && S_ISFIFO(f.value("mode", 0u)))
      return cat("fd ", e["fd"].get<int>(), " (", f.value("path", std::string("a FIFO")),
                 ") is a named FIFO: one object by path, which every copy would share");
    if (f["kind"] == "pidfd")
      return cat("fd ", e["fd"].get<int>(), " is a pidfd (of process ", f["pid"].get<int>(),
                 "): a copy's would name the template's process, not the copy");
    if (f["kind"] == "unix" && f.contains("bound") && f["bound"].contains("path"))
      return cat("fd ", e["fd"].get<int>(), " (unix socket bound to ", f["bound"]["path"].get<std::string>(),
                 ") is bound to a path, which the template would hold: every copy would want it, and none could "
                 "bind it");
    if (f["kind"] == "tcp_listen" || (f["kind"] == "unix" && f.contains("bound")) ||
        (f["kind"] == "udp" && udp_port_of_its_own(f)))
      return cat("fd ", e["fd"].get<int>(), " (", f.value("desc", f.value("name", std::string("a socket"))),
                 ") is bound to an address, which the template holds: a copy could not bind it");
  }
  return "";
}

void Template::check_inherited(const image::Manifest& m, const std::map<int, int>& inherit) {
  auto given = with_shared_inherits(m, inherit);
  for (const auto& e : m.fds)
    if (external(m, e) && !given.count(e["fd"].get<int>()))
      fail("the image inherited fd ", e["fd"].get<int>(), " (",
           m.files.at(e["file"].get<size_t>()).value("desc", std::string("?")), "); pass one with --inherit-fd ",
           e["fd"].get<int>(), "=N");
}

void Template::send_copy_files(const image::Reader& img, const std::map<int, int>& inherit,
                               const std::vector<int*>& keep, int sock) {
  const auto& m = img.manifest();
  if (std::all_of(m.fds.begin(), m.fds.end(), [&](const nlohmann::json& e) { return external(m, e); })) {
    // Nothing to open (a worker with only its stdio): spare the fd table
    // work. Ours still leave 0-2, which the caller covers with /dev/null
    // (a server started with its stdio closed could have them there).
    std::vector<int> kept{sock};
    for (int* fd : keep) {
      if (*fd <= 2) {
        int moved = ::fcntl(*fd, F_DUPFD_CLOEXEC, 3);
        if (moved < 0) fail_errno("move fd ", *fd, " above the standard ones");
        ::close(*fd);
        *fd = moved;
      }
      kept.push_back(*fd);
    }
    close_all_except(kept);
    send_packet(sock, nlohmann::json{{"done", true}}.dump(), nullptr, 0, "the template's owner");
    ::close(sock);
    return;
  }
  RestoreContext r{m, img, inherit};
  r.pages_fd = ::fcntl(img.pages_fd(), F_DUPFD_CLOEXEC, 0);
  if (r.pages_fd < 0) fail_errno("copy the page data's fd");
  std::vector<int*> ours = keep;
  ours.push_back(&sock);
  ours.push_back(&r.pages_fd);
  auto fillers = prepare_fd_table(r, ours);
  restore_shmem_objects(r);  // the memfds and deleted files the fds reopen
  restore_files(r);
  finish_fd_table(r, fillers);
  for (int fd : r.shmem_fds)
    if (fd >= 0) ::close(fd);
  ::close(r.pages_fd);
  std::vector<int> own;
  for (const auto& e : m.fds)
    if (!external(m, e)) own.push_back(e["fd"].get<int>());
  for (size_t i = 0; i < own.size(); i += kMaxPacketFds) {
    std::vector<int> batch(own.begin() + i, own.begin() + std::min(own.size(), i + kMaxPacketFds));
    send_packet(sock, nlohmann::json{{"fds", batch}}.dump(), batch.data(), static_cast<int>(batch.size()),
                "the template's owner");
  }
  send_packet(sock, nlohmann::json{{"done", true}}.dump(), nullptr, 0, "the template's owner");
  // The copy holds them now; an end of a pipe left here would keep it open.
  for (const auto& e : m.fds) ::close(e["fd"].get<int>());
  ::close(sock);
}

std::map<int, UniqueFd> Template::receive_copy_files(int sock, int timeout_ms) {
  std::map<int, UniqueFd> out;
  for (;;) {
    std::vector<UniqueFd> fds;
    auto msg = recv_packet(sock, timeout_ms, &fds, "the copy's namespace init");
    if (!msg) fail("the copy's namespace init ended before it sent the copy's files");
    auto j = nlohmann::json::parse(*msg);
    if (j.contains("done")) return out;
    auto numbers = j.at("fds").get<std::vector<int>>();
    if (numbers.size() != fds.size())
      fail("the copy's files came truncated (", fds.size(), " fds for ", numbers.size(), ")");
    for (size_t i = 0; i < numbers.size(); i++) out[numbers[i]] = std::move(fds[i]);
  }
}

int Template::run_as_init(const image::Manifest& m, pid_t copy, int ready, int go) {
  try {
    check_mapped_files(m);
  } catch (const std::exception& e) {
    write_line(ready, cat("E ", e.what()));
    ::close(ready);
    return -1;
  }
  write_line(ready, "OK");
  ::close(ready);
  char c = 0;
  while (::read(go, &c, 1) < 0 && errno == EINTR) {
  }
  if (c != 'G') return -1;
  static pid_t forward_to;  // for the handler; one copy per init process
  forward_to = copy;
  struct sigaction sa{};
  sa.sa_handler = [](int sig) { ::kill(forward_to, sig); };
  sigset_t forwarded;
  sigemptyset(&forwarded);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) {
    ::sigaction(sig, &sa, nullptr);
    sigaddset(&forwarded, sig);
  }
  // Our creator may hold them blocked (thaw template waits for them on a
  // signalfd): blocked, they would never be forwarded.
  ::sigprocmask(SIG_UNBLOCK, &forwarded, nullptr);
  for (;;) {
    int status;
    pid_t w = ::waitpid(-1, &status, __WALL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return 128 + SIGKILL;  // cannot happen while the copy is our child
    if (w == copy && (WIFEXITED(status) || WIFSIGNALED(status)))
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
}

std::unique_ptr<Template> Template::create(const image::Reader& img) {
  return with_context("make a template of " + img.dir(), [&] {
    const auto& m = img.manifest();
    if (std::string why = ineligible(m); !why.empty()) fail("the image cannot serve as one: ", why);
    std::unique_ptr<Template> t(new Template());
    t->m_ = &m;
    // Its inherited fds are placeholders: each copy gets its own. A socket,
    // not /dev/null, so that an epoll of the image can watch one.
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) fail_errno("socketpair");
    UniqueFd placeholder(pair[0]), other_end(pair[1]);
    std::map<int, int> inherit;
    for (const auto& e : m.fds)
      if (external(m, e)) inherit[e["fd"].get<int>()] = placeholder.get();
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) fail_errno("socketpair");
    t->carrier_send_.reset(sv[0]);
    t->carrier_recv_.reset(sv[1]);
    // The template is the main thread only: a fork copies no other. Each
    // copy gets the image's other threads made anew (add_threads).
    for (const auto& th : m.threads)
      if (restore_tid(m, th) == restore_pid(m)) t->main_ = th;
    image::Manifest single = m;
    single.threads = {t->main_};
    // Each copy takes the image's locks on files of its own (its namespace
    // init opens them) and, as a process, its POSIX locks. The template
    // holds the read locks as the original did, as one more reader: SQLite
    // in WAL mode takes a lock no other reader holds to mean it is the last
    // connection, and then deletes the -wal and -shm files that every copy
    // maps. Not the write locks, which would keep every copy from its own.
    drop_write_locks(single);
    t->held_ = restore_held(img, single, inherit);
    proc::Seizure& s = *t->held_.seizure;
    proc::Tracee& tt = s.leader();
    if (::ptrace(PTRACE_SETOPTIONS, tt.tid, nullptr, kOptions) != 0) fail_errno("set ptrace options");
    // The template takes a copy of the carrier's receiving end; each copy
    // of it inherits that and receives its fds there.
    long pidfd = s.syscall(tt, SYS_pidfd_open, ::getpid(), 0);
    if (pidfd < 0) fail("pidfd_open in the template: ", errstr(pidfd));
    long fd = s.syscall(tt, SYS_pidfd_getfd, pidfd, t->carrier_recv_.get(), 0);
    s.syscall(tt, SYS_close, pidfd);
    if (fd < 0) fail("pidfd_getfd in the template: ", errstr(fd));
    t->carrier_fd_ = static_cast<int>(fd);
    return t;
  });
}

Template::~Template() = default;  // the seizure kills and reaps the template

pid_t Template::copy_pid() const { return restore_pid(*m_); }

Template::Copy Template::spawn(pid_t ns_init, const std::map<int, int>& inherit,
                               const std::function<void(pid_t)>& before_run, int namespaces) {
  return with_context(cat("restore from the template (process ", held_.pid, ")"), [&] {
    auto t0 = std::chrono::steady_clock::now();
    if (!usable_) fail("the template is not usable");
    Copy c;
    pid_t helper = 0, copy = 0;
    std::vector<pid_t> threads;  // the copy's other threads, while we hold them
    try {
      helper = make_helper(ns_init);
      auto tf = std::chrono::steady_clock::now();
      copy = fork_copy(helper);
      c.fork_ms = ms_since(tf);
      end_helper(helper);
      helper = 0;
      proc::Tracee w;
      w.tid = copy;
      if (::ptrace(PTRACE_GETREGS, copy, nullptr, &w.regs) != 0) fail_errno("read the copy's registers");
      set_up_copy(w, inherit, namespaces);
      add_unforked_memory(w);
      std::vector<std::pair<pid_t, std::vector<int>>> held_signals;
      std::vector<std::pair<pid_t, const image::Thread*>> made{{copy, &main_}};
      add_threads(w, threads, held_signals, made);
      if (before_run) before_run(copy);  // its cgroups first: they bound what it may be given
      restore_scheduling(copy, made, *m_);
      // Registers, FPU state (a fork need not copy every xfeature) and mask.
      load_thread_registers(copy, main_);
      for (pid_t tid : threads)
        if (::ptrace(PTRACE_DETACH, tid, nullptr, 0) != 0) fail_errno("let thread ", tid, " run");
      threads.clear();
      if (::ptrace(PTRACE_DETACH, copy, nullptr, 0) != 0) fail_errno("let it run");
      // Signals that came while a thread was held were kept back: send them.
      held_signals.emplace_back(copy, w.resend);
      for (const auto& [tid, sigs] : held_signals)
        for (int sig : sigs) ::syscall(SYS_tgkill, copy, tid, sig);
    } catch (...) {
      if (helper > 0) proc::kill_and_reap(helper);
      if (copy > 0) ::kill(copy, SIGKILL);
      for (pid_t tid : threads) proc::kill_and_reap(tid);
      if (copy > 0) proc::kill_and_reap(copy);
      drain_carrier();
      // Dead, it is our zombie (we are its parent: kill(pid, 0) would still
      // succeed), or already reaped by a wait for an injected call. Either
      // way its pid is not ours to signal any more.
      int st;
      pid_t r = ::waitpid(held_.pid, &st, WNOHANG | __WALL);
      if ((r == held_.pid && (WIFEXITED(st) || WIFSIGNALED(st))) || (r < 0 && errno == ECHILD)) {
        usable_ = false;
        held_.seizure->detach_as_is();  // no kill on release
      }
      throw;
    }
    c.host_pid = copy;
    c.total_ms = ms_since(t0);
    return c;
  });
}

// The template joins the pid namespace of ns_init for its children and
// makes a helper there that shares its memory (nothing is copied).
pid_t Template::make_helper(pid_t ns_init) {
  proc::Seizure& s = *held_.seizure;
  proc::Tracee& t = s.leader();
  long pidfd = s.syscall(t, SYS_pidfd_open, ns_init, 0);
  if (pidfd < 0) fail("pidfd_open of the namespace's init (", ns_init, "): ", errstr(pidfd));
  long rc = s.syscall(t, SYS_setns, pidfd, CLONE_NEWPID);
  s.syscall(t, SYS_close, pidfd);
  if (rc != 0) fail("join the pid namespace of ", ns_init, ": ", errstr(rc));
  // CLONE_PARENT: the helper is our child (we reap it), not the template's.
  // Its pid: anything but 1 and the image's (the namespace is new).
  pid_t helper = clone_in(t, CLONE_VM | CLONE_PARENT, 0, restore_pid(*m_) + 1, "the template");
  wait_setup_stop(helper);
  return helper;
}

// The helper forks the copy with the image's pid; the copy's memory is a
// copy-on-write copy of the template's.
pid_t Template::fork_copy(pid_t helper) {
  proc::Tracee h;
  h.tid = helper;
  if (::ptrace(PTRACE_GETREGS, helper, nullptr, &h.regs) != 0) fail_errno("read the helper's registers");
  pid_t copy = clone_in(h, 0, SIGCHLD, restore_pid(*m_), "the helper");
  wait_setup_stop(copy);
  return copy;
}

// Runs clone3 in `t` (stopped; its process traced with PTRACE_O_TRACECLONE
// and FORK) with `flags`, `exit_signal` and set_tid = `tid`, and returns
// the new child or thread as we see it, attached and stopping (its first
// stop not yet waited for).
pid_t Template::clone_in(proc::Tracee& t, uint64_t flags, int exit_signal, pid_t tid, const char* where) {
  proc::Seizure& s = *held_.seizure;
  CloneBlock b{};
  uint64_t at = s.scratch(t, sizeof b);
  b.ca.flags = flags;
  b.ca.exit_signal = static_cast<uint64_t>(exit_signal);
  b.tid = tid;
  b.ca.set_tid = at + offsetof(CloneBlock, tid);
  b.ca.set_tid_size = 1;
  proc::write_mem(t.tid, at, &b, sizeof b);
  t.new_child = 0;
  long rc = s.syscall(t, SYS_clone3, at, sizeof b.ca);
  if (rc < 0) fail("clone3 (pid ", tid, ") in ", where, ": ", errstr(rc));
  if (t.new_child <= 0) {
    usable_ = false;  // a process we do not hold may run
    fail("clone3 (pid ", tid, ") in ", where, " made no ptrace event");
  }
  return t.new_child;
}

// The helper exits; the copy, its child, passes to pid 1 of its namespace
// (ns_init), which from then on waits for it as for any child.
void Template::end_helper(pid_t helper) {
  proc::Seizure& s = *held_.seizure;
  user_regs_struct r;
  if (::ptrace(PTRACE_GETREGS, helper, nullptr, &r) != 0) fail_errno("read the helper's registers");
  r.rip = s.gadget();
  r.rax = SYS_exit;
  r.orig_rax = static_cast<unsigned long long>(-1);
  r.rdi = 0;
  if (::ptrace(PTRACE_SETREGS, helper, nullptr, &r) != 0) fail_errno("set the helper's registers");
  if (::ptrace(PTRACE_CONT, helper, nullptr, 0) != 0) fail_errno("resume the helper");
  for (;;) {
    int status;
    if (::waitpid(helper, &status, __WALL) < 0) {
      if (errno == EINTR) continue;
      fail_errno("wait for the helper");
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) return;
    if (WIFSTOPPED(status) && ::ptrace(PTRACE_CONT, helper, nullptr, 0) != 0) fail_errno("resume the helper");
  }
}

// What a fork does not carry over, and the container the copy belongs to.
void Template::set_up_copy(proc::Tracee& w, const std::map<int, int>& inherit, int namespaces) {
  proc::Seizure& s = *held_.seizure;
  pid_t copy = w.tid;
  auto check = [](long rc, const char* what) {
    if (rc < 0) fail(what, ": ", errstr(rc));
  };
  set_up_thread(w, main_);
  check(s.syscall(w, SYS_setsid), "setsid");
  pass_fds(w, inherit);
  if (namespaces) {
    long pidfd = s.syscall(w, SYS_pidfd_open, 1, 0);
    check(pidfd, "pidfd_open of its namespace's init");
    long rc = s.syscall(w, SYS_setns, pidfd, namespaces);
    s.syscall(w, SYS_close, pidfd);
    check(rc, "join its init's namespaces");
  }
  const std::string& cwd = m_->process.cwd;
  uint64_t at = s.scratch(w, cwd.size() + 1);
  proc::write_mem(copy, at, cwd.c_str(), cwd.size() + 1);
  long rc = s.syscall(w, SYS_chdir, at);
  if (rc < 0) fail("restore: cwd ", cwd, ": ", errstr(rc));
  take_posix_locks(w);
}

// A fork takes none of the template's POSIX locks (and it holds none): the
// copy takes the image's, after pass_fds (whose closes would drop them).
void Template::take_posix_locks(proc::Tracee& w) {
  proc::Seizure& s = *held_.seizure;
  for (const auto& e : m_->fds) {
    if (!e.contains("posix_locks")) continue;
    int fd = e["fd"];
    for (const auto& l : e["posix_locks"]) {
      struct flock fl = posix_lock_of(l);
      uint64_t at = s.scratch(w, sizeof fl);
      proc::write_mem(w.tid, at, &fl, sizeof fl);
      long rc = s.syscall(w, SYS_fcntl, fd, F_SETLK, at);
      if (rc == -EAGAIN || rc == -EACCES)
        fail("fd ", fd, ": the process held a POSIX ", fl.l_type == F_WRLCK ? "write" : "read", " lock on its file "
             "at checkpoint, and another process (another copy, or the original) holds a conflicting lock now");
      if (rc < 0) fail("fd ", fd, ": take its POSIX lock again: ", errstr(rc));
    }
  }
}

// What a thread has of its own in the kernel and a fork or clone does not
// carry (or CLONE_VM in the helper cleared): robust list, clear-child-tid,
// rseq, sigaltstack, name.
void Template::set_up_thread(proc::Tracee& t, const image::Thread& th) {
  proc::Seizure& s = *held_.seizure;
  auto check = [&](long rc, const char* what) {
    if (rc < 0) fail("thread ", th.tid, ": ", what, ": ", errstr(rc));
  };
  if (th.robust_head) check(s.syscall(t, SYS_set_robust_list, th.robust_head, th.robust_len), "set_robust_list");
  check(s.syscall(t, SYS_set_tid_address, th.clear_tid), "set_tid_address");
  if (th.rseq_ptr) check(s.syscall(t, SYS_rseq, th.rseq_ptr, th.rseq_len, 0, th.rseq_sig), "register rseq");
  if (th.altstack_sp && !(th.altstack_flags & SS_DISABLE)) {
    stack_t ss{reinterpret_cast<void*>(th.altstack_sp), th.altstack_flags & ~SS_ONSTACK,
               static_cast<size_t>(th.altstack_size)};
    uint64_t at = s.scratch(t, sizeof ss);
    proc::write_mem(t.tid, at, &ss, sizeof ss);
    check(s.syscall(t, SYS_sigaltstack, at, 0), "sigaltstack");
  }
  if (!th.comm.empty()) {
    uint64_t at = s.scratch(t, th.comm.size() + 1);
    proc::write_mem(t.tid, at, th.comm.c_str(), th.comm.size() + 1);
    check(s.syscall(t, SYS_prctl, PR_SET_NAME, at), "set its name");
  }
  set_prctl_injected(s, t, th, main_, &th == &main_ ? &m_->process : nullptr);
}

// Memory a fork leaves out (MADV_DONTFORK: not mapped in the copy) or
// zeroes (MADV_WIPEONFORK): mapped again where needed and filled with the
// template's content, its protection and advice as in the image. And the
// locks a fork drops (mlock).
void Template::add_unforked_memory(proc::Tracee& w) {
  proc::Seizure& s = *held_.seizure;
  UniqueFd template_mem;
  for (const auto& v : m_->vmas) {
    auto lock = [&] {  // after the mapping exists again
      if (!(v.madv & image::kLocked)) return;
      long rc = s.syscall(w, SYS_mlock, v.start, v.end - v.start);
      if (rc < 0) fail("mapping at 0x", std::hex, v.start, std::dec, ": mlock: ", errstr(rc));
    };
    if (!(v.madv & (image::kMadvDontFork | image::kMadvWipeOnFork))) {
      lock();
      continue;
    }
    uint64_t len = v.end - v.start;
    auto check = [&](long rc, const char* what) {
      if (rc < 0) fail("mapping at 0x", std::hex, v.start, std::dec, ": ", what, ": ", errstr(rc));
    };
    // Each injected call costs tens of microseconds: only those needed.
    // (A wiped mapping keeps its MADV_WIPEONFORK through the fork.)
    bool dontfork = v.madv & image::kMadvDontFork;
    bool fill = !v.runs.empty();
    constexpr int kRW = PROT_READ | PROT_WRITE;
    int prot_now = v.prot;
    if (dontfork) {
      prot_now = fill ? kRW : v.prot;
      long at = s.syscall(w, SYS_mmap, v.start, len, prot_now, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                          static_cast<uint64_t>(-1), 0);
      check(at, "map it again");
      if (static_cast<uint64_t>(at) != v.start) fail("mapping at 0x", std::hex, v.start, ": mapped elsewhere");
    } else if (fill && (v.prot & kRW) != kRW) {
      check(s.syscall(w, SYS_mprotect, v.start, len, kRW), "make it writable");
      prot_now = kRW;
    }
    if (fill && !template_mem) {
      // Read through /proc/PID/mem: the template may hold it PROT_NONE.
      template_mem.reset(::open(cat("/proc/", held_.pid, "/mem").c_str(), O_RDONLY | O_CLOEXEC));
      if (!template_mem) fail_errno("open /proc/", held_.pid, "/mem");
    }
    // Only what the image stores: the rest reads as zero in the template
    // too (it never ran), as it does in this fresh or wiped mapping. (A
    // runtime like node reserves hundreds of MiB this way.)
    std::vector<char> buf;
    for (const auto& run : v.runs) {
      for (uint64_t off = 0; off < run.len; off += 4 << 20) {
        size_t n = std::min<uint64_t>(4 << 20, run.len - off);
        buf.resize(n);
        pread_all(template_mem.get(), buf.data(), n, run.addr + off,
                  cat("the template's memory at 0x", std::hex, run.addr + off));
        proc::write_mem(w.tid, run.addr + off, buf.data(), n);
      }
    }
    if (prot_now != v.prot) check(s.syscall(w, SYS_mprotect, v.start, len, v.prot), "restore its protection");
    if (dontfork) check(s.syscall(w, SYS_madvise, v.start, len, MADV_DONTFORK), "MADV_DONTFORK");
    if (dontfork && (v.madv & image::kMadvWipeOnFork))  // a new mapping: its advice is gone
      check(s.syscall(w, SYS_madvise, v.start, len, MADV_WIPEONFORK), "MADV_WIPEONFORK");
    lock();
  }
}

// The image's other threads, made in the copy by clone3(CLONE_THREAD) with
// their tids, then given their state and registers. They stay stopped until
// the caller lets all go; their tids (ours) are added to `tids`.
void Template::add_threads(proc::Tracee& w, std::vector<pid_t>& tids,
                           std::vector<std::pair<pid_t, std::vector<int>>>& held_signals,
                           std::vector<std::pair<pid_t, const image::Thread*>>& made_threads) {
  for (const auto& th : m_->threads) {
    if (restore_tid(*m_, th) == restore_pid(*m_)) continue;
    pid_t tid = restore_tid(*m_, th);
    pid_t made = clone_in(w, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, 0,
                          tid, "the copy");
    tids.push_back(made);
    made_threads.emplace_back(made, &th);
    wait_setup_stop(made);
    proc::Tracee t;
    t.tid = made;
    if (::ptrace(PTRACE_GETREGS, t.tid, nullptr, &t.regs) != 0) fail_errno("read registers of thread ", tid);
    set_up_thread(t, th);
    load_thread_registers(t.tid, th);
    held_signals.emplace_back(t.tid, t.resend);
  }
}

// The copy receives the fds the caller gives it over the carrier, puts each
// where the image had it and closes its copy of the carrier.
void Template::pass_fds(proc::Tracee& w, const std::map<int, int>& inherit) {
  std::vector<int> targets, ours;
  for (const auto& [target, mine] : with_shared_inherits(*m_, inherit)) {
    targets.push_back(target);
    ours.push_back(mine);
  }
  // In messages the carrier's reader (drain_carrier) can take whole.
  for (size_t i = 0; i < ours.size(); i += kMaxPacketFds) {
    size_t n = std::min<size_t>(kMaxPacketFds, ours.size() - i);
    pass_fd_batch(w, std::vector<int>(targets.begin() + i, targets.begin() + i + n),
                  std::vector<int>(ours.begin() + i, ours.begin() + i + n));
  }
  long rc = held_.seizure->syscall(w, SYS_close, carrier_fd_);
  if (rc < 0) fail("close the carrier: ", errstr(rc));
}

void Template::pass_fd_batch(proc::Tracee& w, const std::vector<int>& targets, const std::vector<int>& ours) {
  proc::Seizure& s = *held_.seizure;
  auto check = [](long rc, const char* what) {
    if (rc < 0) fail(what, ": ", errstr(rc));
  };
  send_packet(carrier_send_.get(), "F", ours.data(), static_cast<int>(ours.size()), "the copy");

  // The same message, laid out in the copy's memory for recvmsg.
  size_t ctl_len = CMSG_SPACE(sizeof(int) * ours.size());
  struct Layout {
    msghdr mh;
    iovec io;
    char byte;
  };
  size_t total = sizeof(Layout) + 16 + ctl_len;
  uint64_t at = s.scratch(w, total);
  uint64_t ctl_at = (at + sizeof(Layout) + 15) & ~uint64_t{15};
  Layout l{};
  l.io.iov_base = reinterpret_cast<void*>(at + offsetof(Layout, byte));
  l.io.iov_len = 1;
  l.mh.msg_iov = reinterpret_cast<iovec*>(at + offsetof(Layout, io));
  l.mh.msg_iovlen = 1;
  l.mh.msg_control = reinterpret_cast<void*>(ctl_at);
  l.mh.msg_controllen = ctl_len;
  proc::write_mem(w.tid, at, &l, sizeof l);
  long n = s.syscall(w, SYS_recvmsg, carrier_fd_, at, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n != 1) fail("receive the fds in the copy: ", n < 0 ? errstr(n) : std::string("nothing came"));
  std::vector<char> got(ctl_len);
  proc::read_mem(w.tid, ctl_at, got.data(), got.size());
  proc::read_mem(w.tid, at, &l, sizeof l);
  msghdr back{};
  back.msg_control = got.data();
  back.msg_controllen = l.mh.msg_controllen;
  cmsghdr* rc = CMSG_FIRSTHDR(&back);
  if (!rc || rc->cmsg_type != SCM_RIGHTS || rc->cmsg_len != CMSG_LEN(sizeof(int) * ours.size()))
    fail("the copy received its fds truncated");
  std::vector<int> theirs(ours.size());
  std::memcpy(theirs.data(), CMSG_DATA(rc), sizeof(int) * ours.size());
  // They land on numbers the copy has free, and it has every fd of the
  // image (the template's): installing one never replaces another.
  for (int t : theirs)
    if (std::find(targets.begin(), targets.end(), t) != targets.end())
      fail("the copy received an fd at ", t, ", a number of the image's");
  for (size_t i = 0; i < theirs.size(); i++) {
    bool cloexec = false;
    for (const auto& e : m_->fds)
      if (e["fd"].get<int>() == targets[i]) cloexec = e.value("cloexec", false);
    check(s.syscall(w, SYS_dup3, theirs[i], targets[i], cloexec ? O_CLOEXEC : 0), "install an fd");
  }
  // They came as a run of free numbers above the copy's fds, as a rule:
  // then one call closes them all.
  auto [lo, hi] = std::minmax_element(theirs.begin(), theirs.end());
  bool run = *hi - *lo + 1 == static_cast<int>(theirs.size()) && (carrier_fd_ < *lo || carrier_fd_ > *hi);
  if (run) {
    check(s.syscall(w, SYS_close_range, *lo, *hi, 0), "close the received fds");
  } else {
    for (int t : theirs) check(s.syscall(w, SYS_close, t), "close a received fd");
  }
}

// A failed spawn may leave its message unread: the next copy must not get it.
void Template::drain_carrier() {
  try {
    pollfd p{carrier_recv_.get(), POLLIN, 0};
    while (::poll(&p, 1, 0) > 0)
      if (!recv_packet(carrier_recv_.get(), -1, nullptr, "the carrier")) return;  // fds that came are closed
  } catch (const std::exception&) {
    // nothing left to read in a way that matters
  }
}

}  // namespace thaw::engine
