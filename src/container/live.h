// The containers a process has running, for the one moment that cannot
// wait for their owners: a second Ctrl-C, which ends the process at once
// (cli/interrupts.h). Every other stop goes through Container::stop, which
// runs @exit and reaps; this only makes sure nothing outlives the process.
// One registry per runtime context (runtime::Context::live), handed to each
// container it launches (LaunchOptions::live).
#pragma once
#include <sys/types.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace thaw::container {

struct LiveContainer {
  pid_t root = 0;     // our child (leads a process group of its own)
  pid_t ns_init = 0;  // pid 1 of its pid namespace, as the host sees it
  std::vector<std::string> cgroups;
};

class LiveContainers {
 public:
  // Registered by the Container itself, under the key of its address.
  void note(const void* key, LiveContainer c);
  void gone(const void* key);
  // SIGKILLs every live container (pid 1 of a pid namespace takes the rest
  // along), then waits up to timeout_ms for their cgroups to empty and
  // removes them. For a process about to _exit: the containers' owners are
  // not told. Never throws.
  void kill_all(int timeout_ms);

 private:
  std::mutex mu_;
  std::map<const void*, LiveContainer> live_;
};

}  // namespace thaw::container
