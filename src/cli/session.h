// What every runtime subcommand sets up: the log (stderr), the context and
// a Runtime, plus the signal handling that lets serve/run stop cleanly.
#pragma once
#include <signal.h>

#include <functional>
#include <memory>
#include <thread>

#include "runtime/context.h"
#include "runtime/runtime.h"

namespace thaw::cli {

struct Session {
  Session();
  runtime::Log log{2};
  runtime::Context ctx;
  std::unique_ptr<runtime::Runtime> rt;
};

// Blocks SIGINT, SIGTERM, SIGHUP (and SIGUSR2) in this thread (and the threads it
// starts after) and calls on_signal from a watcher thread when one comes.
// Must be created before any other thread.
class SignalWatcher {
 public:
  struct Signal {
    int number;
    // Sent by the kernel: a terminal's Ctrl-C, which reached the rest of
    // the foreground process group too (not a kill() from a process).
    bool from_terminal;
  };
  explicit SignalWatcher(std::function<void(int)> on_signal)
      : SignalWatcher([f = std::move(on_signal)](const Signal& s) { f(s.number); }) {}
  explicit SignalWatcher(std::function<void(const Signal&)> on_signal);
  ~SignalWatcher();

 private:
  sigset_t set_;
  std::thread thread_;
};

}  // namespace thaw::cli
