// Ctrl-C (or `timeout`'s SIGTERM) in the middle of a checkpoint must not
// kill thaw while it holds the target: a thread of it could be left inside
// an injected system call with borrowed registers, and the image directory
// half written. While a HeldSignals lives, the termination signals wait;
// the work checks for them at safe points (throw_if_interrupted) and
// unwinds like any failure, putting everything back. Once the HeldSignals
// goes, a signal still pending is delivered as usual.
#pragma once
#include <signal.h>

#include "common/error.h"

namespace thaw {

class Interrupted : public Error {
 public:
  using Error::Error;
};

class HeldSignals {
 public:
  // Blocks SIGINT, SIGTERM, SIGHUP and SIGQUIT in the calling thread, and
  // so in every thread it creates from now on.
  HeldSignals();
  ~HeldSignals();
  // Takes back the held signals that came (the work they would have
  // stopped is done): thaw then ends as its work did, not by the signal.
  void discard_pending();
  HeldSignals(const HeldSignals&) = delete;
  HeldSignals& operator=(const HeldSignals&) = delete;

 private:
  sigset_t old_;
};

// Throws Interrupted, naming the signal and what became of the work
// (`outcome`), if one of them is pending.
void throw_if_interrupted(const char* outcome = "nothing was written");

}  // namespace thaw
