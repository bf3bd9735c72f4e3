// Runs a call that may never return (the CUDA checkpoint calls are known to
// hang: cuda-checkpoint issues #17, #30, #45) with a deadline. The call runs
// on its own thread; when the deadline passes the caller gets an error and
// the thread is abandoned, still blocked where it is. Everything the call
// touches must therefore be owned by the call itself (captured by value or
// through shared_ptr), never borrowed from the caller's stack.
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace thaw::gpu {

// Runs fn with a deadline of timeout_s seconds; rethrows what fn throws.
// On timeout throws "<what> timed out after N s".
void run_with_deadline(const std::string& what, double timeout_s, std::function<void()> fn);

template <typename F>
auto call_with_deadline(const std::string& what, double timeout_s, F fn) -> decltype(fn()) {
  using R = decltype(fn());
  auto slot = std::make_shared<std::optional<R>>();
  run_with_deadline(what, timeout_s, [slot, fn] { slot->emplace(fn()); });
  return std::move(**slot);
}

// "10 s", "1.5 s", "250 ms": how the timeout reads in an error message.
std::string format_seconds(double s);

}  // namespace thaw::gpu
