// A copy-on-write copy of a stopped process's memory, so that a checkpoint
// can let the process run on while its pages are read.
//
// The copy is a child forked inside the target by an injected clone() with
// no exit signal, attached to thaw the moment it exists and never run: its
// fds are closed at once, and when thaw is done it is killed and the target
// is made to reap it (a moment's stop), so the target never sees it: no
// SIGCHLD, and wait() without __WALL ignores such "clone" children. Its
// memory is the target's as it was at the fork, except mappings marked
// MADV_DONTFORK (absent) or MADV_WIPEONFORK (zero): read those from the
// target before releasing it.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "proc/ptrace.h"

namespace thaw::proc {

class CowFork {
 public:
  // Forks a copy of `s`'s process through its leader thread, or returns
  // null and says why in `why` (seccomp filter, no memory, pid limit...);
  // the target is then as before.
  static std::unique_ptr<CowFork> make(Seizure& s, std::string* why);
  ~CowFork();
  CowFork(const CowFork&) = delete;
  CowFork& operator=(const CowFork&) = delete;

  pid_t pid() const { return pid_; }  // in thaw's pid namespace

 private:
  CowFork(Seizure& s, pid_t pid, pid_t ns_pid) : seizure_(s), pid_(pid), ns_pid_(ns_pid) {}
  void reap_in_target();
  Seizure& seizure_;
  pid_t pid_;     // as thaw sees it
  pid_t ns_pid_;  // as the target sees it (what it must wait for)
};

}  // namespace thaw::proc
