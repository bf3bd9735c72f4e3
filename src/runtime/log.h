// The runtime's log: whole lines to one fd (stderr of `thaw run`, `deploy`,
// `serve`, `call`), from any thread, never interleaved mid-line.
#pragma once
#include <mutex>
#include <string>

namespace thaw::runtime {

class Log {
 public:
  explicit Log(int fd = 2) : fd_(fd) {}
  int fd() const { return fd_; }
  void line(const std::string& text);

 private:
  int fd_;
  std::mutex mu_;
};

// "45 ms" below a second, "1.23 s" above: the form the protocol's log
// lines use.
std::string format_duration(double seconds);

// The current UTC time as 2026-11-27T10:43:12Z (store records).
std::string utc_now_iso();

}  // namespace thaw::runtime
