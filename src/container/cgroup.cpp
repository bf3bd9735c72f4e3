#include "container/cgroup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "common/error.h"
#include "common/unique_fd.h"
#include "container/fsutil.h"

namespace thaw::container {

namespace {

constexpr const char* kRoot = "/sys/fs/cgroup";

bool write_small(const std::string& path, const std::string& value) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  return fd && ::write(fd.get(), value.data(), value.size()) == static_cast<ssize_t>(value.size());
}

// A directory we may create a child group in: a mounted hierarchy root.
bool hierarchy(const std::string& dir) { return exists(dir + "/cgroup.procs"); }

}  // namespace

Cgroup Cgroup::create(const std::string& id, uint64_t memory_limit_bytes, double cpu_limit) {
  Cgroup cg;
  std::vector<std::pair<std::string, std::string>> roots;  // (hierarchy, controller)
  for (const char* ctrl : {"memory", "freezer", "cpu"}) {
    if (std::string(ctrl) == "cpu" && cpu_limit <= 0) continue;
    if (hierarchy(cat(kRoot, "/", ctrl))) roots.emplace_back(cat(kRoot, "/", ctrl), ctrl);
  }
  if (roots.empty() && exists(cat(kRoot, "/cgroup.controllers"))) roots.emplace_back(kRoot, "v2");
  for (const auto& [root, ctrl] : roots) {
    std::string dir = cat(root, "/thaw/", id);
    try {
      mkdir_p(dir);
    } catch (const std::exception&) {
      continue;  // read-only or not delegated to us: run without it
    }
    cg.dirs_.push_back(dir);
    if (memory_limit_bytes) {
      if (ctrl == "memory") write_small(dir + "/memory.limit_in_bytes", std::to_string(memory_limit_bytes));
      if (ctrl == "v2") write_small(dir + "/memory.max", std::to_string(memory_limit_bytes));
    }
    if (cpu_limit > 0) {
      constexpr long kPeriodUs = 100000;
      long quota = static_cast<long>(cpu_limit * kPeriodUs);
      if (ctrl == "cpu") {
        write_small(dir + "/cpu.cfs_period_us", std::to_string(kPeriodUs));
        write_small(dir + "/cpu.cfs_quota_us", std::to_string(quota));
      }
      if (ctrl == "v2") write_small(dir + "/cpu.max", cat(quota, " ", kPeriodUs));
    }
  }
  return cg;
}

Cgroup& Cgroup::operator=(Cgroup&& o) noexcept {
  if (this != &o) {
    remove();
    dirs_ = std::move(o.dirs_);
    o.dirs_.clear();
  }
  return *this;
}

Cgroup::~Cgroup() { remove(); }

void Cgroup::remove() {
  for (const auto& d : dirs_) {
    // The last process may still be exiting: the group is busy until the
    // kernel has released it.
    for (int i = 0; i < 50 && ::rmdir(d.c_str()) != 0 && errno == EBUSY; i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  dirs_.clear();
}

void join_cgroups(const std::vector<std::string>& dirs) {
  for (const auto& d : dirs)
    if (!write_small(d + "/cgroup.procs", "0"))
      std::fprintf(stderr, "thaw: could not join cgroup %s: %s (continuing without it)\n", d.c_str(),
                   std::strerror(errno));
}

}  // namespace thaw::container
