// Process-wide attributes: identity, executable, cwd, umask, personality,
// credentials, rlimits, and the mm fields behind /proc/PID/{cmdline,environ,
// auxv,exe} and the [heap]/[stack] labels.
#include <dirent.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "common/error.h"
#include "common/io.h"
#include "engine/engine.h"
#include "engine/resources/resources.h"
#include "proc/cow_fork.h"

namespace thaw::engine {

namespace {

std::vector<uint32_t> numbers(const std::string& s) {
  std::vector<uint32_t> out;
  std::istringstream in(s);
  uint64_t v;
  while (in >> v) out.push_back(static_cast<uint32_t>(v));
  return out;
}

uint64_t field(const std::vector<std::string>& f, int number) {  // 1-based /proc/PID/stat field
  size_t idx = static_cast<size_t>(number - 3);
  if (idx >= f.size()) fail("/proc/PID/stat has too few fields");
  return std::stoull(f[idx]);
}

// A child that has exited and waits to be reaped, with the status its
// parent's wait will read, is made again at restore (restore_zombies). One
// with no exit signal (a clone child, or the copy a killed thaw checkpoint
// left) is not: a plain wait would not see it.
bool zombie_of(pid_t kid, image::Zombie* z) {
  std::vector<std::string> f;
  try {
    f = proc::read_stat_fields(kid);
  } catch (const Error&) {
    return false;
  }
  // state, exit_signal (field 38), exit_code (field 52: the wait status)
  if (f.size() < 50 || f[0] != "Z" || field(f, 38) != SIGCHLD) return false;
  std::string nspid = proc::read_status(cat("/proc/", kid))["NSpid"];
  auto ids = numbers(nspid);
  if (ids.empty()) return false;
  z->pid = static_cast<int>(ids.back());
  z->status = static_cast<int>(field(f, 52));
  return true;
}

// Children that have exited are recorded (restore_zombies); running ones
// are the checkpoint's to take along (running_children).
void record_zombies(pid_t pid, std::vector<image::Zombie>& zombies) {
  for (pid_t kid : proc::list_children(pid)) {
    image::Zombie z;
    if (zombie_of(kid, &z)) zombies.push_back(z);
  }
}

// Things an image cannot hold: refuse them by name.
void refuse_unsupported(pid_t pid, proc::Seizure& seizure) {
  const auto& threads = seizure.threads();
  DIR* d = ::opendir("/proc");
  if (!d) return;
  std::string traced;
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    std::string st;
    if (!try_read_file(cat("/proc/", e->d_name, "/status"), &st)) continue;
    auto pos = st.find("TracerPid:");
    if (pos == std::string::npos) continue;
    int tracer = std::atoi(st.c_str() + pos + 10);
    for (const auto& t : threads)
      if (tracer == t.tid) traced += cat(traced.empty() ? "" : ", ", e->d_name);
  }
  ::closedir(d);
  if (!traced.empty())
    fail("process ", pid, " is tracing other processes (", traced, ") with ptrace; not supported");
}

// A restored process gets what the restoring thaw has and the image does
// not hold: its capabilities (a root process's; a non-root one's are
// cleared by the uid change), no_new_privs, seccomp filters, and network
// and user namespaces. A process that had other ones would come back with
// them changed, in silence (a process that dropped capabilities would
// regain them): refuse it, by name.
void refuse_what_restore_would_change(pid_t pid, const std::vector<proc::Tracee>& threads) {
  auto mine = proc::read_status("/proc/self");
  const char* fix = "; a restore gives it thaw's own: checkpoint a process that runs as thaw does";
  for (const auto& t : threads) {
    auto st = proc::read_status(cat("/proc/", pid, "/task/", t.tid));
    std::string who = cat("process ", pid, t.tid == pid ? std::string() : cat(" (thread ", t.tid, ")"));
    auto uids = numbers(st["Uid"]);
    bool root = uids.size() >= 3 && (uids[0] == 0 || uids[1] == 0 || uids[2] == 0);
    std::vector<const char*> same = {"CapBnd", "CapInh"};
    if (root) same.insert(same.end(), {"CapPrm", "CapEff", "CapAmb"});
    for (const char* k : same)
      if (st[k] != mine[k])
        fail(who, ": its capabilities differ from thaw's (", k, " ", st[k], ", thaw's ", mine[k], ")", fix);
    if (!root)
      for (const char* k : {"CapPrm", "CapEff", "CapAmb"})
        if (parse_hex64(st[k]) != 0)
          fail(who, " runs as uid ", uids[0], " with capabilities (", k, " ", st[k],
               "), which a restore would drop; not supported");
    if (st["Seccomp"] != mine["Seccomp"] || st["Seccomp_filters"] != mine["Seccomp_filters"])
      fail(who, " has seccomp filters thaw does not have (Seccomp ", st["Seccomp"], ", ", st["Seccomp_filters"],
           " filters; thaw's: ", mine["Seccomp"], ", ", mine["Seccomp_filters"], ")", fix);
    if (st["NoNewPrivs"] != mine["NoNewPrivs"])
      fail(who, ": no_new_privs is ", st["NoNewPrivs"], " (thaw's: ", mine["NoNewPrivs"], ")", fix);
  }
  for (const char* ns : {"net", "user"}) {
    std::string theirs = proc::read_link(cat("/proc/", pid, "/ns/", ns)), ours = proc::read_link(cat("/proc/self/ns/", ns));
    if (theirs != ours)
      fail("process ", pid, " runs in another ", ns == std::string("net") ? "network" : "user", " namespace (",
           theirs, "; thaw's: ", ours, "), which an image does not hold; not supported");
  }
}

}  // namespace

