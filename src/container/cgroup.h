// A container's own cgroup, best effort: the v1 memory and freezer
// hierarchies when they are mounted (<root>/<ctrl>/thaw/<id>), else a cgroup
// v2 group (<root>/thaw/<id>, with the controllers it needs enabled in
// <root>/thaw), else none. It gives accounting and an optional memory or CPU
// limit; a host without writable cgroups still runs containers, but a limit
// the function asked for and did not get is reported (warnings()), never
// dropped in silence.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace thaw::container {

class Cgroup {
 public:
  static constexpr const char* kRoot = "/sys/fs/cgroup";

  Cgroup() = default;
  // Creates the group(s) under root; limits of 0 set none. A CPU limit (in
  // cores) adds the cpu controller's group. Never throws.
  static Cgroup create(const std::string& id, uint64_t memory_limit_bytes = 0, double cpu_limit = 0,
                       const std::string& root = kRoot);
  Cgroup(Cgroup&& o) noexcept { *this = std::move(o); }
  Cgroup& operator=(Cgroup&& o) noexcept;
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;
  // Removes the groups; the container's processes must be gone.
  ~Cgroup();

  const std::vector<std::string>& dirs() const { return dirs_; }
  // Limits asked for that are not in force, each with the reason.
  const std::vector<std::string>& warnings() const { return warnings_; }
  uint64_t memory_limit_bytes() const { return memory_limit_; }
  // How many times the kernel's OOM killer killed a process of the group
  // (0 where the memory controller is not there to say).
  uint64_t oom_kills() const;

 private:
  void remove();
  std::vector<std::string> dirs_;
  std::vector<std::string> warnings_;
  std::string memory_dir_;  // the group that has the memory controller, if any
  bool memory_v2_ = false;
  uint64_t memory_limit_ = 0;  // in force
};

// The groups of containers whose runtime ended without removing them (one
// killed with SIGKILL runs no destructor): those under root's thaw/
// directories that hold no process and were made more than `min_age` ago
// are removed. A live container's group holds its processes, and one
// being set up is seconds old. Returns how many were removed. Never throws.
size_t sweep_stale_cgroups(std::chrono::seconds min_age, const std::string& root = Cgroup::kRoot);

// Moves the calling process into each group (its children follow).
// Failures are reported on stderr and otherwise ignored.
void join_cgroups(const std::vector<std::string>& dirs);
// Moves process `pid` (0: the caller) into each group, likewise.
void add_to_cgroups(pid_t pid, const std::vector<std::string>& dirs);

}  // namespace thaw::container
