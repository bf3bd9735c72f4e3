// What a restore makes in the filesystem for the process — a unix socket's
// file and the directory made again for it (sockets.cpp), a named file of
// /dev/shm made again from the image (shmem.cpp) — and removes again when
// the restore fails: a failed restore leaves nothing behind. The process
// makes them and reports each on its status pipe; thaw, which kills the
// half-restored process, removes them. A process that fails by itself
// removes its own first, while its sockets are still bound there, and says
// so ("C"): once it has exited, another restore may replace a socket file
// it made, stale then, with one whose inode number is the same (ext4 gives
// a freed one again at once), which thaw would take for the one it made;
// and its init, with its mount namespace, may be gone before thaw gets
// there.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <cstdio>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

namespace {

// What this process reported, by pid: a tree's child has a copy of its
// parent's list, not its own.
struct Reported {
  pid_t by;
  MadePath made;
};

std::vector<Reported>& reported() {
  static std::vector<Reported> list;
  return list;
}

// Removes m's file if it is still the one made (device and inode), seen
// from `root` (an fd of a process's root; -1: our own, `root_path` for a
// kernel without openat2). Best effort: the restore's own error is what
// its caller needs. Through an fd of its directory, looked up once: the
// file checked is the file removed, whatever the directory's owner does to
// the path meanwhile (a link in place of the directory would have had
// root remove a file of that name elsewhere).
void remove_if_same(int root, const std::string& root_path, const MadePath& m) {
  size_t slash = m.path.rfind('/');
  std::string dir = slash == 0 ? "/" : m.path.substr(0, slash), base = m.path.substr(slash + 1);
  UniqueFd d;
  if (root >= 0) {
    open_how how{};
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_IN_ROOT;  // an absolute link leads where it led the process
    d.reset(static_cast<int>(::syscall(SYS_openat2, root, dir.c_str(), &how, sizeof how)));
    if (!d && errno == ENOSYS) d.reset(::open((root_path + dir).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  } else {
    d.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }
  struct stat st;
  if (!d || ::fstatat(d.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_dev != m.dev ||
      st.st_ino != m.ino)
    return;  // not ours any more
  int rc = ::unlinkat(d.get(), base.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
  (void)rc;
}

}  // namespace

void report_made(const RestoreContext& r, const std::string& path) {
  if (r.status_fd < 0) return;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) fail_errno("stat ", path, ", just made");
  std::string line = made_path_line(st, path);
  write_all(r.status_fd, line.data(), line.size(), "the restore's status pipe");
  reported().push_back({::getpid(), MadePath{st.st_dev, st.st_ino, path}});
}

void remove_own_made_paths(int status_fd) {
  bool any = false;
  for (auto it = reported().rbegin(); it != reported().rend(); ++it)
    if (it->by == ::getpid()) {
      remove_if_same(-1, "", it->made);
      any = true;
    }
  if (!any) return;
  ssize_t ignored = ::write(status_fd, "C\n", 2);
  (void)ignored;
}

std::string made_path_line(const struct stat& st, const std::string& path) {
  return cat("M ", uint64_t(st.st_dev), " ", uint64_t(st.st_ino), " ", to_hex(path.data(), path.size()), "\n");
}

bool parse_made_path(const std::string& line, MadePath* out) {
  char hex[2 * PATH_MAX + 1];
  unsigned long long dev = 0, ino = 0;
  if (line.size() > sizeof hex || std::sscanf(line.c_str(), "M %llu %llu %s", &dev, &ino, hex) != 3) return false;
  std::string h = hex;
  if (h.size() % 2 || h.find_first_not_of("0123456789abcdef") != std::string::npos) return false;
  auto bytes = from_hex(h);
  *out = MadePath{dev, ino, std::string(bytes.begin(), bytes.end())};
  return !out->path.empty() && out->path[0] == '/';
}

void remove_made_paths(pid_t init, const std::vector<MadePath>& made) {
  // Through init's root: the process's mount namespace, where the paths
  // were made (init shares it; once the process has ended, init may have
  // too, but such a process removed its own: remove_own_made_paths).
  std::string root_path = cat("/proc/", init, "/root");
  UniqueFd root(::open(root_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return;  // init is gone, with its mount namespace
  for (auto it = made.rbegin(); it != made.rend(); ++it) remove_if_same(root.get(), root_path, *it);
}

}  // namespace thaw::engine
