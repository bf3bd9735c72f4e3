#include "container/log_pump.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "common/error.h"

namespace thaw::container {

LogPump::LogPump(int log_fd) : log_fd_(log_fd) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail_errno("create a log pipe");
  read_.reset(p[0]);
  write_.reset(p[1]);
  thread_ = std::thread([this] { run(); });
}

LogPump::~LogPump() {
  write_.reset();
  stop_ = true;
  thread_.join();
}

void LogPump::run() {
  char buf[16384];
  for (;;) {
    // After stop, whatever is still in the pipe is drained without waiting
    // for writers (a container that is gone) to close their ends.
    struct pollfd p{read_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, stop_ ? 0 : 100);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      if (stop_) return;
      continue;
    }
    ssize_t n = ::read(read_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(log_fd_, buf + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) break;  // the log is gone; keep draining the pipe
      off += w;
    }
  }
}

}  // namespace thaw::container
