#include "container/mounts.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "common/error.h"
#include "common/unique_fd.h"
#include "container/dev_shm_files.h"
#include "container/fsutil.h"

namespace thaw::container {

namespace {

// A /dev/shm of its own, as a container of any runtime has: restores of
// one snapshot running at once would otherwise share its named
// semaphores and shared memory by name (a pool's lock held in two
// containers). A restored worker's come from the image (shmem.cpp).
// What the container needs of the host's /dev/shm ($THAW_HOME there, a
// Volume's directory in it) is held first and bound again at its path.
// A restored container's files of /dev/shm come from its snapshot
// (dev_shm_files.h), and every container has its temporary directory there.
// A host without /dev/shm gives its containers none either.
void mount_own_dev_shm(const Spec& spec) {
  struct stat shm;
  if (::stat("/dev/shm", &shm) != 0 || !S_ISDIR(shm.st_mode)) return;
  std::vector<std::pair<std::string, UniqueFd>> held;
  auto hold = [&](const std::string& p) {
    if (p.rfind("/dev/shm/", 0) != 0) return;
    if (int fd = ::open(p.c_str(), O_PATH | O_CLOEXEC); fd >= 0) held.emplace_back(p, UniqueFd(fd));
  };
  // The restore shell's copy, held with the image it read, or one by path.
  SavedDevShm saved;
  if (spec.dev_shm_fd >= 0) {
    saved.dir.reset(::fcntl(spec.dev_shm_fd, F_DUPFD_CLOEXEC, 0));
    if (!saved.dir) fail_errno("take the files of the snapshot's /dev/shm (fd ", spec.dev_shm_fd, ")");
    saved.inodes = spec.dev_shm_inodes;
  } else {
    saved = open_saved_dev_shm_files(spec.dev_shm_from);
  }
  for (const auto& p : spec.host_paths) hold(p);
  for (const auto& m : spec.mounts) {
    if (!m.local) with_context(cat("volume ", m.source, " at ", m.target), [&] { mkdir_p(m.source); });
    hold(m.source);
  }
  if (::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
    fail_errno("mount a /dev/shm of its own");
  // Its files first: none is where a host path goes (those were mounts,
  // left out of the snapshot's copy).
  fill_dev_shm_files(saved, spec.dev_shm_from);
  for (const auto& [p, fd] : held) {
    with_context(cat("the host's ", p), [&] {
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) fail_errno("stat");
      if (S_ISDIR(st.st_mode)) {
        mkdir_p(p);
      } else {
        mkdir_p(p.substr(0, p.rfind('/')));
        UniqueFd made(::open(p.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
        if (!made) fail_errno("make a place to bind it");
      }
      if (::mount(cat("/proc/self/fd/", fd.get()).c_str(), p.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
        fail_errno("bind it again in the container's own /dev/shm");
    });
  }
}

// Where a local file or directory is bound: like a Volume's path, made on
// the host when missing (a directory, or an empty file for a file).
void make_mount_point_for(const std::string& source, const std::string& target) {
  struct stat st;
  if (::stat(source.c_str(), &st) != 0)
    fail_errno("the local path given to Image.add_local_file/add_local_dir is not there any more");
  if (S_ISDIR(st.st_mode)) {
    mkdir_p(target);
    return;
  }
  if (std::string dir = target.substr(0, target.rfind('/')); !dir.empty()) mkdir_p(dir);
  UniqueFd made(::open(target.c_str(), O_CREAT | O_RDONLY | O_CLOEXEC, 0644));
  if (!made) fail_errno("make a file to bind it over");
}

}  // namespace

void setup_namespace(const Spec& spec) {
  // Private first: nothing mounted here may leak back to the host's
  // namespace (with shared propagation a bind mount would appear there too).
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail_errno("make mounts private");
  // A /proc that shows the container's pid namespace: `ps` inside shows init
  // and the worker, and /proc/self is right for both.
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    fail_errno("mount /proc");
  mount_own_dev_shm(spec);
  for (const auto& m : spec.mounts) {
    with_context(cat(m.local ? "local path " : "volume ", m.source, " at ", m.target), [&] {
      if (m.local) {
        make_mount_point_for(m.source, m.target);
      } else {
        mkdir_p(m.source);
        mkdir_p(m.target);
      }
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
