#include "proc/cpus.h"

#include <cstdlib>

#include "common/io.h"
#include "proc/procfs.h"

namespace thaw::proc {

std::vector<uint32_t> parse_cpu_list(const std::string& text) {
  std::vector<uint32_t> out;
  const char* p = text.c_str();
  for (;;) {
    char* end;
    unsigned long lo = std::strtoul(p, &end, 10), hi = lo;
    if (end == p) break;
    p = end;
    if (*p == '-') {
      hi = std::strtoul(p + 1, &end, 10);
      if (end == p + 1) break;
      p = end;
    }
    // A cpu_set_t holds 1024; a list reaching past that is not a set
    // anything here could apply.
    for (unsigned long c = lo; c <= hi && c < 1024; c++) out.push_back(static_cast<uint32_t>(c));
    if (*p != ',') break;
    p++;
  }
  return out;
}

std::vector<uint32_t> online_cpus() {
  std::string text;
  if (!try_read_file("/sys/devices/system/cpu/online", &text)) return {};
  return parse_cpu_list(text);
}

namespace {

// The effective CPUs of the cpuset at `path` under `root`, or the nearest
// one above it that has the file (v2 shows it only where the controller
// is enabled).
std::vector<uint32_t> effective_cpus(const std::string& root, std::string path, const char* file) {
  for (;;) {
    std::string text;
    if (try_read_file(root + (path == "/" ? "" : path) + "/" + file, &text)) {
      auto cpus = parse_cpu_list(text);
      if (!cpus.empty()) return cpus;
    }
    if (path.empty() || path == "/") return {};
    path = parent_cgroup(path);
  }
}

}  // namespace

std::vector<uint32_t> cpuset_cpus(pid_t pid) {
  std::string v2_path;
  bool have_v2 = false;
  for (const auto& [controllers, path] : read_cgroups(std::to_string(pid))) {
    if (controllers.find(",cpuset,") != std::string::npos)
      return effective_cpus("/sys/fs/cgroup/cpuset", path, "cpuset.effective_cpus");
    if (controllers == ",,") {
      have_v2 = true;
      v2_path = path;
    }
  }
  return have_v2 ? effective_cpus("/sys/fs/cgroup", v2_path, "cpuset.cpus.effective") : std::vector<uint32_t>{};
}

}  // namespace thaw::proc
