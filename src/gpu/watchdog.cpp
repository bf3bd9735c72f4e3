#include "gpu/watchdog.h"

#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

#include "common/error.h"

namespace thaw::gpu {

namespace {
// Shared by the caller and the worker, so that whichever lets go last frees it.
struct Outcome {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::exception_ptr error;
};
}  // namespace

std::string format_seconds(double s) {
  char buf[32];
  if (s < 1) std::snprintf(buf, sizeof buf, "%.0f ms", s * 1000);
  else if (s == static_cast<double>(static_cast<long long>(s))) std::snprintf(buf, sizeof buf, "%.0f s", s);
  else std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

void run_with_deadline(const std::string& what, double timeout_s, std::function<void()> fn) {
  auto out = std::make_shared<Outcome>();
  std::thread worker([out, fn = std::move(fn)] {
    std::exception_ptr err;
    try {
      fn();
    } catch (...) {
      err = std::current_exception();
    }
    std::lock_guard<std::mutex> g(out->mu);
    out->error = err;
    out->done = true;
    out->cv.notify_all();
  });
  std::unique_lock<std::mutex> lk(out->mu);
  bool finished = out->cv.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return out->done; });
  lk.unlock();
  if (!finished) {
    // A thread blocked inside the driver cannot be cancelled safely; leave
    // it. thaw's commands exit soon after an error, which ends it.
    worker.detach();
    fail(what, " timed out after ", format_seconds(timeout_s));
  }
  worker.join();
  if (out->error) std::rethrow_exception(out->error);
}

}  // namespace thaw::gpu
