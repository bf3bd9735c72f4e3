#include "runtime/fingerprint.h"

#include <sys/stat.h>
#include <sys/utsname.h>

#include <climits>
#include <cstring>
#include <cstdlib>
#include <sstream>

#include "common/error.h"
#include "common/io.h"
#include "container/fsutil.h"
#include "gpu/preflight.h"
#include "runtime/sha256.h"

namespace thaw::runtime {

namespace {

// The fields of the first processor in /proc/cpuinfo.
std::map<std::string, std::string> first_cpu() {
  std::map<std::string, std::string> out;
  std::string text;
  if (!try_read_file("/proc/cpuinfo", &text)) return out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (trim(line).empty()) {
      if (!out.empty()) break;
      continue;
    }
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    out[trim(line.substr(0, colon))] = trim(line.substr(colon + 1));
  }
  return out;
}

// What the NVIDIA kernel module tells through /proc (no driver library is
// loaded for this): the driver version and each GPU's model and UUID.
void read_gpus(Fingerprint& f) {
  std::string version;
  if (!try_read_file("/proc/driver/nvidia/version", &version)) return;
  f.gpu_driver = gpu::driver_version_in(version);
  for (const auto& g : container::list_dir("/proc/driver/nvidia/gpus")) {
    std::string info;
    if (!try_read_file("/proc/driver/nvidia/gpus/" + g + "/information", &info)) continue;
    auto field = [&](const char* name) {
      auto p = info.find(name);
      if (p == std::string::npos) return std::string();
      p += std::strlen(name);
      return trim(info.substr(p, info.find('\n', p) - p));
    };
    f.gpu_models.push_back(field("Model:"));
    f.gpu_uuids.push_back(field("GPU UUID:"));
  }
}

std::string python_identity(const std::string& python) {
  char real[PATH_MAX];
  if (!::realpath(python.c_str(), real)) return python + " (missing)";
  struct stat st;
  if (::stat(real, &st) != 0) return std::string(real) + " (missing)";
  return cat(real, " size=", st.st_size, " mtime=", st.st_mtim.tv_sec);
}

std::string sdk_identity(const std::string& python_dir) {
  std::string dir = python_dir + "/thaw";
  std::vector<std::string> names;
  for (const auto& n : container::list_dir(dir))
    if (n.size() > 3 && n.compare(n.size() - 3, 3, ".py") == 0) names.push_back(n);
  if (names.empty()) return dir + " (missing)";  // list_dir sorts: the hash is stable
  std::string all;
  for (const auto& n : names) all += n + '\0' + sha256_hex(read_file(dir + "/" + n)) + '\n';
  return sha256_hex(all);
}

}  // namespace

nlohmann::json Fingerprint::key_part() const {
  return {{"kernel", kernel}, {"cpu_vendor", cpu_vendor}, {"cpu_model", cpu_model}, {"gpu", gpu},
          {"python", python}, {"thaw", thaw_version},     {"sdk", sdk}};
}

Fingerprint read_fingerprint(const std::string& python, const std::string& python_dir) {
  Fingerprint f;
  struct utsname u;
  if (::uname(&u) == 0) f.kernel = u.release;
  auto cpu = first_cpu();
  f.cpu_vendor = cpu["vendor_id"];
  f.cpu_model = cat("family ", cpu["cpu family"], " model ", cpu["model"], ": ", cpu["model name"]);
  for (const auto& flag : split(cpu["flags"], ' '))
    if (!flag.empty()) f.cpu_flags.insert(flag);
  read_gpus(f);
  if (!f.gpu_driver.empty() || !f.gpu_models.empty()) {
    for (const auto& m : f.gpu_models) f.gpu += (f.gpu.empty() ? "" : ", ") + m;
    f.gpu += "; driver " + f.gpu_driver;
  }
  f.python = python_identity(python);
  f.thaw_version = THAW_VERSION;
  f.sdk = sdk_identity(python_dir);
  return f;
}

std::vector<std::string> missing_cpu_flags(const Fingerprint& here, const std::vector<std::string>& needed) {
  std::vector<std::string> out;
  for (const auto& f : needed)
    if (!here.cpu_flags.count(f)) out.push_back(f);
  return out;
}

}  // namespace thaw::runtime
