// libcuda, loaded at run time. thaw never links it: a machine without an
// NVIDIA driver runs thaw the same, and only a process that uses CUDA (or an
// image that holds GPU state) makes thaw load it. Every call into the
// driver runs under a deadline (gpu/watchdog.h).
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

namespace thaw::gpu {

struct Api;  // the resolved entry points (driver.cpp)

// A call the driver answered with an error (a CUresult), as opposed to one
// that timed out or could not be made: the caller knows the call is over.
class DriverError : public Error {
 public:
  using Error::Error;
};

enum class ProcessState { kRunning, kLocked, kCheckpointed, kFailed };
std::string to_string(ProcessState s);

struct Device {
  int ordinal = 0;
  std::string name;           // "NVIDIA H100 80GB HBM3"
  std::string uuid;           // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi prints it
  int compute_major = 0, compute_minor = 0;
  uint64_t total_bytes = 0;
};

struct UuidPair {
  std::string from, to;  // a GPU of the image -> the GPU of this machine that replaces it
};

// The oldest driver API with the checkpoint calls (CUDA 12.8, driver r570),
// and the first with GPU pairs in cuCheckpointProcessRestore (CUDA 13.0).
constexpr int kMinDriverVersion = 12080;
constexpr int kPairsDriverVersion = 13000;

class Driver {
 public:
  // Loads the library (env THAW_LIBCUDA, else libcuda.so.1), resolves the
  // entry points through cuGetProcAddress and calls cuInit(0). Each driver
  // call may take at most call_timeout_s, unless a call says otherwise.
  explicit Driver(double call_timeout_s = 30);
  ~Driver();
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  static std::string library_path();
  const std::string& path() const { return path_; }
  int version() const { return version_; }  // cuDriverGetVersion: 13000 is CUDA 13.0

  std::vector<Device> devices() const;
  // Device memory in use on all visible GPUs, by every process (total -
  // free). Needs a context: the first call retains each primary context.
  uint64_t used_bytes();
  uint64_t free_bytes(int ordinal);

  // The checkpoint API, each call on process `pid` as this process sees it.
  void lock(pid_t pid, double timeout_s);
  void checkpoint(pid_t pid, double timeout_s);
  void restore(pid_t pid, const std::vector<UuidPair>& pairs, double timeout_s);
  void unlock(pid_t pid, double timeout_s);
  ProcessState state(pid_t pid);
  // The driver's restore thread in `pid`; nullopt when the driver says the
  // process has no CUDA state to checkpoint (CUDA not initialized there).
  std::optional<pid_t> restore_thread_id(pid_t pid);

 private:
  void check(int rc, const char* call) const;
  void retain_contexts();
  std::shared_ptr<const Api> api_;
  std::string path_;
  int version_ = 0;
  double timeout_s_;
  std::vector<int> retained_;  // devices whose primary context we hold
};

std::string format_uuid(const unsigned char bytes[16]);
// Parses "GPU-…" (or bare hex with dashes) back to 16 bytes; throws if malformed.
void parse_uuid(const std::string& s, unsigned char out[16]);

}  // namespace thaw::gpu
