// Copies a container's output (its stdout and stderr share one pipe) to the
// runtime's log as it comes. A pipe, not the log fd itself, so that the
// worker's fds 1 and 2 are always "external" pipes to the engine — whatever
// the runtime's stderr is (a terminal, a file, a test's pipe) — and can be
// handed to a restored worker afresh. A deployed app's containers also
// append their output to its log file ($THAW_HOME/logs/<app>.log), which
// `thaw app logs` reads.
#pragma once
#include <atomic>
#include <string>
#include <thread>

#include "common/unique_fd.h"

namespace thaw::container {

class LogPump {
 public:
  // Creates the pipe; write_end() goes to the container. Output also goes
  // to `copy` when it is open.
  explicit LogPump(int log_fd, UniqueFd copy = UniqueFd());
  LogPump(const LogPump&) = delete;
  LogPump& operator=(const LogPump&) = delete;
  // Drains what is left and stops.
  ~LogPump();

  int write_end() const { return write_.get(); }
  // Our copy of the write end is only needed to start the container.
  void close_write_end() { write_.reset(); }

 private:
  void run();
  int log_fd_;
  UniqueFd copy_;
  UniqueFd read_, write_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Opens an app's log file for appending (its directory made; a file past
// 64 MiB is first moved to <path>.1, replacing the one before). Returns an
// empty fd when it cannot: an app log never stops a container.
UniqueFd open_app_log(const std::string& path);

}  // namespace thaw::container