std::vector<pid_t> running_children(pid_t pid, proc::Seizure& seizure) {
  // What a killed thaw checkpoint left of its copy goes first.
  proc::CowFork::reap_leftovers(seizure);
  std::vector<pid_t> running;
  for (pid_t kid : proc::list_children(pid)) {
    image::Zombie z;
    if (zombie_of(kid, &z)) continue;
    std::vector<std::string> f;
    try {
      f = proc::read_stat_fields(kid);
    } catch (const Error&) {
      continue;  // gone meanwhile: it had exited and was reaped
    }
    if (f.empty() || f[0] != "Z") {
      // A live one of that name is the copy of a checkpoint still running:
      // thaw releases the target while it reads the pages from the copy.
      std::string comm;
      if (try_read_file(cat("/proc/", kid, "/comm"), &comm) && trim(comm) == proc::CowFork::kCopyName)
        fail("another thaw checkpoint of process ", pid, " is still reading its pages (from its copy-on-write "
             "copy, child ", kid, "); ", kPassingState, ": wait for it to finish and take this checkpoint again");
      running.push_back(kid);
      continue;
    }
    // A zombie zombie_of did not take: its exit signal is not SIGCHLD, so a
    // plain wait would not see it made again.
    if (f.size() > 35 && field(f, 38) == 0)  // exit_signal
      fail("process ", pid, ": child ", kid, " is a zombie with no exit signal, as a thaw checkpoint that was "
           "killed leaves its copy of the process: it goes when the process waits for it (waitpid with "
           "__WCLONE) or ends; take the checkpoint after that");
    fail("process ", pid, ": child ", kid, proc::command_line(kid), " has exited but was never waited for, and is a "
         "clone child (its exit signal is not SIGCHLD): wait for it (waitpid with __WALL) before the checkpoint");
  }
  return running;
}

