// Copies a container's output (its stdout and stderr share one pipe) to the
// runtime's log as it comes. A pipe, not the log fd itself, so that the
// worker's fds 1 and 2 are always "external" pipes to the engine — whatever
// the runtime's stderr is (a terminal, a file, a test's pipe) — and can be
// handed to a restored worker afresh.
#pragma once
#include <atomic>
#include <thread>

#include "common/unique_fd.h"

namespace thaw::container {

class LogPump {
 public:
  // Creates the pipe; write_end() goes to the container.
  explicit LogPump(int log_fd);
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
  UniqueFd read_, write_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace thaw::container
