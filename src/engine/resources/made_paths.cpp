// What a restore makes in the filesystem for the process — a unix socket's
// file and the directory made again for it (sockets.cpp), a named file of
// /dev/shm made again from the image (shmem.cpp) — and removes again when
// the restore fails: a failed restore leaves nothing behind. The process
// makes them and reports each on its status pipe; thaw, which kills the
// half-restored process, removes them.
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

void report_made(const RestoreContext& r, const std::string& path) {
  if (r.status_fd < 0) return;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) fail_errno("stat ", path, ", just made");
  std::string line = made_path_line(st, path);
  write_all(r.status_fd, line.data(), line.size(), "the restore's status pipe");
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
  for (auto it = made.rbegin(); it != made.rend(); ++it) {
    std::string at = root + it->path;
    struct stat st;
    if (::lstat(at.c_str(), &st) != 0 || st.st_dev != it->dev || st.st_ino != it->ino) continue;  // not ours any more
    // Best effort: the restore's own error is what its caller needs.
    int rc = S_ISDIR(st.st_mode) ? ::rmdir(at.c_str()) : ::unlink(at.c_str());
    (void)rc;
  }
}

}  // namespace thaw::engine
