#include "gpu/preflight.h"

#include <sys/stat.h>

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <map>

#include "common/error.h"
#include "common/io.h"

namespace thaw::gpu {

namespace {

// pid 0: this process, as it is now (/proc/self/environ shows it as it started).
std::map<std::string, std::string> environ_of(pid_t pid) {
  std::map<std::string, std::string> env;
  std::string raw;
  if (pid == 0) {
    for (char** e = environ; *e; e++) raw.append(*e).push_back('\0');
  } else if (!try_read_file(cat("/proc/", pid, "/environ"), &raw)) {
    return env;
  }
  size_t at = 0;
  while (at < raw.size()) {
    size_t end = raw.find('\0', at);
    if (end == std::string::npos) end = raw.size();
    std::string kv = raw.substr(at, end - at);
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    at = end + 1;
  }
  return env;
}

}  // namespace

std::optional<std::string> environment_value(pid_t pid, const std::string& name) {
  auto env = environ_of(pid);
  auto it = env.find(name);
  if (it == env.end()) return std::nullopt;
  return it->second;
}

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / double(1ull << 30));
  return buf;
}

void check_no_mps(pid_t pid) {
  auto env = environ_of(pid);
  std::string dir = env.count("CUDA_MPS_PIPE_DIRECTORY") ? env["CUDA_MPS_PIPE_DIRECTORY"] : "/tmp/nvidia-mps";
  struct stat st;
  if (::stat((dir + "/control").c_str(), &st) == 0)
    fail("an MPS control daemon is running (", dir, "/control exists); the CUDA checkpoint API does not "
         "support MPS clients: stop it (echo quit | nvidia-cuda-mps-control)");
}

void check_no_mig(pid_t pid, const std::vector<Device>& devices) {
  auto env = environ_of(pid);
  auto vis = env.find("CUDA_VISIBLE_DEVICES");
  if (vis != env.end() && vis->second.find("MIG-") != std::string::npos)
    fail("CUDA_VISIBLE_DEVICES=", vis->second, " selects a MIG instance; the CUDA checkpoint API does not "
         "support MIG");
  for (const auto& d : devices)
    if (d.uuid.rfind("MIG-", 0) == 0 || d.name.find("MIG ") != std::string::npos)
      fail("GPU ", d.ordinal, " (", d.name, ", ", d.uuid, ") is a MIG instance; the CUDA checkpoint API does "
           "not support MIG");
}

std::string driver_version_in(const std::string& text) {
  auto pos = text.find("Kernel Module");
  if (pos == std::string::npos) return "";
  auto line = text.substr(pos + 13, text.find('\n', pos) - pos - 13);
  for (const auto& w : split(trim(line), ' '))
    if (!w.empty() && std::isdigit(static_cast<unsigned char>(w[0])) &&
        w.find_first_not_of("0123456789.") == std::string::npos)
      return w;
  return "";
}

std::string display_driver_version() {
  std::string text;
  if (!try_read_file("/proc/driver/nvidia/version", &text)) return "";
  return driver_version_in(text);
}

RestoreTarget pick_restore_device(const std::vector<Device>& devices, const std::string& model,
                                  const std::string& uuid, uint64_t need_bytes,
                                  const std::function<uint64_t(int)>& free_bytes) {
  if (devices.empty()) fail("the image holds GPU state (", model, ") but the CUDA driver sees no GPU here");
  std::string seen;
  for (const auto& d : devices) seen += (seen.empty() ? "" : ", ") + d.name;
  std::vector<const Device*> candidates;
  for (const auto& d : devices)
    if (d.uuid == uuid) candidates.push_back(&d);
  if (candidates.empty())
    for (const auto& d : devices)
      if (d.name == model) candidates.push_back(&d);
  if (candidates.empty())
    fail("the image's GPU state was taken on a ", model, "; this machine has ", seen,
         " (GPU state restores only onto the same model)");
  std::string why;
  for (const Device* d : candidates) {
    uint64_t f = free_bytes(d->ordinal);
    if (f >= need_bytes) {
      RestoreTarget t{*d, {}};
      if (d->uuid != uuid) t.pairs.push_back({uuid, d->uuid});
      return t;
    }
    why += cat(why.empty() ? "" : "; ", "GPU ", d->ordinal, " (", d->uuid, ") has ", gib(f), " free");
  }
  // A restore that runs out of device memory leaves the process wedged for
  // good (cuda-checkpoint issue #44): refuse it here instead.
  fail("the image needs ", gib(need_bytes), " of free GPU memory: ", why);
}

}  // namespace thaw::gpu
