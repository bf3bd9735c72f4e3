#include "cli/session.h"

#include <pthread.h>

namespace thaw::cli {

namespace {
// A peer that goes away is an error to handle where it happens, not a
// reason for the runtime to die.
runtime::Context make(runtime::Log& log) {
  ::signal(SIGPIPE, SIG_IGN);
  return runtime::make_context(log);
}
}  // namespace

Session::Session() : ctx(make(log)), rt(std::make_unique<runtime::Runtime>(ctx)) {}

SignalWatcher::SignalWatcher(std::function<void(const Signal&)> on_signal) {
  sigemptyset(&set_);
  // SIGUSR2 only wakes the watcher up at destruction.
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR2}) sigaddset(&set_, s);
  ::pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  thread_ = std::thread([this, on_signal] {
    for (;;) {
      siginfo_t info{};
      int sig = ::sigwaitinfo(&set_, &info);
      if (sig < 0) continue;
      if (sig == SIGUSR2) return;
      on_signal({sig, info.si_code == SI_KERNEL});
    }
  });
}

SignalWatcher::~SignalWatcher() {
  ::pthread_kill(thread_.native_handle(), SIGUSR2);
  thread_.join();
}

}  // namespace thaw::cli
