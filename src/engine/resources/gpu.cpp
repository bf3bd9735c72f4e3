#include "engine/resources/gpu.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>

#include "common/error.h"
#include "common/io.h"
#include "common/timing.h"
#include "common/unique_fd.h"
#include "gpu/detect.h"
#include "gpu/driver.h"
#include "gpu/preflight.h"
#include "engine/resources/resources.h"
#include "proc/procfs.h"

namespace thaw::engine {

namespace {

// How long each driver call may take. The copies scale with device memory;
// the environment overrides them (tests, and hosts slower than planned for).
struct Timeouts {
  double lock_s = 10, call_s = 30, copy_base_s = 60, copy_per_gib_s = 4;
  static Timeouts from_env() {
    Timeouts t;
    auto num = [](const char* name, double& v) {
      if (const char* s = std::getenv(name); s && *s) v = std::atof(s);
    };
    num("THAW_GPU_LOCK_TIMEOUT", t.lock_s);
    num("THAW_GPU_CALL_TIMEOUT", t.call_s);
    num("THAW_GPU_COPY_TIMEOUT", t.copy_base_s);
    return t;
  }
  double copy_s(uint64_t bytes) const { return copy_base_s + copy_per_gib_s * (bytes / double(1ull << 30)); }
};

pid_t ns_tid(pid_t pid, pid_t tid) {
  pid_t id = innermost_id(proc::read_status(cat("/proc/", pid, "/task/", tid))["NSpid"]);
  return id ? id : tid;
}

void expect_state(gpu::Driver& d, pid_t pid, gpu::ProcessState want, const char* after) {
  auto st = d.state(pid);
  if (st != want)
    fail("after ", after, " the driver reports the process ", gpu::to_string(st), ", expected ",
         gpu::to_string(want));
}

// "fd 7 -> /dev/nvidia0", "mapping … /dev/nvidia3": a GPU itself, not only
// the control or UVM device.
bool holds_gpu_device(const std::vector<std::string>& devices) {
  static const std::string kGpu = "/dev/nvidia";
  return std::any_of(devices.begin(), devices.end(), [](const std::string& d) {
    auto at = d.find(kGpu);
    return at != std::string::npos && at + kGpu.size() < d.size() &&
           std::isdigit(static_cast<unsigned char>(d[at + kGpu.size()]));
  });
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// One thread of a held process let run (PTRACE_CONT) while the others stay
// stopped; stop() (or the destructor) puts it back in a ptrace stop, so the
// Seizure can detach it like the rest.
class RunningThread {
 public:
  explicit RunningThread(pid_t tid) : tid_(tid) {
    if (::ptrace(PTRACE_CONT, tid_, nullptr, 0) != 0) fail_errno("let the driver's restore thread ", tid_, " run");
    running_ = true;
  }
  ~RunningThread() {
    try {
      stop();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "thaw: %s\n", e.what());
    }
  }
  void stop() {
    if (!running_) return;
    running_ = false;
    if (::ptrace(PTRACE_INTERRUPT, tid_, nullptr, 0) != 0) fail_errno("stop the driver's restore thread ", tid_);
    for (;;) {
      int status;
      if (::waitpid(tid_, &status, __WALL) < 0) {
        if (errno == EINTR) continue;
        fail_errno("wait for the driver's restore thread ", tid_);
      }
      if (!WIFSTOPPED(status)) fail("the driver's restore thread ", tid_, " died");
      int sig = WSTOPSIG(status);
      if ((status >> 16) == PTRACE_EVENT_STOP) return;
      // A signal arrived while it ran: it stays stopped here (a ptrace
      // stop all the same) and gets the signal again once released.
      if (sig != SIGTRAP) ::syscall(SYS_tgkill, tgid_of(tid_), tid_, sig);
      return;
    }
  }

 private:
  static pid_t tgid_of(pid_t tid) {
    auto st = proc::read_status(cat("/proc/", tid));
    return std::atoi(st["Tgid"].c_str());
  }
  pid_t tid_;
  bool running_ = false;
};


}  // namespace

GpuSuspension::GpuSuspension(pid_t pid, std::unique_ptr<gpu::Driver> driver)
    : pid_(pid), driver_(std::move(driver)) {}

GpuSuspension::~GpuSuspension() {
  if (done_) return;
  try {
    resume();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "thaw: gpu checkpoint: pid %d: could not put the GPU state back: %s\n", pid_, e.what());
  }
}

void GpuSuspension::resume() {
  if (done_) return;
  done_ = true;
  with_context(cat("gpu resume: pid ", pid_), [&] {
    auto t = Timeouts::from_env();
    auto st = driver_->state(pid_);
    if (st == gpu::ProcessState::kCheckpointed) {
      driver_->restore(pid_, {}, t.copy_s(driver_->used_bytes()));
      st = driver_->state(pid_);
    }
    if (st == gpu::ProcessState::kLocked) driver_->unlock(pid_, t.call_s);
    expect_state(*driver_, pid_, gpu::ProcessState::kRunning, "restore and unlock");
  });
}

