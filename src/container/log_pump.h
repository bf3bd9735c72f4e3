// Copies a container's output (its stdout and stderr share one pipe) to the
// runtime's log as it comes. A pipe, not the log fd itself, so that the
// worker's fds 1 and 2 are always "external" pipes to the engine — whatever
// the runtime's stderr is (a terminal, a file, a test's pipe) — and can be
// handed to a restored worker afresh. A deployed app's containers also
// append their output to its log file ($THAW_HOME/logs/<app>.log), which
// `thaw app logs` reads.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <string>
#include <thread>

#include "common/unique_fd.h"

namespace thaw::container {

// An app log past this is moved aside (to <path>.1) and started anew.
inline constexpr off_t kMaxAppLogBytes = 64 << 20;

class LogPump {
 public:
  // Creates the pipe; write_end() goes to the container. Output is also
  // appended to the file `app_log` unless that is empty (open_app_log).
  explicit LogPump(int log_fd, std::string app_log = "", off_t max_app_log_bytes = kMaxAppLogBytes);
  LogPump(const LogPump&) = delete;
  LogPump& operator=(const LogPump&) = delete;
  // Drains what is left and stops.
  ~LogPump();

  int write_end() const { return write_.get(); }
  // Our copy of the write end is only needed to start the container.
  void close_write_end() { write_.reset(); }

 private:
  void run();
  // Appends to the app log, opened again first when it was rotated (by
  // another container, or by us once it grew past the limit): a container
  // that runs for days must not write on into the rotated file for ever.
  void append_to_app_log(const char* buf, ssize_t n);
  int log_fd_;
  std::string app_log_;
  off_t max_app_log_bytes_;
  UniqueFd copy_;
  UniqueFd read_, write_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Opens an app's log file for appending (its directory made; a file past
// max_bytes is first moved to <path>.1, replacing the one before). Returns
// an empty fd when it cannot: an app log never stops a container.
UniqueFd open_app_log(const std::string& path, off_t max_bytes = kMaxAppLogBytes);

}  // namespace thaw::container
