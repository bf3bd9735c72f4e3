#include "common/interrupt.h"

#include <cstring>

namespace thaw {

namespace {

constexpr int kTermination[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

sigset_t termination_signals() {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : kTermination) sigaddset(&s, sig);
  return s;
}

}  // namespace

HeldSignals::HeldSignals() {
  sigset_t s = termination_signals();
  ::pthread_sigmask(SIG_BLOCK, &s, &old_);
}

HeldSignals::~HeldSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

void HeldSignals::discard_pending() {
  sigset_t s = termination_signals();
  struct timespec now = {0, 0};
  while (::sigtimedwait(&s, nullptr, &now) > 0) {
  }
}

void throw_if_interrupted(const char* outcome) {
  sigset_t pending;
  if (::sigpending(&pending) != 0) return;
  for (int sig : kTermination)
    if (sigismember(&pending, sig)) {
      const char* name = ::sigabbrev_np(sig);
      throw Interrupted(cat("interrupted by SIG", name ? name : "?", "; ", outcome));
    }
}

}  // namespace thaw
