#include "gpu/driver.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "gpu/abi.h"
#include "gpu/watchdog.h"

namespace thaw::gpu {

// The library handle and its entry points. Calls abandoned by the watchdog
// hold a reference, so the library is only closed once none runs in it.
struct Api {
  void* handle = nullptr;
  abi::GetErrorName get_error_name = nullptr;
  abi::DeviceGetCount device_get_count = nullptr;
  abi::DeviceGet device_get = nullptr;
  abi::DeviceGetName device_get_name = nullptr;
  abi::DeviceGetUuid device_get_uuid = nullptr;
  abi::DeviceGetAttribute device_get_attribute = nullptr;
  abi::DeviceTotalMem device_total_mem = nullptr;
  abi::DevicePrimaryCtxRetain ctx_retain = nullptr;
  abi::DevicePrimaryCtxRelease ctx_release = nullptr;
  abi::CtxSetCurrent ctx_set_current = nullptr;
  abi::MemGetInfo mem_get_info = nullptr;
  abi::ProcessGetRestoreThreadId get_restore_thread_id = nullptr;
  abi::ProcessGetState get_state = nullptr;
  abi::ProcessLock lock = nullptr;
  abi::ProcessCheckpoint checkpoint = nullptr;
  abi::ProcessRestore restore = nullptr;
  abi::ProcessUnlock unlock = nullptr;
  ~Api() {
    if (handle) ::dlclose(handle);
  }
};

namespace {

using ApiPtr = std::shared_ptr<const Api>;

// cuGetProcAddress picks the right version of each entry point (plain
// dlsym of "cuMemGetInfo" gives the 32-bit v1); dlsym is the fallback for
// drivers whose cuGetProcAddress does not know a name.
class Resolver {
 public:
  Resolver(void* handle, const std::string& path, int version) : handle_(handle), path_(path), version_(version) {
    v2_ = reinterpret_cast<abi::GetProcAddressV2>(::dlsym(handle, "cuGetProcAddress_v2"));
    if (!v2_) v1_ = reinterpret_cast<abi::GetProcAddressV1>(::dlsym(handle, "cuGetProcAddress"));
    if (!v2_ && !v1_) fail(path, " exports neither cuGetProcAddress_v2 nor cuGetProcAddress");
  }
  template <typename T>
  void get(const char* name, T& out) {
    void* p = nullptr;
    int rc = v2_ ? v2_(name, &p, version_, 0, nullptr) : v1_(name, &p, version_, 0);
    if (rc != abi::kSuccess || !p) p = ::dlsym(handle_, name);
    if (!p) fail(path_, " has no ", name, " (driver API ", version_, ")");
    out = reinterpret_cast<T>(p);
  }

