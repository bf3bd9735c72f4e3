#include "common/interrupt.h"

#include <cstring>

namespace thaw {

namespace {

sigset_t termination_signals() {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&s, sig);
  return s;
}

}  // namespace

HeldSignals::HeldSignals() {
  sigset_t s = termination_signals();
  ::pthread_sigmask(SIG_BLOCK, &s, &old_);
}

HeldSignals::~HeldSignals() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

void throw_if_interrupted() {
  sigset_t pending;
  if (::sigpending(&pending) != 0) return;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT})
    if (sigismember(&pending, sig)) {
      const char* name = ::sigabbrev_np(sig);
      throw Interrupted(cat("interrupted by SIG", name ? name : "?", "; nothing was written"));
    }
}

}  // namespace thaw