void dump_process(CheckpointContext& c) {
  record_zombies(c.pid, c.m.process.zombies);
  refuse_unsupported(c.pid, c.seizure);
  refuse_what_restore_would_change(c.pid, c.seizure.threads());
  auto& p = c.m.process;
  std::string dir = cat("/proc/", c.pid);
  p.pid = c.pid;
  p.comm = trim(read_file(dir + "/comm"));
  std::string root = proc::read_link(dir + "/root");
  if (root != "/") fail("process ", c.pid, " runs chrooted in ", root, "; not supported");
  p.cwd = proc::read_link(dir + "/cwd");
  struct stat cwd_st;
  if (::stat((dir + "/cwd").c_str(), &cwd_st) != 0) fail_errno("stat the working directory of ", c.pid);
  if (proc::unlinked(c.pid, p.cwd, cwd_st))
    fail("process ", c.pid, ": its working directory ", proc::without_deleted(p.cwd),
         " was deleted; a restore could not enter it: let it chdir elsewhere first");
  p.exe.path = proc::read_link(dir + "/exe");
  struct stat st;
  if (::stat((dir + "/exe").c_str(), &st) != 0) fail_errno("stat executable of ", c.pid);
  // Its mappings would be kept as a deleted file's, but a restore sets the
  // executable again by its path (plan_process): refuse here rather
  // than write an image that no restore accepts.
  if (proc::unlinked(c.pid, p.exe.path, st))
    fail("its executable ", proc::without_deleted(p.exe.path), " was deleted (or replaced) "
         "since it started; a restore could not set it again: run the program anew from its file");
  p.exe.dev = st.st_dev;
  p.exe.ino = st.st_ino;
  p.exe.size = st.st_size;
  p.exe.mtime_ns = mtime_ns(st);
  p.personality = parse_hex64(trim(read_file(dir + "/personality")));

  auto status = proc::read_status(dir);
  p.ns_pid = innermost_id(status["NStgid"]);
  p.umask = static_cast<uint32_t>(std::stoul(status["Umask"], nullptr, 8));
  p.creds.uids = numbers(status["Uid"]);
  p.creds.gids = numbers(status["Gid"]);
  p.creds.groups = numbers(status["Groups"]);
  if (p.creds.uids.size() != 4 || p.creds.gids.size() != 4) fail("parse credentials of ", c.pid);

  auto f = proc::read_stat_fields(c.pid);
  p.group_leader = field(f, 5) == static_cast<uint64_t>(c.pid);    // pgrp
  p.session_leader = field(f, 6) == static_cast<uint64_t>(c.pid);  // session
  auto& mm = p.mm;
  mm.start_code = field(f, 26);
  mm.end_code = field(f, 27);
  mm.start_stack = field(f, 28);
  mm.start_data = field(f, 45);
  mm.end_data = field(f, 46);
  mm.start_brk = field(f, 47);
  mm.arg_start = field(f, 48);
  mm.arg_end = field(f, 49);
  mm.env_start = field(f, 50);
  mm.env_end = field(f, 51);
  long brk = c.seizure.syscall(c.seizure.leader(), SYS_brk, 0);
  if (brk < 0) fail("read brk of ", c.pid);
  mm.brk = static_cast<uint64_t>(brk);
  std::string auxv = read_file(dir + "/auxv");
  mm.auxv.resize(auxv.size() / 8);
  std::memcpy(mm.auxv.data(), auxv.data(), mm.auxv.size() * 8);

  // /proc/PID/limits rather than prlimit(): reading another user's limits
  // with prlimit needs CAP_SYS_RESOURCE, which root may lack.
  std::istringstream lim(read_file(dir + "/limits"));
  std::string line;
  std::getline(lim, line);  // header
  for (int res = 0; res < RLIM_NLIMITS && std::getline(lim, line); res++) {
    if (line.size() < 26) fail("parse /proc/", c.pid, "/limits: '", line, "'");
    std::istringstream vals(line.substr(26));
    std::string soft, hard;
    vals >> soft >> hard;
    auto value = [&](const std::string& v) -> uint64_t {
      return v == "unlimited" ? RLIM_INFINITY : std::stoull(v);
    };
    p.rlimits.push_back(image::Rlimit{res, value(soft), value(hard)});
  }
  if (p.rlimits.size() != RLIM_NLIMITS) fail("parse /proc/", c.pid, "/limits: expected ", RLIM_NLIMITS, " limits");
}

namespace {

void set_rlimit(const image::Rlimit& rl) {
  struct rlimit v{rl.cur, rl.max};
  if (::setrlimit(static_cast<__rlimit_resource>(rl.resource), &v) != 0) {
    // Raising a hard limit needs CAP_SYS_RESOURCE; keep ours, lower the soft one.
    struct rlimit cur;
    ::getrlimit(static_cast<__rlimit_resource>(rl.resource), &cur);
    v.rlim_max = cur.rlim_max;
    if (v.rlim_cur > v.rlim_max) v.rlim_cur = v.rlim_max;
    ::setrlimit(static_cast<__rlimit_resource>(rl.resource), &v);
  }
}

}  // namespace

void restore_process_early(RestoreContext& r) {
  const auto& p = r.m.process;
  if (::chdir(p.cwd.c_str()) != 0) fail_errno("working directory ", p.cwd);
  ::umask(p.umask);
  if (::personality(static_cast<unsigned long>(p.personality)) < 0) fail_errno("set personality");
  // The open-files limit comes last (restore_fd_limit): the restore still
  // opens fds above the image's highest, which a full table puts at the limit.
  for (const auto& rl : p.rlimits)
    if (rl.resource != RLIMIT_NOFILE) set_rlimit(rl);
  if (::prctl(PR_SET_NAME, p.comm.c_str()) != 0) fail_errno("set process name");
}

bool stdio_is_tty(const RestoreContext& r) {
  for (int fd = 0; fd <= 2; fd++)
    if (auto it = r.inherit.find(fd); it != r.inherit.end() && ::isatty(it->second)) return true;
  return false;
}

