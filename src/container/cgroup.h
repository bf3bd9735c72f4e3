// A container's own cgroup, best effort: the v1 memory and freezer
// hierarchies when they are mounted (/sys/fs/cgroup/<ctrl>/thaw/<id>), else
// a cgroup v2 group (/sys/fs/cgroup/thaw/<id>), else none. It gives
// accounting (memory.usage_in_bytes) and an optional memory limit; nothing
// depends on it, so a host without writable cgroups still runs containers.
// Limits (memory=, cpu= with a limit) are applied where the controller is.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace thaw::container {

class Cgroup {
 public:
  Cgroup() = default;
  // Creates the group(s); limits of 0 set none. A CPU limit (in cores)
  // adds the cpu controller's group. Never throws.
  static Cgroup create(const std::string& id, uint64_t memory_limit_bytes = 0, double cpu_limit = 0);
  Cgroup(Cgroup&& o) noexcept : dirs_(std::move(o.dirs_)) { o.dirs_.clear(); }
  Cgroup& operator=(Cgroup&& o) noexcept;
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;
  // Removes the groups; the container's processes must be gone.
  ~Cgroup();

  const std::vector<std::string>& dirs() const { return dirs_; }

 private:
  void remove();
  std::vector<std::string> dirs_;
};

// Moves the calling process into each group (its children follow).
// Failures are reported on stderr and otherwise ignored.
void join_cgroups(const std::vector<std::string>& dirs);

}  // namespace thaw::container
