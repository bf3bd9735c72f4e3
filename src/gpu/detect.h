// Whether a process uses CUDA, judged from outside without loading the
// driver: a process that never loaded libcuda costs thaw two /proc reads.
#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

namespace thaw::gpu {

struct CudaUse {
  pid_t pid = 0;
  bool libcuda = false;              // libcuda.so mapped
  std::vector<std::string> devices;  // "fd 5 -> /dev/nvidia0", "mapping 7f12…-7f13… /dev/nvidiactl"
  bool any() const { return libcuda || !devices.empty(); }
};

// Scans /proc/PID/maps and /proc/PID/fd. `device_prefix` is where the
// NVIDIA device files live (a parameter so tests can use a file of theirs).
CudaUse scan_cuda_use(pid_t pid, const std::string& device_prefix = "/dev/nvidia");

// pid and all its descendants that use CUDA.
std::vector<CudaUse> scan_tree(pid_t pid);

// "1234 (python3)": how error messages name a process.
std::string describe_process(pid_t pid);

}  // namespace thaw::gpu
