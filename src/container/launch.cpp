#include "container/launch.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "container/init.h"
#include "container/live.h"
#include "proc/procfs.h"

namespace thaw::container {

namespace {

struct Pair {
  UniqueFd ours, theirs;
};

Pair control_pair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) fail_errno("socketpair");
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

UniqueFd dev_null() {
  UniqueFd fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!fd) fail_errno("open /dev/null");
  return fd;
}

// The helpers need nothing from our environment but a PATH.
std::vector<std::string> helper_env() { return {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}; }

}  // namespace

std::string new_container_id() {
  unsigned char b[6];
  if (::getrandom(b, sizeof b, 0) != sizeof b) fail_errno("getrandom");
  return to_hex(b, sizeof b);
}

std::unique_ptr<Container> start_cold(const Spec& spec, const LaunchOptions& o) {
  std::unique_ptr<Container> c(new Container(spec.id, o));
  c->cgroup_ = Cgroup::create(spec.id, o.memory_limit_bytes, o.cpu_limit);
  Spec s = spec;
  s.cgroups = c->cgroup_.dirs();
  auto [ours, theirs] = control_pair();
  UniqueFd null = dev_null();
  SpawnOptions so;
  so.argv = {o.thaw_exe, "__init", to_json(s).dump()};
  so.env = helper_env();
  so.fds = {{0, null.get()}, {1, c->log_.write_end()}, {2, c->log_.write_end()}, {kControlFd, theirs.get()}};
  so.clone_flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC;
  // Out of the terminal's process group: Ctrl-C stops the runtime, which
  // then stops its containers cleanly (@exit runs).
  so.new_session = true;
  c->root_ = with_context("start container " + spec.id, [&] { return spawn(so); });
  c->ns_init_ = c->root_.pid();
  c->note_live({c->root_.pid(), c->ns_init_, c->cgroup_.dirs()});
  c->log_.close_write_end();
  c->control_ = std::move(ours);
  return c;
}

std::unique_ptr<Container> start_restored(const Spec& spec, const LaunchOptions& o, RestoreShell& shell) {
  std::unique_ptr<Container> c(new Container(spec.id, o));
  c->cgroup_ = Cgroup::create(spec.id, o.memory_limit_bytes, o.cpu_limit);
  Spec s = spec;
  s.cgroups = c->cgroup_.dirs();
  auto [ours, theirs] = control_pair();
  UniqueFd null = dev_null();
  int rp[2];
  if (::pipe2(rp, O_CLOEXEC) != 0) fail_errno("pipe");
  UniqueFd report_r(rp[0]), report_w(rp[1]);
  c->root_ = shell.fork_restore(s, {null.get(), c->log_.write_end(), c->log_.write_end(), theirs.get(), report_w.get()});
  c->note_live({c->root_.pid(), 0, c->cgroup_.dirs()});
  c->log_.close_write_end();
  report_w.reset();
  theirs.reset();
  std::string line = read_line(report_r.get(), o.restore_timeout_ms);
  nlohmann::json rep;
  try {
    rep = nlohmann::json::parse(line);
  } catch (const std::exception&) {
    c->root_.kill_group(SIGKILL);  // the restore process, the engine's init, a half-restored worker
    c->root_.wait();
    fail(line.empty() ? cat("the restore process ended without a report (status ", c->root_.status(), ")")
                      : cat("the restore process said: ", line));
  }
  if (!rep.value("ok", false)) {
    c->root_.wait(5000);
    fail(rep.value("error", std::string("unknown error")));
  }
  c->restored_ = true;
  c->report_ = rep;
  c->worker_ = rep.value("host_pid", 0);
  c->ns_init_ = rep.value("init_pid", 0);
  c->note_live({c->root_.pid(), c->ns_init_, c->cgroup_.dirs()});
  c->control_ = std::move(ours);
  return c;
}

pid_t Container::worker_pid() {
  if (worker_ > 0 || ns_init_ <= 0) return worker_;
  std::string kids;
  if (try_read_file(cat("/proc/", ns_init_, "/task/", ns_init_, "/children"), &kids)) worker_ = std::atoi(kids.c_str());
  return worker_;
}

std::vector<pid_t> Container::other_processes() {
  std::vector<pid_t> out;
  if (ns_init_ <= 0) return out;
  pid_t worker = worker_pid();
  for (pid_t kid : proc::list_children(ns_init_))
    if (kid != worker) out.push_back(kid);
  return out;
}

int Container::stop(int grace_ms) {
  if (root_.running() && !root_.wait(grace_ms)) {
    // pid 1 of a pid namespace takes everything in it along when killed;
    // the root leads a process group of its own (new_session).
    if (worker_pid() > 0) ::kill(worker_, SIGKILL);
    if (ns_init_ > 0) ::kill(ns_init_, SIGKILL);
    root_.kill_group(SIGKILL);
    root_.wait();
  }
  if (!root_.running()) note_gone();
  return root_.status();
}

std::string Container::end_reason(int status) const {
  if (cgroup_.oom_kills() > 0) {
    uint64_t limit = cgroup_.memory_limit_bytes();
    return limit ? cat("the container ran out of memory: the kernel killed it at its limit of ", limit >> 20,
                       " MiB (memory=(request, limit)); raise the limit or use less memory")
                 : std::string("the container ran out of memory: the kernel killed it (the machine is short of memory)");
  }
  if (status > 128 && status < 128 + 65) {
    const char* name = ::sigabbrev_np(status - 128);
    return cat("the container exited: killed by SIG", name ? name : std::to_string(status - 128).c_str(), " (status ",
               status, ")");
  }
  return cat("the container exited (status ", status, ")");
}

Container::~Container() {
  control_.reset();
  stop(0);
  note_gone();
}

}  // namespace thaw::container
