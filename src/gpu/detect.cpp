#include "gpu/detect.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/io.h"

namespace thaw::gpu {

namespace {

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d))
    if (e->d_name[0] != '.') out.push_back(e->d_name);
  ::closedir(d);
  return out;
}

bool is_libcuda(const std::string& path) {
  auto slash = path.rfind('/');
  return path.compare(slash == std::string::npos ? 0 : slash + 1, 9, "libcuda.s") == 0;
}

std::vector<pid_t> children(pid_t pid) {
  std::vector<pid_t> out;
  for (const auto& tid : entries(cat("/proc/", pid, "/task"))) {
    std::string kids;
    if (!try_read_file(cat("/proc/", pid, "/task/", tid, "/children"), &kids)) continue;
    std::istringstream in(kids);
    pid_t c;
    while (in >> c) out.push_back(c);
  }
  return out;
}

}  // namespace

CudaUse scan_cuda_use(pid_t pid, const std::string& device_prefix) {
  CudaUse u;
  u.pid = pid;
  std::ifstream maps(cat("/proc/", pid, "/maps"));
  std::string line;
  while (std::getline(maps, line)) {
    // start-end perms offset dev inode path
    std::istringstream in(line);
    std::string range, perms, off, dev, ino, path;
    in >> range >> perms >> off >> dev >> ino;
    std::getline(in >> std::ws, path);
    if (path.empty()) continue;
    if (is_libcuda(path)) u.libcuda = true;
    if (path.rfind(device_prefix, 0) == 0) u.devices.push_back("mapping " + range + " " + path);
  }
  std::string fd_dir = cat("/proc/", pid, "/fd");
  for (const auto& fd : entries(fd_dir)) {
    char buf[4096];
    ssize_t n = ::readlink((fd_dir + "/" + fd).c_str(), buf, sizeof buf - 1);
    if (n <= 0) continue;
    std::string target(buf, n);
    if (target.rfind(device_prefix, 0) == 0) u.devices.push_back("fd " + fd + " -> " + target);
  }
  return u;
}

std::vector<CudaUse> scan_tree(pid_t pid) {
  std::vector<CudaUse> out;
  std::vector<pid_t> todo{pid};
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    auto u = scan_cuda_use(p);
    if (u.any()) out.push_back(u);
    for (pid_t c : children(p)) todo.push_back(c);
  }
  return out;
}

std::string describe_process(pid_t pid) {
  std::string comm;
  if (try_read_file(cat("/proc/", pid, "/comm"), &comm)) return cat(pid, " (", trim(comm), ")");
  return cat(pid);
}

}  // namespace thaw::gpu
