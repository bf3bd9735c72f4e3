// The few CUDA driver API types and signatures thaw uses, written out here
// so that thaw builds without the CUDA toolkit and never links libcuda.
// Layouts follow cuda.h of CUDA 13.0; tests/unit/test_gpu_abi.cpp checks
// them against the real header when one is installed.
#pragma once
#include <cstdint>

namespace thaw::gpu::abi {

using CUresult = int;
using CUdevice = int;
using CUcontext = struct CUctx_st*;

constexpr CUresult kSuccess = 0;
constexpr CUresult kErrorNotInitialized = 3;

struct CUuuid {
  unsigned char bytes[16];
};

enum CUprocessState : int { kRunning = 0, kLocked = 1, kCheckpointed = 2, kFailed = 3 };

// Every argument struct is 64 bytes; reserved fields must be zero.
struct LockArgs {
  unsigned int timeoutMs;  // 0: wait forever
  unsigned int reserved0;
  uint64_t reserved1[7];
};
struct CheckpointArgs {
  uint64_t reserved[8];
};
struct UnlockArgs {
  uint64_t reserved[8];
};
struct GpuPair {  // CUDA 13.0+
  CUuuid oldUuid, newUuid;
};
struct RestoreArgs {  // CUDA 13.0 shape; 12.8/12.9 have reserved[8] here
  GpuPair* gpuPairs;
  unsigned int gpuPairsCount;
  char reserved[52 - sizeof(GpuPair*)];
  uint64_t reserved1;
};
static_assert(sizeof(LockArgs) == 64 && sizeof(CheckpointArgs) == 64 && sizeof(UnlockArgs) == 64 &&
              sizeof(RestoreArgs) == 64 && sizeof(GpuPair) == 32);

// CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
constexpr int kAttrComputeMajor = 75, kAttrComputeMinor = 76;

using GetProcAddressV2 = CUresult (*)(const char* symbol, void** pfn, int cudaVersion, uint64_t flags,
                                      int* symbolStatus);
using GetProcAddressV1 = CUresult (*)(const char* symbol, void** pfn, int cudaVersion, uint64_t flags);
using Init = CUresult (*)(unsigned int flags);
using DriverGetVersion = CUresult (*)(int* version);
using GetErrorName = CUresult (*)(CUresult error, const char** str);
using DeviceGetCount = CUresult (*)(int* count);
using DeviceGet = CUresult (*)(CUdevice* device, int ordinal);
using DeviceGetName = CUresult (*)(char* name, int len, CUdevice dev);
using DeviceGetUuid = CUresult (*)(CUuuid* uuid, CUdevice dev);
using DeviceGetAttribute = CUresult (*)(int* value, int attrib, CUdevice dev);
using DeviceTotalMem = CUresult (*)(size_t* bytes, CUdevice dev);
using DevicePrimaryCtxRetain = CUresult (*)(CUcontext* ctx, CUdevice dev);
using DevicePrimaryCtxRelease = CUresult (*)(CUdevice dev);
using CtxSetCurrent = CUresult (*)(CUcontext ctx);
using MemGetInfo = CUresult (*)(size_t* free, size_t* total);
using ProcessGetRestoreThreadId = CUresult (*)(int pid, int* tid);
using ProcessGetState = CUresult (*)(int pid, CUprocessState* state);
using ProcessLock = CUresult (*)(int pid, LockArgs* args);
using ProcessCheckpoint = CUresult (*)(int pid, CheckpointArgs* args);
using ProcessRestore = CUresult (*)(int pid, RestoreArgs* args);
using ProcessUnlock = CUresult (*)(int pid, UnlockArgs* args);

}  // namespace thaw::gpu::abi
