// The inside of a container's mount and uts namespaces. Runs in the
// container's pid 1 — thaw's own init for a cold start, the engine's init
// (RestoreOptions::in_namespace) for a restore — so a restored worker finds
// its volumes at the paths it had them.
#pragma once
#include "container/spec.h"

namespace thaw::container {

// Expects fresh mount and uts namespaces (and a fresh pid namespace whose
// pid 1 is the caller). Makes every mount private, mounts a /proc of the
// container's pid namespace and an empty /dev/shm (with the host's paths
// of Spec::host_paths and Volumes that lie in its /dev/shm bound again at
// their path), bind-mounts each Volume at its path (created if
// missing) and sets the hostname.
void setup_namespace(const Spec& spec);

}  // namespace thaw::container
