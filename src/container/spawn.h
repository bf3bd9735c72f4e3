// Starting programs from a multi-threaded runtime. The child is created
// with clone3 (optionally in new namespaces) and does nothing but move fds
// into place and exec — only async-signal-safe calls, since another thread
// may hold a lock (malloc's) at the moment of the clone.
#pragma once
#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace thaw::container {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the program's path
  std::vector<std::string> env;   // KEY=VALUE, the whole environment
  std::map<int, int> fds;         // fd in the child -> our fd; every other fd is closed
  std::string cwd;                // empty: ours
  int clone_flags = 0;            // CLONE_NEW* for the child
  bool new_session = false;       // setsid(): its own process group
};

// A child process we started; killed (SIGKILL) and reaped on destruction
// unless it was waited for.
class Child {
 public:
  Child() = default;
  explicit Child(pid_t pid);
  Child(Child&& o) noexcept;
  Child& operator=(Child&&) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !reaped_; }
  // Waits up to timeout_ms (< 0: forever). Returns true once it exited;
  // status() is then its exit code (128+signal if killed).
  bool wait(int timeout_ms = -1);
  int status() const { return status_; }
  void kill(int sig);
  // Its process group too (it leads one when started with new_session).
  void kill_group(int sig);

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  bool reaped_ = false;
  int status_ = -1;
};

// Starts the program; throws (with the reason exec failed) if it cannot.
Child spawn(const SpawnOptions& o);

// spawn() parks fds at 100 and up. Growing a process's fd table past its
// size while other threads share it waits for an RCU grace period
// (expand_fdtable: synchronize_rcu), 17 ms of each `thaw call` on this VM;
// done once at start, while the process has one thread, it costs nothing.
// Best effort: a failure here only means the wait comes later.
void grow_fd_table_for_spawn();

// The environment of this process as KEY=VALUE strings.
std::vector<std::string> current_environment();
// Sets KEY in a KEY=VALUE list (replacing an existing entry).
void set_env(std::vector<std::string>& env, const std::string& key, const std::string& value);

}  // namespace thaw::container
