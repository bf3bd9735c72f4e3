// Ctrl-C (SIGINT; SIGTERM and SIGHUP alike) for the commands that make
// calls and wait for them, `thaw run` and `thaw call`. The first one
// cancels every call in flight and stops the containers running or
// starting for them (Runtime::cancel_all), so that the command ends within
// seconds, with status 128+signal; a second one ends the process at once,
// after killing its containers (container/live.h), whatever it was doing.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "cli/session.h"
#include "container/live.h"
#include "runtime/runtime.h"

namespace thaw::cli {

class CallInterrupts {
 public:
  // `also` runs first for every signal, with forced=true for the one that
  // ends the process (`thaw run` passes them on to its entrypoint).
  // Like SignalWatcher, must be created before any other thread.
  explicit CallInterrupts(std::string command, std::function<void(const SignalWatcher::Signal&, bool forced)> also = {});

  // While the returned object lives, a signal cancels rt's calls (at once
  // if one came before). It must end before rt does.
  class Watching {
   public:
    explicit Watching(CallInterrupts& i) : i_(i) {}
    ~Watching() { i_.set_runtime(nullptr); }
    Watching(const Watching&) = delete;
    Watching& operator=(const Watching&) = delete;

   private:
    CallInterrupts& i_;
  };
  // `live`: the containers rt launches (runtime::Context::live), which a
  // second signal kills.
  [[nodiscard]] Watching watch(runtime::Runtime& rt, std::shared_ptr<container::LiveContainers> live);

  // The first signal that came, or 0.
  int signal() const { return first_; }
  // What the command exits with: 128+signal once interrupted.
  int exit_status(int otherwise) const { return first_ ? 128 + first_ : otherwise; }

 private:
  void on_signal(const SignalWatcher::Signal& s);
  void set_runtime(runtime::Runtime* rt);
  std::string why() const;

  const std::string command_;
  const std::function<void(const SignalWatcher::Signal&, bool)> also_;
  std::atomic<int> first_{0};
  std::mutex mu_;
  runtime::Runtime* rt_ = nullptr;  // under mu_
  std::mutex live_mu_;              // apart from mu_: the second signal may come while the first holds it
  std::shared_ptr<container::LiveContainers> live_;  // under live_mu_
  SignalWatcher watcher_;           // last: its thread uses the members above
};

}  // namespace thaw::cli