std::unique_ptr<GpuSuspension> suspend_gpu(pid_t pid, image::Manifest& m) {
  auto users = gpu::scan_tree(pid);
  if (users.empty()) return nullptr;
  return with_context(cat("gpu checkpoint: pid ", pid), [&]() -> std::unique_ptr<GpuSuspension> {
    if (users.size() > 1) {
      std::vector<std::string> names;
      for (const auto& u : users) names.push_back(gpu::describe_process(u.pid));
      fail("more than one process of the tree uses CUDA (", join(names),
           "); a GPU snapshot holds one CUDA process (multi-process CUDA is not supported)");
    }
    const auto& use = users.front();
    if (use.pid != pid)
      fail("its child ", gpu::describe_process(use.pid), " uses CUDA; only the checkpointed process itself may");
    auto t = Timeouts::from_env();
    auto t_open = std::chrono::steady_clock::now();
    std::unique_ptr<gpu::Driver> d;
    try {
      d = std::make_unique<gpu::Driver>(t.call_s);
    } catch (const Error& e) {
      if (!use.devices.empty()) fail("it has NVIDIA devices open (", join(use.devices), ") but ", e.what());
      // libcuda loaded where no driver or GPU is: nothing on a device to save.
      std::fprintf(stderr, "thaw: note: pid %d has libcuda loaded, but %s; checkpointing its CPU state only\n", pid,
                   e.what());
      return nullptr;
    }
    auto restore_tid = d->restore_thread_id(pid);
    if (!restore_tid) {
      if (!use.devices.empty())
        fail("it has NVIDIA devices open (", join(use.devices), ") but the driver reports no CUDA state to ",
             "checkpoint (cuCheckpointProcessGetRestoreThreadId failed)");
      std::fprintf(stderr, "thaw: note: pid %d has libcuda loaded but no CUDA state on a GPU; checkpointing its CPU "
                   "state only\n", pid);
      // Seen on an H100 (driver 580, torch 2.11): such a process crashed in
      // libcuda at its first CUDA call after the restore, while one whose
      // GPU was hidden when it loaded libcuda (the runtime's CPU snapshots)
      // used the GPU after the restore.
      if (gpu::environment_value(pid, "CUDA_VISIBLE_DEVICES").value_or("x") != "")
        std::fprintf(stderr, "thaw: warning: pid %d loaded libcuda with a GPU visible; after a restore its first "
                     "CUDA call may crash (seen with driver 580). Start it with CUDA_VISIBLE_DEVICES= (empty) and "
                     "set it before CUDA's first use after the restore, or let CUDA initialize and take a GPU "
                     "snapshot\n", pid);
      return nullptr;
    }
    auto devices = d->devices();
    gpu::check_no_mps(pid);
    gpu::check_no_mig(pid, devices);
    if (devices.empty()) fail("the CUDA driver sees no GPU");
    auto st = d->state(pid);
    if (st != gpu::ProcessState::kRunning)
      fail("its CUDA state is ", gpu::to_string(st), ", expected RUNNING (another checkpoint under way?)");
    m.gpu.model = devices.front().name;
    m.gpu.uuid = devices.front().uuid;
    m.gpu.driver_version = d->version();
    m.gpu.display_driver = gpu::display_driver_version();
    m.gpu.restore_tid = ns_tid(pid, *restore_tid);
    uint64_t before = d->used_bytes();
    double open_ms = ms_since(t_open);
    // From here on a failure puts the target back as it was.
    auto s = std::make_unique<GpuSuspension>(pid, std::move(d));
    auto t_lock = std::chrono::steady_clock::now();
    try {
      s->driver().lock(pid, t.lock_s);
    } catch (const gpu::DriverError& e) {
      // The driver refused: nothing was locked, so there is nothing to put
      // back (on the H100 every later query of such a process failed too).
      // Our own deadline passing is no such proof: the destructor checks.
      s->keep_checkpointed();
      if (!holds_gpu_device(use.devices))
        fail(e.what(), ": the process initialized CUDA without a GPU (it holds ",
             use.devices.empty() ? std::string("no NVIDIA device file") : join(use.devices) + " but no /dev/nvidiaN",
             "; was CUDA_VISIBLE_DEVICES empty?). Give it the GPU before it initializes CUDA, or ",
             "initialize CUDA only after the restore");
      throw;
    }
    expect_state(s->driver(), pid, gpu::ProcessState::kLocked, "cuCheckpointProcessLock");
    double lock_ms = ms_since(t_lock);
    auto t_copy = std::chrono::steady_clock::now();
    s->driver().checkpoint(pid, t.copy_s(before));
    expect_state(s->driver(), pid, gpu::ProcessState::kCheckpointed, "cuCheckpointProcessCheckpoint");
    double copy_ms = ms_since(t_copy);
    uint64_t after = s->driver().used_bytes();
    m.gpu.memory_bytes = before > after ? before - after : 0;
    char buf[160];
    std::snprintf(buf, sizeof buf, "driver load and checks %.0f ms, lock %.0f ms, cuCheckpointProcessCheckpoint %.0f ms",
                  open_ms, lock_ms, copy_ms);
    s->detail() = buf;
    auto left = gpu::scan_cuda_use(pid).devices;
    if (!left.empty())
      fail("it still holds NVIDIA devices after cuCheckpointProcessCheckpoint (", join(left),
           "): something in it (NVML before r570, CUPTI, a forked child) keeps them open");
    return s;
  });
}

