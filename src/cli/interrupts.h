// Ctrl-C (SIGINT; SIGTERM and SIGHUP alike) for the commands that run
// calls: `thaw run`, `thaw call` and `thaw deploy` wait for theirs, `thaw
// serve` answers others'. The first signal does what the command chose
// (First): cancel every call in flight and stop the containers running or
// starting for them (Runtime::cancel_all), so that the command ends within
// seconds with status 128+signal, or let them finish. A second one ends the
// process at once, after cancelling what is left and killing its
// containers (container/live.h), whatever it was doing.
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
  enum class First {
    cancel,          // cancel the calls in flight, and say so
    finish,          // say that the calls in flight finish first (the command stops taking new ones in `also`)
    cancel_quietly,  // cancel them without a word: the SDK's private `thaw serve`, whose script has ended
  };
  using Also = std::function<void(const SignalWatcher::Signal&, bool forced)>;

  // `also` runs first for every signal, with forced=true for the one that
  // ends the process (`thaw run` passes them on to its entrypoint, `thaw
  // serve` stops listening).
  // Like SignalWatcher, must be created before any other thread.
  explicit CallInterrupts(std::string command, Also also = {}) : CallInterrupts(std::move(command), First::cancel, std::move(also)) {}
  CallInterrupts(std::string command, First first, Also also);

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
  [[noreturn]] void force_exit(int sig);
  void set_runtime(runtime::Runtime* rt);
  std::string why() const;

  const std::string command_;
  const First mode_;
  const Also also_;
  std::atomic<int> first_{0};
  std::mutex mu_;
  runtime::Runtime* rt_ = nullptr;  // under mu_
  std::mutex live_mu_;              // apart from mu_: the second signal may come while the first holds it
  std::shared_ptr<container::LiveContainers> live_;  // under live_mu_
  SignalWatcher watcher_;           // last: its thread uses the members above
};

}  // namespace thaw::cli
