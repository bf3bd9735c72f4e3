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
#include <sys/stat.h>
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

// Best effort: the restore's own error is what its caller needs.
void remove_if_same(const std::string& at, const MadePath& m) {
  struct stat st;
  if (::lstat(at.c_str(), &st) != 0 || st.st_dev != m.dev || st.st_ino != m.ino) return;  // not ours any more
  int rc = S_ISDIR(st.st_mode) ? ::rmdir(at.c_str()) : ::unlink(at.c_str());
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
      remove_if_same(it->made.path, it->made);
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
  // were made (init shares it, and lives until thaw kills it).
  std::string root = cat("/proc/", init, "/root");
  for (auto it = made.rbegin(); it != made.rend(); ++it) remove_if_same(root + it->path, *it);
}

}  // namespace thaw::engine
