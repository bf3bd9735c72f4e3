// The containers this process has running, for the one moment that cannot
// wait for their owners: a second Ctrl-C, which ends the process at once
// (cli/interrupts.h). Every other stop goes through Container::stop, which
// runs @exit and reaps; this only makes sure nothing outlives the process.
#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

namespace thaw::container {

struct LiveContainer {
  pid_t root = 0;     // our child (leads a process group of its own)
  pid_t ns_init = 0;  // pid 1 of its pid namespace, as the host sees it
  std::vector<std::string> cgroups;
};

// Registered by the Container itself, under the key of its address.
void note_live(const void* key, LiveContainer c);
void note_gone(const void* key);

// SIGKILLs every live container (pid 1 of a pid namespace takes the rest
// along), then waits up to timeout_ms for their cgroups to empty and
// removes them. For a process about to _exit: the containers' owners are
// not told. Never throws.
void kill_all_live(int timeout_ms);

}  // namespace thaw::container
