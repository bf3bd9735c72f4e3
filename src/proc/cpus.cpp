#include "proc/cpus.h"

#include <cstdlib>
#include <sstream>

#include "common/io.h"

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
std::optional<std::vector<uint32_t>> effective_cpus(const std::string& root, std::string path,
                                                    const char* file) {
  for (;;) {
    std::string text;
    if (try_read_file(root + (path == "/" ? "" : path) + "/" + file, &text)) {
      auto cpus = parse_cpu_list(text);
      if (!cpus.empty()) return cpus;
    }
    if (path.empty() || path == "/") return std::nullopt;
    auto slash = path.find_last_of('/');
    path = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  }
}

}  // namespace

std::optional<std::vector<uint32_t>> cpuset_cpus(pid_t pid) {
  std::string text;
  if (!try_read_file("/proc/" + std::to_string(pid) + "/cgroup", &text)) return std::nullopt;
  std::istringstream in(text);
  std::string line, v2_path;
  bool have_v2 = false;
  while (std::getline(in, line)) {
    // "hierarchy-ID:controllers:path"; cgroup v2's line has no controllers
    auto a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",", path = line.substr(b + 1);
    if (controllers.find(",cpuset,") != std::string::npos)
      return effective_cpus("/sys/fs/cgroup/cpuset", path, "cpuset.effective_cpus");
    if (controllers == ",,") {
      have_v2 = true;
      v2_path = path;
    }
  }
  if (have_v2) return effective_cpus("/sys/fs/cgroup", v2_path, "cpuset.cpus.effective");
  return std::nullopt;
}

}  // namespace thaw::proc
