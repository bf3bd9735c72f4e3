// thaw writes out the CUDA types it uses (src/gpu/abi.h) so that it builds
// without the toolkit; where cuda.h is installed, check they match it.
#include <gtest/gtest.h>

#include <cstddef>

#include "gpu/abi.h"

#ifdef THAW_HAVE_CUDA_H
#include <cuda.h>

namespace tabi = thaw::gpu::abi;
static_assert(sizeof(tabi::LockArgs) == sizeof(CUcheckpointLockArgs));
static_assert(offsetof(tabi::LockArgs, timeoutMs) == offsetof(CUcheckpointLockArgs, timeoutMs));
static_assert(sizeof(tabi::CheckpointArgs) == sizeof(CUcheckpointCheckpointArgs));
static_assert(sizeof(tabi::UnlockArgs) == sizeof(CUcheckpointUnlockArgs));
static_assert(sizeof(tabi::RestoreArgs) == sizeof(CUcheckpointRestoreArgs));
static_assert(offsetof(tabi::RestoreArgs, gpuPairs) == offsetof(CUcheckpointRestoreArgs, gpuPairs));
static_assert(offsetof(tabi::RestoreArgs, gpuPairsCount) == offsetof(CUcheckpointRestoreArgs, gpuPairsCount));
static_assert(sizeof(tabi::GpuPair) == sizeof(CUcheckpointGpuPair));
static_assert(sizeof(tabi::CUuuid) == sizeof(CUuuid));
static_assert(int(tabi::kRunning) == int(CU_PROCESS_STATE_RUNNING) && int(tabi::kLocked) == int(CU_PROCESS_STATE_LOCKED) &&
              int(tabi::kCheckpointed) == int(CU_PROCESS_STATE_CHECKPOINTED) &&
              int(tabi::kFailed) == int(CU_PROCESS_STATE_FAILED));
static_assert(tabi::kAttrComputeMajor == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR &&
              tabi::kAttrComputeMinor == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
static_assert(tabi::kErrorNotInitialized == CUDA_ERROR_NOT_INITIALIZED);
TEST(GpuAbi, MatchesCudaH) { SUCCEED() << "checked at compile time against " THAW_CUDA_H; }
#else
TEST(GpuAbi, MatchesCudaH) { GTEST_SKIP() << "no cuda.h on this machine; layouts checked by static_assert only"; }
#endif
