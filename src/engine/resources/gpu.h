// gpu.cpp: a CUDA process's device state. At checkpoint the driver moves it
// into the process's own host memory (before the CPU checkpoint, while the
// process runs); at restore it moves it back (after the CPU restore, while
// the application's threads are still held). A process that does not use
// CUDA costs a scan of /proc/PID/{maps,fd} and nothing else.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "image/schema.h"
#include "proc/ptrace.h"

namespace thaw::gpu {
class Driver;
}

namespace thaw::engine {

// A target whose device state the driver holds in host memory. Unless told
// to keep it that way, it is put back (restore + unlock) by resume() or, on
// a failed checkpoint, by the destructor: the target is left as it was.
class GpuSuspension {
 public:
  GpuSuspension(pid_t pid, std::unique_ptr<gpu::Driver> driver);
  ~GpuSuspension();
  GpuSuspension(const GpuSuspension&) = delete;
  GpuSuspension& operator=(const GpuSuspension&) = delete;

  gpu::Driver& driver() { return *driver_; }
  // Where the checkpoint's GPU time went ("driver load 310 ms, lock 2 ms, ...").
  std::string& detail() { return detail_; }
  // The target dies with the checkpoint: nothing to put back.
  void keep_checkpointed() { done_ = true; }
  // Restore + unlock, then RUNNING is checked; throws if not.
  void resume();

 private:
  pid_t pid_;
  std::unique_ptr<gpu::Driver> driver_;
  bool done_ = false;
  std::string detail_;
};

// Checkpoint side: nullptr when `pid` has no CUDA state to save; otherwise
// its GPU state is CHECKPOINTED and recorded in m.gpu.
std::unique_ptr<GpuSuspension> suspend_gpu(pid_t pid, image::Manifest& m);

// Restore side, for an image with m.gpu. Made as soon as the restored
// process exists: loading libcuda, cuInit and the free-memory check (which
// needs a context of our own) take hundreds of milliseconds, so they run on
// a thread of their own while the restorer brings the memory back.
class GpuRestore {
 public:
  explicit GpuRestore(const image::Manifest& m);
  // Waits for any preparation still running. Each driver call in it has a
  // deadline of its own (THAW_GPU_CALL_TIMEOUT, 30 s), so with a driver that
  // hangs this can take a few of those.
  ~GpuRestore() = default;
  GpuRestore(const GpuRestore&) = delete;
  GpuRestore& operator=(const GpuRestore&) = delete;

  // The process's threads are held by `s` with their registers loaded. Only
  // the driver's restore thread runs while the GPU state comes back; on
  // return every thread is stopped again. On failure the process is killed
  // when `s` lets it go.
  void resume(proc::Seizure& s);
  // Until the preparation (driver load, checks) is over, failed or not.
  void wait_prepared() const { prepared_.wait(); }
  double total_ms() const { return total_ms_; }
  // "waited 0 ms for driver load 412 ms and checks 95 ms; cuCheckpointProcessRestore 180 ms, unlock 1 ms"
  const std::string& detail() const { return detail_; }

 private:
  struct Prepared;
  const image::Manifest& m_;
  std::future<std::shared_ptr<Prepared>> prepared_;
  double total_ms_ = 0;
  std::string detail_;
};

}  // namespace thaw::engine