struct GpuRestore::Prepared {
  std::unique_ptr<gpu::Driver> driver;
  gpu::RestoreTarget target;
  double open_ms = 0, check_ms = 0;
};

GpuRestore::GpuRestore(const image::Manifest& m) : m_(m) {
  // Copies, not references: the thread must not depend on who waits for it.
  auto g = m.gpu;
  prepared_ = std::async(std::launch::async, [g] {
    auto p = std::make_shared<Prepared>();
    auto t = Timeouts::from_env();
    auto t0 = std::chrono::steady_clock::now();
    try {
      p->driver = std::make_unique<gpu::Driver>(t.call_s);
    } catch (const Error& e) {
      fail("the image holds GPU state (", g.model, ", ", gpu::gib(g.memory_bytes), ") and this machine has no ",
           "usable CUDA driver: ", e.what());
    }
    p->open_ms = ms_since(t0);
    auto t1 = std::chrono::steady_clock::now();
    auto devices = p->driver->devices();
    gpu::check_no_mps(0);
    gpu::check_no_mig(0, devices);
    p->target = gpu::pick_restore_device(devices, g.model, g.uuid, g.memory_bytes,
                                         [&](int ordinal) { return p->driver->free_bytes(ordinal); });
    p->check_ms = ms_since(t1);
    return p;
  });
}

void GpuRestore::resume(proc::Seizure& s) {
  pid_t pid = s.pid();
  auto t0 = std::chrono::steady_clock::now();
  // A half-restored process must not run: on failure it dies still held.
  struct KillUnlessDone {
    proc::Seizure& s;
    bool done = false;
    ~KillUnlessDone() {
      if (!done) s.kill_on_release();
    }
  } guard{s};
  with_context(cat("gpu restore: pid ", pid), [&] {
    const auto& g = m_.gpu;
    auto t = Timeouts::from_env();
    auto p = prepared_.get();
    double wait_ms = ms_since(t0);
    gpu::Driver& d = *p->driver;
    proc::Tracee* rt = nullptr;
    for (auto& th : s.threads())
      if (ns_tid(pid, th.tid) == g.restore_tid) rt = &th;
    if (!rt) fail("the driver's restore thread (tid ", g.restore_tid, " in the image) is not in the process");
    // The application's threads stay stopped: one touching device memory
    // before it is back would crash. The driver does its work on this one,
    // and every checkpoint call, the state query included, waits for it
    // (with it stopped too, cuCheckpointProcessGetState hung on the H100).
    RunningThread running(rt->tid);
    expect_state(d, pid, gpu::ProcessState::kCheckpointed, "the CPU restore");
    // Checked again: the first look was taken a memory restore ago, and
    // another restore may have taken the memory since. Running out of it
    // during the restore wedges the process for good (cuda-checkpoint #44).
    uint64_t free_now = d.free_bytes(p->target.device.ordinal);
    if (free_now < g.memory_bytes)
      fail("the image needs ", gpu::gib(g.memory_bytes), " of free GPU memory and GPU ",
           p->target.device.ordinal, " (", p->target.device.uuid, ") now has ", gpu::gib(free_now));
    auto t_copy = std::chrono::steady_clock::now();
    d.restore(pid, p->target.pairs, t.copy_s(g.memory_bytes));
    expect_state(d, pid, gpu::ProcessState::kLocked, "cuCheckpointProcessRestore");
    double copy_ms = ms_since(t_copy);
    auto t_unlock = std::chrono::steady_clock::now();
    d.unlock(pid, t.call_s);
    expect_state(d, pid, gpu::ProcessState::kRunning, "cuCheckpointProcessUnlock");
    double unlock_ms = ms_since(t_unlock);
    running.stop();
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "waited %.0f ms for driver load %.0f ms and checks %.0f ms (begun with the memory); "
                  "cuCheckpointProcessRestore %.0f ms, unlock %.0f ms",
                  wait_ms, p->open_ms, p->check_ms, copy_ms, unlock_ms);
    detail_ = buf;
  });
  guard.done = true;
  total_ms_ = ms_since(t0);
}

}  // namespace thaw::engine
