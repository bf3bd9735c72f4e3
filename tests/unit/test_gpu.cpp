// src/gpu against the fake driver (tests/gpu_fake): loading, symbol
// resolution through cuGetProcAddress, the watchdog, preflight decisions.
// These test thaw's side only; the fake is not NVIDIA's driver.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/error.h"
#include "gpu/detect.h"
#include "gpu/driver.h"
#include "gpu/preflight.h"
#include "gpu/watchdog.h"

namespace thaw::gpu {
namespace {

using Clock = std::chrono::steady_clock;

// Sets environment variables for one test and puts them back after.
class Env {
 public:
  void set(const char* k, const std::string& v) {
    const char* old = std::getenv(k);
    saved_.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
    ::setenv(k, v.c_str(), 1);
  }
  ~Env() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second) ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else ::unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// A process that never loaded libcuda (this one has, once a test made a Driver).
struct Sleeper {
  pid_t pid = ::fork();
  Sleeper() {
    if (pid == 0) {
      ::execl("/bin/sleep", "sleep", "60", nullptr);
      ::_exit(127);
    }
    // Until the exec is done the child still maps what we map.
    for (int i = 0; i < 500; i++) {
      std::string comm;
      std::ifstream(("/proc/" + std::to_string(pid) + "/comm")) >> comm;
      if (comm == "sleep") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  ~Sleeper() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(GpuWatchdog, ReturnsTheValue) {
  EXPECT_EQ(call_with_deadline("add", 5, [] { return 40 + 2; }), 42);
}

TEST(GpuWatchdog, PropagatesErrors) {
  EXPECT_EQ(message_of([] { run_with_deadline("x", 5, [] { fail("boom"); }); }), "boom");
}

TEST(GpuWatchdog, AbandonsACallThatHangs) {
  auto t0 = Clock::now();
  auto msg = message_of([] { run_with_deadline("cuCheckpointProcessLock", 0.3, [] { ::pause(); }); });
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(msg, "cuCheckpointProcessLock timed out after 300 ms");
  EXPECT_LT(s, 2.0);
}

TEST(GpuUuid, FormatsAndParses) {
  unsigned char b[16];
  for (int i = 0; i < 16; i++) b[i] = static_cast<unsigned char>(0xa0 + i);
  std::string s = format_uuid(b);
  EXPECT_EQ(s, "GPU-a0a1a2a3-a4a5-a6a7-a8a9-aaabacadaeaf");
  unsigned char back[16];
  parse_uuid(s, back);
  EXPECT_EQ(0, std::memcmp(b, back, 16));
  EXPECT_NE(message_of([&] { parse_uuid("GPU-1234", back); }).find("malformed GPU UUID"), std::string::npos);
}

TEST(GpuDetect, SeesDeviceFilesByPrefix) {
  auto dir = std::filesystem::temp_directory_path() / ("thaw-gpu-detect-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string dev = (dir / "nvidia0").string();
  { int fd = ::open(dev.c_str(), O_CREAT | O_WRONLY, 0600); ::close(fd); }
  int fd = ::open(dev.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  auto u = scan_cuda_use(::getpid(), (dir / "nvidia").string());
  ::close(fd);
  ASSERT_EQ(u.devices.size(), 1u);
  EXPECT_NE(u.devices[0].find("-> " + dev), std::string::npos);
  EXPECT_TRUE(u.any());
  EXPECT_TRUE(scan_cuda_use(::getpid(), (dir / "nvidia").string()).devices.empty());
  std::filesystem::remove_all(dir);
}

TEST(GpuDetect, OrdinaryProcessIsNotCuda) {
  Sleeper child;
  auto u = scan_cuda_use(child.pid);
  EXPECT_FALSE(u.any());
  EXPECT_TRUE(scan_tree(child.pid).empty());
}

std::vector<Device> h100s() {
  return {{0, "NVIDIA H100 80GB HBM3", "GPU-00000000-0000-0000-0000-000000000001", 9, 0, 80ull << 30},
          {1, "NVIDIA H100 80GB HBM3", "GPU-00000000-0000-0000-0000-000000000002", 9, 0, 80ull << 30}};
}

TEST(GpuPreflight, SameGpuNeedsNoPairs) {
  auto t = pick_restore_device(h100s(), "NVIDIA H100 80GB HBM3", "GPU-00000000-0000-0000-0000-000000000002",
                               10ull << 30, [](int) { return 70ull << 30; });
  EXPECT_EQ(t.device.ordinal, 1);
  EXPECT_TRUE(t.pairs.empty());
}

TEST(GpuPreflight, OtherGpuOfTheSameModelGetsAPair) {
  auto t = pick_restore_device(h100s(), "NVIDIA H100 80GB HBM3", "GPU-00000000-0000-0000-0000-0000000000ff",
                               10ull << 30, [](int o) { return o == 0 ? 1ull << 30 : 70ull << 30; });
  EXPECT_EQ(t.device.ordinal, 1);  // GPU 0 has too little free
  ASSERT_EQ(t.pairs.size(), 1u);
  EXPECT_EQ(t.pairs[0].from, "GPU-00000000-0000-0000-0000-0000000000ff");
  EXPECT_EQ(t.pairs[0].to, "GPU-00000000-0000-0000-0000-000000000002");
}

TEST(GpuPreflight, RefusesAnotherModelAndTooLittleMemory) {
  auto other = message_of([] {
    pick_restore_device(h100s(), "NVIDIA A100-SXM4-40GB", "GPU-x", 1, [](int) { return 70ull << 30; });
  });
  EXPECT_NE(other.find("taken on a NVIDIA A100-SXM4-40GB; this machine has NVIDIA H100"), std::string::npos) << other;
  auto mem = message_of([] {
    pick_restore_device(h100s(), "NVIDIA H100 80GB HBM3", "GPU-00000000-0000-0000-0000-000000000001", 20ull << 30,
                        [](int) { return 5ull << 30; });
  });
  EXPECT_NE(mem.find("needs 20.0 GiB of free GPU memory: GPU 0"), std::string::npos) << mem;
  EXPECT_NE(message_of([] { pick_restore_device({}, "X", "GPU-x", 1, [](int) { return 0ull; }); })
                .find("sees no GPU"),
            std::string::npos);
}

TEST(GpuPreflight, RefusesMig) {
  std::vector<Device> mig{{0, "NVIDIA H100 80GB HBM3 MIG 1g.10gb", "MIG-0000", 9, 0, 10ull << 30}};
  EXPECT_NE(message_of([&] { check_no_mig(0, mig); }).find("is a MIG instance"), std::string::npos);
  EXPECT_EQ(message_of([&] { check_no_mig(0, h100s()); }), "(no error)");
}

TEST(GpuPreflight, RefusesMps) {
  auto dir = std::filesystem::temp_directory_path() / ("thaw-mps-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  Env env;
  env.set("CUDA_MPS_PIPE_DIRECTORY", dir.string());
  EXPECT_EQ(message_of([] { check_no_mps(0); }), "(no error)");
  ASSERT_EQ(::mkfifo((dir / "control").c_str(), 0600), 0);
  EXPECT_NE(message_of([] { check_no_mps(0); }).find("MPS control daemon is running"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(GpuPreflight, ReadsTheDriverVersionOfBothKernelModules) {
  // The open module, as an H100 machine shows it: words before the version.
  EXPECT_EQ(thaw::gpu::driver_version_in(
                "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  \n"
                "GCC version:  gcc version 15.3.0 (GCC) \n"),
            "580.159.04");
  EXPECT_EQ(thaw::gpu::driver_version_in(
                "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"),
            "550.54.14");
  EXPECT_EQ(thaw::gpu::driver_version_in("NVRM version: something else\n"), "");
  EXPECT_EQ(thaw::gpu::driver_version_in("Kernel Module for x86_64\nGCC version:  gcc version 15.3.0\n"), "");
}

TEST(GpuDriver, MissingLibraryIsAClearError) {
  Env env;
  env.set("THAW_LIBCUDA", "/nonexistent/libcuda.so.1");
  auto msg = message_of([] { Driver d; });
  EXPECT_EQ(msg.rfind("no CUDA driver: dlopen /nonexistent/libcuda.so.1: ", 0), 0u) << msg;
}

class FakeDriver : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("thaw-fake-cuda-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    env_.set("THAW_LIBCUDA", THAW_FAKE_CUDA_PATH);
    env_.set("THAW_FAKE_CUDA_DIR", dir_.string());
    env_.set("THAW_FAKE_CUDA_LOG", (dir_ / "log").string());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  Env env_;
};

TEST_F(FakeDriver, ResolvesEverythingThroughGetProcAddress) {
  Driver d(5);
  EXPECT_EQ(d.version(), 13000);
  auto devs = d.devices();
  ASSERT_EQ(devs.size(), 1u);
  EXPECT_EQ(devs[0].name, "Fake GPU 80GB");
  EXPECT_EQ(devs[0].uuid, "GPU-11111213-1415-1617-1819-1a1b1c1d1e1f");
  EXPECT_EQ(devs[0].compute_major, 9);
  EXPECT_EQ(devs[0].total_bytes, 80ull << 30);
  EXPECT_EQ(d.free_bytes(0), 80ull << 30);
  // A process without libcuda has no CUDA state: what tells thaw to skip it.
  Sleeper plain;
  EXPECT_FALSE(d.restore_thread_id(plain.pid).has_value());
}

TEST_F(FakeDriver, TooOldDriverIsRefused) {
  env_.set("THAW_FAKE_CUDA_VERSION", "12040");
  auto msg = message_of([] { Driver d(5); });
  EXPECT_NE(msg.find("CUDA driver API 12.4 (12040) is too old for GPU snapshots: they need 12.8 (12080)"),
            std::string::npos)
      << msg;
}

TEST_F(FakeDriver, HangInInitTimesOut) {
  env_.set("THAW_FAKE_CUDA_HANG", "init");
  auto t0 = Clock::now();
  auto msg = message_of([] { Driver d(0.5); });
  EXPECT_EQ(msg, "cuInit timed out after 500 ms");
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 3.0);
}

TEST_F(FakeDriver, ErrorsAreNamed) {
  Driver d(5);
  Sleeper plain;  // maps no libcuda: the fake says NOT_INITIALIZED
  auto msg = message_of([&] { d.state(plain.pid); });
  EXPECT_EQ(msg, "cuCheckpointProcessGetState failed: CUDA_ERROR_NOT_INITIALIZED (3)");
  msg = message_of([&] { d.restore(::getpid(), {{"GPU-zz", "GPU-11111213-1415-1617-1819-1a1b1c1d1e1f"}}, 5); });
  EXPECT_NE(msg.find("malformed GPU UUID 'GPU-zz'"), std::string::npos) << msg;
}

}  // namespace
}  // namespace thaw::gpu
