#include "container/init.h"

#include <sched.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "container/cgroup.h"
#include "container/channel.h"
#include "container/mounts.h"
#include "container/spec.h"

namespace thaw::container {

namespace {

constexpr int kSetupFailed = 71;

// The runtime reads this as the container's first message: say why it died.
void report_error(const std::string& what) {
  std::fprintf(stderr, "thaw init: %s\n", what.c_str());
  try {
    send_message(kControlFd, {{"type", "error"}, {"error", what}});
  } catch (const std::exception&) {
  }
}

[[noreturn]] void exec_worker(const Spec& spec, const sigset_t& old_mask) {
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  if (::chdir(spec.cwd.c_str()) != 0) {
    report_error(cat("start the worker: chdir ", spec.cwd, ": ", std::strerror(errno)));
    ::_exit(127);
  }
  ::execve(argv[0], argv.data(), envp.data());
  report_error(cat("start the worker: ", spec.argv[0], ": ", std::strerror(errno)));
  ::_exit(127);
}

}  // namespace

int init_main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: thaw __init SPEC_JSON\n");
    return 2;
  }
  Spec spec;
  try {
    spec = spec_from_json(nlohmann::json::parse(argv[2]));
    if (spec.argv.empty()) fail("no worker command");
    join_cgroups(spec.cgroups);
    setup_namespace(spec);
  } catch (const std::exception& e) {
    report_error(cat("container setup: ", e.what()));
    return kSetupFailed;
  }
  // Signals are taken through a signalfd: no handler, no global state.
  sigset_t mask, old_mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) sigaddset(&mask, s);
  ::sigprocmask(SIG_BLOCK, &mask, &old_mask);
  pid_t worker = ::fork();
  if (worker < 0) {
    report_error(cat("start the worker: fork: ", std::strerror(errno)));
    return kSetupFailed;
  }
  if (worker == 0) exec_worker(spec, old_mask);
  // The control channel is the worker's alone: the runtime sees EOF on it
  // exactly when the worker is gone.
  ::close(kControlFd);
  int sfd = ::signalfd(-1, &mask, SFD_CLOEXEC);
  for (;;) {
    struct signalfd_siginfo si;
    if (sfd >= 0) {
      ssize_t n = ::read(sfd, &si, sizeof si);
      if (n != sizeof si) continue;
      if (si.ssi_signo != SIGCHLD) {
        ::kill(worker, static_cast<int>(si.ssi_signo));
        continue;
      }
    }
    int status;
    pid_t w;
    while ((w = ::waitpid(-1, &status, sfd >= 0 ? WNOHANG : 0)) > 0)
      if (w == worker) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (w < 0 && errno == ECHILD) return kSetupFailed;
  }
}

}  // namespace thaw::container
