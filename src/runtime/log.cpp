#include "runtime/log.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace thaw::runtime {

void Log::line(const std::string& text) {
  std::string s = text + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t off = 0; off < s.size();) {
    ssize_t n = ::write(fd_, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // nowhere to log to; the runtime goes on regardless
    off += n;
  }
}

std::string format_duration(double seconds) {
  char buf[64];
  if (seconds < 1.0)
    std::snprintf(buf, sizeof buf, "%.0f ms", std::round(seconds * 1000));
  else
    std::snprintf(buf, sizeof buf, "%.2f s", seconds);
  return buf;
}

std::string utc_now_iso() {
  char buf[32];
  std::time_t t = std::time(nullptr);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

}  // namespace thaw::runtime
