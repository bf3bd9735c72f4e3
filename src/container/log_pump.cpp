#include "container/log_pump.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <sys/stat.h>

#include <cerrno>

#include "common/error.h"
#include "container/fsutil.h"

namespace thaw::container {

namespace {

void write_to(int fd, const char* buf, ssize_t n) {
  for (ssize_t off = 0; off < n;) {
    ssize_t w = ::write(fd, buf + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return;  // the log is gone; keep draining the pipe
    off += w;
  }
}

}  // namespace

UniqueFd open_app_log(const std::string& path, off_t max_bytes) {
  try {
    mkdir_p(path.substr(0, path.rfind('/')), 0750);
  } catch (const std::exception&) {
    return UniqueFd();
  }
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && st.st_size > max_bytes) ::rename(path.c_str(), (path + ".1").c_str());
  return UniqueFd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640));
}

LogPump::LogPump(int log_fd, std::string app_log, off_t max_app_log_bytes)
    : log_fd_(log_fd), app_log_(std::move(app_log)), max_app_log_bytes_(max_app_log_bytes) {
  if (!app_log_.empty()) copy_ = open_app_log(app_log_, max_app_log_bytes_);
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
    write_to(log_fd_, buf, n);
    append_to_app_log(buf, n);
  }
}

void LogPump::append_to_app_log(const char* buf, ssize_t n) {
  if (app_log_.empty()) return;
  struct stat mine, there;
  bool current = copy_ && ::fstat(copy_.get(), &mine) == 0 && ::stat(app_log_.c_str(), &there) == 0 &&
                 mine.st_ino == there.st_ino && mine.st_dev == there.st_dev;
  if (!current || mine.st_size > max_app_log_bytes_) copy_ = open_app_log(app_log_, max_app_log_bytes_);
  if (copy_) write_to(copy_.get(), buf, n);
}

}  // namespace thaw::container
