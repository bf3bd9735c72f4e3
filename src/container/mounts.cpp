#include "container/mounts.h"

#include <sys/mount.h>
#include <unistd.h>

#include "common/error.h"
#include "container/fsutil.h"

namespace thaw::container {

void setup_namespace(const Spec& spec) {
  // Private first: nothing mounted here may leak back to the host's
  // namespace (with shared propagation a bind mount would appear there too).
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail_errno("make mounts private");
  // A /proc that shows the container's pid namespace: `ps` inside shows init
  // and the worker, and /proc/self is right for both.
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    fail_errno("mount /proc");
  // A /dev/shm of its own, as a container of any runtime has: restores of
  // one snapshot running at once would otherwise share its named
  // semaphores and shared memory by name (a pool's lock held in two
  // containers). A restored worker's come from the image (shmem.cpp).
  if (::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
    fail_errno("mount a /dev/shm of its own");
  for (const auto& m : spec.mounts) {
    with_context(cat("volume ", m.source, " at ", m.target), [&] {
      mkdir_p(m.source);
      mkdir_p(m.target);
      if (::mount(m.source.c_str(), m.target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
        fail_errno("bind mount");
      // A bind mount takes read-only only from a remount of itself.
      if (m.read_only &&
          ::mount(nullptr, m.target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) != 0)
        fail_errno("make the bind mount read-only");
    });
  }
  if (!spec.id.empty() && ::sethostname(spec.id.data(), spec.id.size()) != 0) fail_errno("set hostname");
}

}  // namespace thaw::container
