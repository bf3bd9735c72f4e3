// Checks made before touching a process's GPU state, each failing with a
// message that says what to change. Only what libcuda and /proc tell:
// NVML is not used.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gpu/driver.h"

namespace thaw::gpu {

// The MPS control pipe (CUDA_MPS_PIPE_DIRECTORY of `pid`, or the default
// /tmp/nvidia-mps) exists: the checkpoint API does not support MPS clients.
void check_no_mps(pid_t pid);
// CUDA_VISIBLE_DEVICES of `pid` names a MIG instance ("MIG-…"), or a device
// UUID does: MIG is not supported either.
void check_no_mig(pid_t pid, const std::vector<Device>& devices);
// The value of `name` in the environment `pid` started with (pid 0: this
// process as it is now); nullopt when unset.
std::optional<std::string> environment_value(pid_t pid, const std::string& name);
// "580.65.06", from /proc/driver/nvidia/version; "" when not there.
std::string display_driver_version();
// The version in that file's text: the first word after "Kernel Module"
// that is made of digits and dots ("NVIDIA UNIX Open Kernel Module for
// x86_64  580.159.04 ..." has words before it); "" when there is none.
std::string driver_version_in(const std::string& proc_version_text);

struct RestoreTarget {
  Device device;
  std::vector<UuidPair> pairs;  // empty when the image's GPU is right here
};
// The GPU to restore an image's state onto: the image's own GPU when this
// machine has it, else one of the same model, which must have `need_bytes`
// free (free_bytes(ordinal) tells). Throws naming what is missing.
RestoreTarget pick_restore_device(const std::vector<Device>& devices, const std::string& model,
                                  const std::string& uuid, uint64_t need_bytes,
                                  const std::function<uint64_t(int)>& free_bytes);

std::string gib(uint64_t bytes);  // "12.3 GiB"

}  // namespace thaw::gpu
