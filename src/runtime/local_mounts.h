// Image.add_local_file / add_local_dir (python/thaw/_image.py): Modal puts
// a local file or directory into the container at a path of the user's
// choosing. thaw's containers see the host's filesystem, so the host's path
// is bound there instead, read-only (what a container does to it must not
// reach the local copy, as in Modal).
#pragma once
#include <string>
#include <vector>

#include "container/spec.h"
#include "runtime/app.h"

namespace thaw::runtime {

// The mounts fn's Image asks for ("local_mounts" in its description).
// Throws, naming the Image step, for one that would hide a path the
// container needs as the host has it (host_paths: $THAW_HOME, thaw's own
// files, the app's directory): that bind would break the container.
std::vector<container::Mount> local_mounts(const FunctionDesc& fn, const std::vector<std::string>& host_paths);

}  // namespace thaw::runtime
