// Errors carry the context they passed through: each layer prefixes what it
// was doing, so a failure reads "restore: fd 7 (/data/x.bin): file changed".
#pragma once
#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

namespace thaw {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

// Like fail(), with strerror(errno) appended; errno is read first so the
// formatting cannot clobber it.
template <typename... Args>
[[noreturn]] void fail_errno(const Args&... args) {
  int e = errno;
  throw Error(cat(args..., ": ", std::strerror(e)));
}

// Runs fn; if it throws, rethrows with `context: ` in front of the message
// (an empty context adds nothing).
template <typename Fn>
auto with_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    if (context.empty()) throw;
    throw Error(context + ": " + e.what());
  }
}

}  // namespace thaw
