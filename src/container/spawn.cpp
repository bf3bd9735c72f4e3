#include "container/spawn.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"

extern char** environ;

namespace thaw::container {

namespace {

// Fds we hand over are first moved this high, so that moving them to their
// small target numbers in the child never overwrites one not yet moved.
constexpr int kHighFd = 100;

[[noreturn]] void child_exec(const SpawnOptions& o, char* const* argv, char* const* envp,
                             const std::vector<std::pair<int, int>>& moves, int err_fd) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Ignored signals stay ignored across exec; the runtime ignores SIGPIPE.
  ::signal(SIGPIPE, SIG_DFL);
  int e = 0;
  int first_unused = 0;
  for (auto [target, src] : moves) {
    if (::dup2(src, target) < 0) {
      e = errno;
      goto out;
    }
    if (target >= first_unused) first_unused = target + 1;
  }
  // Whatever else we have open (including fds our own parent leaked to us
  // without close-on-exec) stays with us; the error pipe is closed by exec.
  if (first_unused < err_fd) ::syscall(SYS_close_range, first_unused, err_fd - 1, 0);
  ::syscall(SYS_close_range, err_fd + 1, ~0U, 0);
  if (o.new_session) ::setsid();
  if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) {
    e = errno;
    goto out;
  }
  ::execve(argv[0], argv, envp);
  e = errno;
out:
  ssize_t ignored = ::write(err_fd, &e, sizeof e);
  (void)ignored;
  ::_exit(127);
}

}  // namespace

Child::Child(pid_t pid) : pid_(pid), pidfd_(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))) {}

Child::Child(Child&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), pidfd_(std::move(o.pidfd_)), reaped_(o.reaped_), status_(o.status_) {}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    if (running()) {
      kill(SIGKILL);
      wait();
    }
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::move(o.pidfd_);
    reaped_ = o.reaped_;
    status_ = o.status_;
  }
  return *this;
}

Child::~Child() {
  if (running()) {
    kill(SIGKILL);
    wait();
  }
}

void Child::kill(int sig) {
  if (running()) ::kill(pid_, sig);
}

void Child::kill_group(int sig) {
  if (running()) ::kill(-pid_, sig);
  kill(sig);
}

bool Child::wait(int timeout_ms) {
  if (pid_ <= 0 || reaped_) return true;
  if (timeout_ms >= 0 && pidfd_) {
    struct pollfd p{pidfd_.get(), POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r == 0) return false;
  }
  int st = 0;
  pid_t w;
  do w = ::waitpid(pid_, &st, timeout_ms >= 0 && !pidfd_ ? WNOHANG : 0);
  while (w < 0 && errno == EINTR);
  if (w == 0) return false;
  reaped_ = true;
  if (w < 0) status_ = -1;
  else status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return true;
}

void grow_fd_table_for_spawn() {
  UniqueFd any(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (any) UniqueFd high(::fcntl(any.get(), F_DUPFD_CLOEXEC, kHighFd + 63));
}

Child spawn(const SpawnOptions& o) {
  if (o.argv.empty()) fail("spawn: no program");
  // Everything the child needs is built here, before the clone.
  std::vector<char*> argv, envp;
  for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : o.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  std::vector<UniqueFd> held;
  std::vector<std::pair<int, int>> moves;
  for (auto [target, src] : o.fds) {
    int hi = ::fcntl(src, F_DUPFD_CLOEXEC, kHighFd);
    if (hi < 0) fail_errno("spawn ", o.argv[0], ": fd ", src);
    held.emplace_back(hi);
    moves.emplace_back(target, hi);
  }
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail_errno("pipe");
  UniqueFd err_r(p[0]), low_w(p[1]);
  // High like the others, so that no target fd lands on it.
  UniqueFd err_w(::fcntl(low_w.get(), F_DUPFD_CLOEXEC, kHighFd));
  if (!err_w) fail_errno("pipe");
  low_w.reset();

  clone_args ca{};
  ca.flags = static_cast<uint64_t>(o.clone_flags);
  ca.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &ca, sizeof ca);
  if (pid < 0) fail_errno("spawn ", o.argv[0], ": clone3");
  if (pid == 0) child_exec(o, argv.data(), envp.data(), moves, err_w.get());
  Child child(static_cast<pid_t>(pid));
  err_w.reset();
  int e = 0;
  ssize_t n;
  do n = ::read(err_r.get(), &e, sizeof e);
  while (n < 0 && errno == EINTR);
  if (n == sizeof e) {
    child.wait();
    errno = e;
    fail_errno("start ", o.argv[0]);
  }
  return child;
}

std::vector<std::string> current_environment() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; e++) out.emplace_back(*e);
  return out;
}

void set_env(std::vector<std::string>& env, const std::string& key, const std::string& value) {
  std::string prefix = key + "=";
  for (auto& e : env)
    if (e.rfind(prefix, 0) == 0) {
      e = prefix + value;
      return;
    }
  env.push_back(prefix + value);
}

}  // namespace thaw::container
