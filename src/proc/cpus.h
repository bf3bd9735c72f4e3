// Which CPUs exist and which a process may use: the sets a restored
// affinity is measured against.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace thaw::proc {

// "0-3,8,10-11" (the kernel's cpu list format) as sorted CPU numbers;
// parsing stops at the first thing that is not part of a list.
std::vector<uint32_t> parse_cpu_list(const std::string& text);
// The machine's online CPUs; empty when /sys does not say.
std::vector<uint32_t> online_cpus();
// The CPUs the cpuset cgroup of `pid` lets it run on (v1 cpuset
// hierarchy or cgroup v2), as seen from this process; empty when no
// cpuset can be read for it.
std::vector<uint32_t> cpuset_cpus(pid_t pid);

}  // namespace thaw::proc