void restore_session(RestoreContext& r) {
  const auto& p = r.m.process;
  // A leader leads again, with its own (new) pid as the id; a tree's
  // children are made after, so that they are in it as they were. Any
  // other process's group and session belonged to processes the image
  // does not hold: it stays in its parent's, the restoring side's for the
  // root.
  // Not from a terminal: a process of a group of its own would be stopped
  // (SIGTTIN) at its first read there, and setsid would drop the terminal.
  if (r.on_tty) return;
  if (p.session_leader && ::setsid() < 0) fail_errno("make it lead a session of its own, as it did");
  if (!p.session_leader && p.group_leader && ::setpgid(0, 0) != 0)
    fail_errno("make it lead a process group of its own, as it did");
  // In a tree, a group another of its processes leads is joined again. Its
  // parent does it too, right after making it (make_children), as shells
  // do, so that the group exists for the next sibling whichever of the two
  // runs first; one failing is no error.
  if (!p.session_leader && !p.group_leader && p.pgid != 0) ::setpgid(0, p.pgid);
}

namespace {

// The made-again child's end: its recorded wait status (a signal's death
// without a core file; the core flag is lost).
[[noreturn]] void end_as(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    ::prctl(PR_SET_DUMPABLE, 0);  // no core file, nor a crash reporter started for it
    ::signal(sig, SIG_DFL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    ::sigprocmask(SIG_UNBLOCK, &s, nullptr);
    ::kill(::getpid(), sig);
  }
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 127);
}

}  // namespace

void restore_zombies(RestoreContext& r) {
  const auto& zombies = r.m.process.zombies;
  for (const auto& z : zombies) {
    pid_t kid = clone_with_pid(z.pid);
    if (kid < 0) fail_errno("make child ", z.pid, " (which had exited) again");
    if (kid == 0) end_as(z.status);
    // Left unreaped (WNOWAIT): the restored process's wait reaps it.
    siginfo_t info{};
    if (::waitid(P_PID, kid, &info, WEXITED | WNOWAIT) != 0) fail_errno("wait for child ", z.pid, " to end");
  }
  if (zombies.empty()) return;
  // Their ends queued a SIGCHLD (every signal is blocked here) the original
  // had already had; the image's own pending signals come later.
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  timespec now{};
  while (::sigtimedwait(&chld, nullptr, &now) == SIGCHLD) {
  }
}

void restore_fd_limit(RestoreContext& r) {
  for (const auto& rl : r.m.process.rlimits)
    if (rl.resource == RLIMIT_NOFILE) set_rlimit(rl);
}

void plan_process(RestoreContext& r) {
  const auto& p = r.m.process;
  auto& a = r.plan.args;
  const auto& mm = p.mm;
  a.mm.start_code = mm.start_code;
  a.mm.end_code = mm.end_code;
  a.mm.start_data = mm.start_data;
  a.mm.end_data = mm.end_data;
  a.mm.start_brk = mm.start_brk;
  a.mm.brk = mm.brk;
  a.mm.start_stack = mm.start_stack;
  a.mm.arg_start = mm.arg_start;
  a.mm.arg_end = mm.arg_end;
  a.mm.env_start = mm.env_start;
  a.mm.env_end = mm.env_end;
  r.plan.auxv = mm.auxv;
  a.mm.auxv_size = static_cast<uint32_t>(mm.auxv.size() * 8);

  struct stat st;
  if (::stat(p.exe.path.c_str(), &st) != 0) fail_errno("executable ", p.exe.path, " is gone");
  if (st.st_ino != p.exe.ino || st.st_dev != p.exe.dev || uint64_t(st.st_size) != p.exe.size)
    fail("executable ", p.exe.path, ": file changed since checkpoint; take a new checkpoint");
  int exe = ::open(p.exe.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (exe < 0) fail_errno("open executable ", p.exe.path);
  exe = r.park_fd(exe);
  r.plan.close_fds.push_back(exe);
  a.mm.exe_fd = static_cast<uint32_t>(exe);

  const auto& cr = p.creds;
  bool root_all = true;
  for (auto v : cr.uids) root_all &= v == ::getuid();
  for (auto v : cr.gids) root_all &= v == ::getgid();
  if (!root_all) {
    a.set_creds = 1;
    for (int i = 0; i < 4; i++) {
      a.uids[i] = cr.uids[i];
      a.gids[i] = cr.gids[i];
    }
    if (cr.groups.size() > 64) fail("process has more than 64 supplementary groups; not supported");
    a.nr_groups = static_cast<uint32_t>(cr.groups.size());
    for (size_t i = 0; i < cr.groups.size(); i++) a.groups[i] = cr.groups[i];
  }
}

}  // namespace thaw::engine
