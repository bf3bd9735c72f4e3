// A copy-on-write copy of a stopped process's memory, so that a checkpoint
// can let the process run on while its pages are read.
//
// The copy is a child forked inside the target by an injected clone() with
// no exit signal, attached to thaw the moment it exists and never run: its
// fds are closed at once, and when thaw is done it is killed and the target
// is made to reap it (its main thread stopped a moment), so the target sees
// no SIGCHLD and wait() without __WALL never sees the child. Its memory is
// the target's as it was at the fork, except mappings marked MADV_DONTFORK
// (absent) or MADV_WIPEONFORK (zero): read those from the target before
// releasing it.
//
// What it costs the target: every page it writes while the copy lives is
// copied first (huge pages are split), and a process waiting with __WALL
// could see the child. Should thaw be killed while the copy lives, the copy
// ends (PTRACE_O_EXITKILL, or before thaw set that, by the exit_group its
// own stack returns into) but nobody reaps it: the target keeps a zombie
// child. The copy is named kCopyName once thaw holds it with EXITKILL, and
// a later checkpoint reaps such a zombie (reap_leftovers); one left from
// the moment between the fork and that is refused as a child process.
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
  // null and says why in `why` (seccomp filter, no memory, pid limit, a
  // kernel without close_range...); the target is then as before.
  static std::unique_ptr<CowFork> make(Seizure& s, std::string* why);
  // Kills the copy and has the target reap it; returns how long the
  // target's main thread was stopped for that (0 while it is still held).
  // The destructor does it if not done (and swallows errors).
  double finish();
  ~CowFork();
  CowFork(const CowFork&) = delete;
  CowFork& operator=(const CowFork&) = delete;

  pid_t pid() const { return pid_; }  // in thaw's pid namespace

  // Reaps, through `s` (which holds the target), the zombies of copies a
  // killed thaw left; returns how many.
  static int reap_leftovers(Seizure& s);
  static constexpr char kCopyName[] = "thaw-cow-copy";

 private:
  CowFork(Seizure& s, pid_t pid, pid_t ns_pid) : seizure_(s), pid_(pid), ns_pid_(ns_pid) {}
  Seizure& seizure_;
  pid_t pid_;     // as thaw sees it
  pid_t ns_pid_;  // as the target sees it (what it must wait for)
  bool finished_ = false;
};

}  // namespace thaw::proc
