#include "cli/interrupts.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>

#include "common/error.h"

namespace thaw::cli {

namespace {

// The forced exit must not wait on a cgroup for long: the user asked twice.
constexpr int kForcedCleanupMs = 2000;

std::string signal_name(int sig) {
  const char* n = ::sigabbrev_np(sig);
  return n ? cat("SIG", n) : cat("signal ", sig);
}

}  // namespace

CallInterrupts::CallInterrupts(std::string command, First first, Also also)
    : command_(std::move(command)), mode_(first), also_(std::move(also)), watcher_([this](const SignalWatcher::Signal& s) {
        on_signal(s);
      }) {}

std::string CallInterrupts::why() const {
  return cat(command_, " was interrupted (", signal_name(first_), "); its containers were stopped");
}

void CallInterrupts::on_signal(const SignalWatcher::Signal& s) {
  int expected = 0;
  bool first = first_.compare_exchange_strong(expected, s.number);
  if (also_) also_(s, !first);
  if (!first) force_exit(s.number);
  if (mode_ == First::finish) {
    std::fprintf(stderr,
                 "%s: stopping (%s): no new calls; the calls in flight finish first. Interrupt again to cancel "
                 "them and exit at once.\n",
                 command_.c_str(), signal_name(s.number).c_str());
    return;
  }
  if (mode_ == First::cancel)
    std::fprintf(stderr,
                 "%s: interrupted (%s): cancelling the calls in flight and stopping their containers; interrupt "
                 "again to exit at once.\n",
                 command_.c_str(), signal_name(s.number).c_str());
  std::lock_guard<std::mutex> lock(mu_);
  if (rt_) rt_->cancel_all(why());
}

void CallInterrupts::force_exit(int sig) {
  // Killing first, and write(2) rather than stdio: a thread blocked on a
  // full stderr holds stdio's lock, and this exit must not wait for it.
  std::string line = cat(command_, ": interrupted again (", signal_name(sig),
                         "): cancelling the calls, killing the containers and exiting now.\n");
  // Calls the first signal let run get their cancellation as answer, as far
  // as there is time to send it; never waited for here: the main thread
  // may hold mu_ while it cancels (set_runtime).
  if (mode_ == First::finish) {
    std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
    if (lock.owns_lock() && rt_) rt_->cancel_all(why());
  }
  std::shared_ptr<container::LiveContainers> live;
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live = live_;
  }
  if (live) live->kill_all(kForcedCleanupMs);
  ssize_t ignored = ::write(2, line.data(), line.size());
  (void)ignored;
  ::_exit(128 + first_.load());
}

void CallInterrupts::set_runtime(runtime::Runtime* rt) {
  std::lock_guard<std::mutex> lock(mu_);
  rt_ = rt;
  if (rt_ && first_ && mode_ != First::finish) rt_->cancel_all(why());
}

CallInterrupts::Watching CallInterrupts::watch(runtime::Runtime& rt, std::shared_ptr<container::LiveContainers> live) {
  {
    std::lock_guard<std::mutex> lock(live_mu_);
    live_ = std::move(live);
  }
  set_runtime(&rt);
  return Watching(*this);
}

}  // namespace thaw::cli
