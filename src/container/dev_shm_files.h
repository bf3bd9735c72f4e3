// The files of a container's own /dev/shm — its temporary directory among
// them (kContainerTmp, the workers' TMPDIR) — saved with its snapshot and
// given to every container restored from it, as a container of a runtime
// with a filesystem of its own finds its /tmp as the snapshot left it.
//
// Why: the engine restores what the processes hold (open and mapped files,
// listening sockets), but a closed file — a model unpacked into a
// TemporaryDirectory, the directory of a multiprocessing listener — is
// only in the filesystem. In the host's /tmp it would be one object for
// all restored containers: the first to end would remove it for the rest,
// and only one at a time could bind a listener's path.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "container/dev_shm_inodes.h"

namespace thaw::container {

// The temporary directory of every runtime container, in its own /dev/shm
// (mode 1777, made with it).
inline constexpr const char* kContainerTmp = "/dev/shm/thaw-tmp";

// Where the runtime keeps the copy: in the snapshot's image directory,
// which is replaced as one (a recreated snapshot brings its own).
inline constexpr const char* kImageDevShm = "dev-shm";

struct SavedFiles {
  uint64_t files = 0;  // regular files, symlinks and FIFOs
  uint64_t bytes = 0;  // of the regular files' data
  // What was left out and why ("/dev/shm/x/sock: a socket (the process
  // that listens on it binds it again)"), for the snapshot's notes.
  std::vector<std::string> left_out;
};

// Copies the /dev/shm that process `pid` sees (its container's own) into
// the directory `to` (made; must not exist): directories, regular files
// (holes kept; the names of one file stay one file), symlinks and FIFOs,
// with owner, mode and times, and the list of their inode numbers beside
// it (saved_inodes_path(to)). Paths bound there from the host are mounts,
// not the container's, and are left out, as are sockets and devices. Never
// follows a symlink. A container without /dev/shm leaves `to` empty.
SavedFiles save_dev_shm_files(pid_t pid, const std::string& to);

// The copy save_dev_shm_files made, opened in a container's mount
// namespace before its own /dev/shm hides the host's (THAW_HOME may be
// there), with its list of inode numbers; none for `from` "".
struct SavedDevShm {
  UniqueFd dir;
  SavedInodes inodes;
};
SavedDevShm open_saved_dev_shm_files(const std::string& from);

// Once the container's own /dev/shm is mounted, before anything else is
// made in it: fills it with the files of `saved` (opened from `from`; none
// when `saved.dir` is empty), each with the inode number it had where it can
// (dev_shm_inodes.h), and makes kContainerTmp.
void fill_dev_shm_files(const SavedDevShm& saved, const std::string& from);

}  // namespace thaw::container