 private:
  void* handle_;
  std::string path_;
  int version_;
  abi::GetProcAddressV2 v2_ = nullptr;
  abi::GetProcAddressV1 v1_ = nullptr;
};

std::string version_str(int v) { return cat(v / 1000, ".", (v % 1000) / 10, " (", v, ")"); }

void check_rc(const Api& api, int rc, const char* call) {
  if (rc == abi::kSuccess) return;
  const char* name = nullptr;
  if (api.get_error_name && api.get_error_name(rc, &name) != abi::kSuccess) name = nullptr;
  throw DriverError(cat(call, " failed: ", name ? name : "CUresult", " (", rc, ")"));
}

}  // namespace

std::string to_string(ProcessState s) {
  switch (s) {
    case ProcessState::kRunning: return "RUNNING";
    case ProcessState::kLocked: return "LOCKED";
    case ProcessState::kCheckpointed: return "CHECKPOINTED";
    case ProcessState::kFailed: return "FAILED";
  }
  return "?";
}

std::string format_uuid(const unsigned char b[16]) {
  char s[64];
  std::snprintf(s, sizeof s, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return s;
}

void parse_uuid(const std::string& s, unsigned char out[16]) {
  std::string hex;
  size_t from = s.rfind("GPU-", 0) == 0 || s.rfind("MIG-", 0) == 0 ? 4 : 0;
  for (size_t i = from; i < s.size(); i++)
    if (s[i] != '-') hex += s[i];
  if (hex.size() != 32 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
    fail("malformed GPU UUID '", s, "'");
  for (int i = 0; i < 16; i++) out[i] = static_cast<unsigned char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
}

std::string Driver::library_path() {
  const char* env = std::getenv("THAW_LIBCUDA");
  return env && *env ? env : "libcuda.so.1";
}

Driver::Driver(double call_timeout_s) : path_(library_path()), timeout_s_(call_timeout_s) {
  auto api = std::make_shared<Api>();
  // dlopen runs the library's constructors, which may block like any call.
  api->handle = call_with_deadline("dlopen " + path_, timeout_s_, [path = path_] {
    void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) fail("no CUDA driver: dlopen ", path, ": ", ::dlerror());
    return h;
  });
  auto init = reinterpret_cast<abi::Init>(::dlsym(api->handle, "cuInit"));
  auto get_version = reinterpret_cast<abi::DriverGetVersion>(::dlsym(api->handle, "cuDriverGetVersion"));
  if (!init || !get_version) fail(path_, " is not a CUDA driver (no cuInit/cuDriverGetVersion)");
  api->get_error_name = reinterpret_cast<abi::GetErrorName>(::dlsym(api->handle, "cuGetErrorName"));
  api_ = api;
  auto [rc, version] = call_with_deadline("cuDriverGetVersion", timeout_s_, [api, get_version] {
    int v = 0;
    int r = get_version(&v);
    return std::pair<int, int>{r, v};
  });
  check(rc, "cuDriverGetVersion");
  version_ = version;
  if (version_ < kMinDriverVersion)
    fail("CUDA driver API ", version_str(version_), " is too old for GPU snapshots: they need ",
         version_str(kMinDriverVersion), " or newer (driver r570+)");
  check(call_with_deadline("cuInit", timeout_s_, [api, init] { return init(0); }), "cuInit");
  Resolver r(api->handle, path_, version_);
  r.get("cuDeviceGetCount", api->device_get_count);
  r.get("cuDeviceGet", api->device_get);
  r.get("cuDeviceGetName", api->device_get_name);
  r.get("cuDeviceGetUuid", api->device_get_uuid);
  r.get("cuDeviceGetAttribute", api->device_get_attribute);
  r.get("cuDeviceTotalMem", api->device_total_mem);
  r.get("cuDevicePrimaryCtxRetain", api->ctx_retain);
  r.get("cuDevicePrimaryCtxRelease", api->ctx_release);
  r.get("cuCtxSetCurrent", api->ctx_set_current);
  r.get("cuMemGetInfo", api->mem_get_info);
  r.get("cuCheckpointProcessGetRestoreThreadId", api->get_restore_thread_id);
  r.get("cuCheckpointProcessGetState", api->get_state);
  r.get("cuCheckpointProcessLock", api->lock);
  r.get("cuCheckpointProcessCheckpoint", api->checkpoint);
  r.get("cuCheckpointProcessRestore", api->restore);
  r.get("cuCheckpointProcessUnlock", api->unlock);
}

Driver::~Driver() {
  ApiPtr api = api_;
  for (int dev : retained_) {
    try {
      call_with_deadline("cuDevicePrimaryCtxRelease", 5, [api, dev] { return api->ctx_release(dev); });
    } catch (const std::exception&) {
      // The process is about to drop the context anyway when it exits.
    }
  }
}

void Driver::check(int rc, const char* call) const { check_rc(*api_, rc, call); }

std::vector<Device> Driver::devices() const {
  ApiPtr api = api_;
  return call_with_deadline("CUDA device queries", timeout_s_, [api] {
    auto check = [&](int rc, const char* call) { check_rc(*api, rc, call); };
    std::vector<Device> out;
    int n = 0;
    check(api->device_get_count(&n), "cuDeviceGetCount");
    for (int i = 0; i < n; i++) {
      Device d;
      d.ordinal = i;
      abi::CUdevice dev = 0;
      check(api->device_get(&dev, i), "cuDeviceGet");
      char name[256] = {};
      check(api->device_get_name(name, sizeof name - 1, dev), "cuDeviceGetName");
      d.name = name;
      abi::CUuuid uuid{};
      check(api->device_get_uuid(&uuid, dev), "cuDeviceGetUuid");
      d.uuid = format_uuid(uuid.bytes);
      check(api->device_get_attribute(&d.compute_major, abi::kAttrComputeMajor, dev), "cuDeviceGetAttribute");
      check(api->device_get_attribute(&d.compute_minor, abi::kAttrComputeMinor, dev), "cuDeviceGetAttribute");
      size_t total = 0;
      check(api->device_total_mem(&total, dev), "cuDeviceTotalMem");
      d.total_bytes = total;
      out.push_back(d);
    }
    return out;
  });
}

void Driver::retain_contexts() {
  if (!retained_.empty()) return;
  ApiPtr api = api_;
  int n = call_with_deadline("cuDeviceGetCount", timeout_s_, [api] {
    int c = 0;
    return api->device_get_count(&c) == abi::kSuccess ? c : 0;
  });
  for (int i = 0; i < n; i++) {
    // Held for the Driver's lifetime, so each memory query finds the
    // context made and does not pay for creating it again.
    check(call_with_deadline("cuDevicePrimaryCtxRetain", timeout_s_, [api, i] {
            abi::CUcontext ctx = nullptr;
            return api->ctx_retain(&ctx, i);
          }),
          "cuDevicePrimaryCtxRetain");
    retained_.push_back(i);
  }
}

uint64_t Driver::free_bytes(int ordinal) {
  retain_contexts();
  ApiPtr api = api_;
  auto [rc, free] = call_with_deadline("cuMemGetInfo", timeout_s_, [api, ordinal] {
    // A context is current per thread, and each call runs on a thread of
    // its own: make the device's primary context current right here.
    abi::CUcontext ctx = nullptr;
    int r = api->ctx_retain(&ctx, ordinal);
    if (r != abi::kSuccess) return std::pair<int, uint64_t>{r, 0};
    r = api->ctx_set_current(ctx);
    size_t f = 0, t = 0;
    if (r == abi::kSuccess) r = api->mem_get_info(&f, &t);
    api->ctx_release(ordinal);
    return std::pair<int, uint64_t>{r, f};
  });
  check(rc, "cuMemGetInfo");
  return free;
}

uint64_t Driver::used_bytes() {
  uint64_t used = 0;
  for (const auto& d : devices()) {
    uint64_t f = free_bytes(d.ordinal);
    if (d.total_bytes > f) used += d.total_bytes - f;
  }
  return used;
}

void Driver::lock(pid_t pid, double timeout_s) {
  ApiPtr api = api_;
  // The driver gives up itself at its own timeout (leaving the process
  // RUNNING); ours is the backstop for when it does not.
  unsigned ms = static_cast<unsigned>(timeout_s * 1000);
  check(call_with_deadline("cuCheckpointProcessLock", timeout_s + 2,
                           [api, pid, ms] {
                             abi::LockArgs args{};
                             args.timeoutMs = ms;
                             return api->lock(pid, &args);
                           }),
        "cuCheckpointProcessLock");
}

void Driver::checkpoint(pid_t pid, double timeout_s) {
  ApiPtr api = api_;
  check(call_with_deadline("cuCheckpointProcessCheckpoint", timeout_s, [api, pid] {
          abi::CheckpointArgs args{};
          return api->checkpoint(pid, &args);
        }),
        "cuCheckpointProcessCheckpoint");
}

void Driver::restore(pid_t pid, const std::vector<UuidPair>& pairs, double timeout_s) {
  if (!pairs.empty() && version_ < kPairsDriverVersion)
    fail("restoring onto a different GPU needs CUDA driver API ", version_str(kPairsDriverVersion),
         " or newer; this driver is ", version_str(version_));
  auto gp = std::make_shared<std::vector<abi::GpuPair>>();
  for (const auto& p : pairs) {
    abi::GpuPair g{};
    parse_uuid(p.from, g.oldUuid.bytes);
    parse_uuid(p.to, g.newUuid.bytes);
    gp->push_back(g);
  }
  ApiPtr api = api_;
  check(call_with_deadline("cuCheckpointProcessRestore", timeout_s, [api, pid, gp] {
          abi::RestoreArgs args{};
          if (!gp->empty()) {
            args.gpuPairs = gp->data();
            args.gpuPairsCount = static_cast<unsigned>(gp->size());
          }
          return api->restore(pid, gp->empty() ? nullptr : &args);
        }),
        "cuCheckpointProcessRestore");
}

void Driver::unlock(pid_t pid, double timeout_s) {
  ApiPtr api = api_;
  check(call_with_deadline("cuCheckpointProcessUnlock", timeout_s, [api, pid] {
          abi::UnlockArgs args{};
          return api->unlock(pid, &args);
        }),
        "cuCheckpointProcessUnlock");
}

ProcessState Driver::state(pid_t pid) {
  ApiPtr api = api_;
  auto [rc, st] = call_with_deadline("cuCheckpointProcessGetState", timeout_s_, [api, pid] {
    abi::CUprocessState s = abi::kFailed;
    int r = api->get_state(pid, &s);
    return std::pair<int, int>{r, s};
  });
  check(rc, "cuCheckpointProcessGetState");
  switch (st) {
    case abi::kRunning: return ProcessState::kRunning;
    case abi::kLocked: return ProcessState::kLocked;
    case abi::kCheckpointed: return ProcessState::kCheckpointed;
    case abi::kFailed: return ProcessState::kFailed;
  }
  fail("cuCheckpointProcessGetState returned an unknown state ", st);
}

std::optional<pid_t> Driver::restore_thread_id(pid_t pid) {
  ApiPtr api = api_;
  auto [rc, tid] = call_with_deadline("cuCheckpointProcessGetRestoreThreadId", timeout_s_, [api, pid] {
    int t = 0;
    int r = api->get_restore_thread_id(pid, &t);
    return std::pair<int, int>{r, t};
  });
  // What CRIU's plugin relies on too: the call fails for a process in which
  // CUDA holds nothing to checkpoint.
  if (rc != abi::kSuccess) return std::nullopt;
  return tid;
}

}  // namespace thaw::gpu
