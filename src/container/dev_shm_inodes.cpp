#include "container/dev_shm_inodes.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/error.h"
#include "common/io.h"
#include "common/unique_fd.h"
#include "container/fsutil.h"

namespace thaw::container {

namespace {

// The directory `rel` (a path relative to `root`, "" for root itself),
// never through a symlink; an empty fd where it is not there (yet).
UniqueFd open_parent(int root, const std::string& rel) {
  UniqueFd dir(::openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) fail_errno("open /dev/shm");
  for (const auto& part : split(rel, '/')) {
    if (part.empty()) continue;
    UniqueFd next(::openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) {
      if (errno == ENOENT) return UniqueFd();
      fail_errno("open /dev/shm/", rel);
    }
    dir = std::move(next);
  }
  return dir;
}

// Makes `name` in `dir` as `st` (of the copy's `from`) is, empty; its
// number, 0 where it was there already.
uint64_t make_empty(int saved, const std::string& from, const struct stat& st, int dir, const std::string& name,
                    const std::string& shown) {
  int rc = 0;
  if (S_ISDIR(st.st_mode)) {
    rc = ::mkdirat(dir, name.c_str(), 0700);
  } else if (S_ISREG(st.st_mode)) {
    UniqueFd fd(::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    rc = fd ? 0 : -1;
  } else if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = ::readlinkat(saved, from.c_str(), target.data(), target.size());
    if (n < 0) fail_errno("read symlink ", shown);
    target.resize(static_cast<size_t>(n));
    rc = ::symlinkat(target.c_str(), dir, name.c_str());
  } else if (S_ISFIFO(st.st_mode)) {
    rc = ::mknodat(dir, name.c_str(), S_IFIFO | 0600, 0);
  } else {
    return 0;
  }
  if (rc != 0) {
    if (errno == EEXIST) return 0;
    fail_errno("make ", shown);
  }
  struct stat made;
  if (::fstatat(dir, name.c_str(), &made, AT_SYMLINK_NOFOLLOW) != 0) fail_errno("stat ", shown);
  return made.st_ino;
}

// Takes the tmpfs's next number with a file that is gone at once.
void skip_number(int root) {
  UniqueFd fd(::openat(root, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
  if (!fd) fail_errno("make a temporary file in /dev/shm to skip an inode number");
}

}  // namespace

std::string saved_inodes_path(const std::string& saved_dir) { return saved_dir + ".inodes"; }

// One entry: the number in decimal, a NUL, the path, a NUL (a path holds
// any byte but NUL).
void write_saved_inodes(const SavedInodes& list, const std::string& path) {
  std::string data;
  for (const auto& e : list) {
    data += std::to_string(e.ino);
    data.push_back('\0');
    data += e.path;
    data.push_back('\0');
  }
  write_file_atomic(path, data, 0600);
}

SavedInodes read_saved_inodes(const std::string& path) {
  std::string data;
  if (!try_read_file(path, &data)) return {};
  SavedInodes list;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t a = data.find('\0', pos);
    size_t b = a == std::string::npos ? a : data.find('\0', a + 1);
    if (b == std::string::npos) fail("the list of inode numbers ", path, " is cut short");
    try {
      list.push_back({std::stoull(data.substr(pos, a - pos)), data.substr(a + 1, b - a - 1)});
    } catch (const std::exception&) {
      fail("the list of inode numbers ", path, " holds a number that is none: ", data.substr(pos, a - pos));
    }
    pos = b + 1;
  }
  return list;
}

void make_in_inode_order(int saved, int root, const SavedInodes& list) {
  SavedInodes order = list;
  std::sort(order.begin(), order.end(), [](const auto& x, const auto& y) { return x.ino < y.ino; });
  struct stat rst;
  if (::fstat(root, &rst) != 0) fail_errno("stat /dev/shm");
  uint64_t next = rst.st_ino + 1;  // nothing else made since the mount
  // A file of several names (hard links) is listed once for each: the
  // first made, the others are links to it, as they were (made as files
  // of their own, each would take a number of another).
  uint64_t last_ino = 0;
  std::string last_made;
  for (const auto& e : order) {
    std::string shown = "/dev/shm/" + e.path;
    if (e.ino == last_ino && !last_made.empty()) {
      if (::linkat(root, last_made.c_str(), root, e.path.c_str(), 0) != 0 && errno != EEXIST && errno != ENOENT)
        fail_errno("link ", shown, " to /dev/shm/", last_made);
      continue;
    }
    struct stat st;
    if (::fstatat(saved, e.path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      fail_errno("stat the copy of ", shown);
    }
    size_t slash = e.path.rfind('/');
    UniqueFd dir = open_parent(root, slash == std::string::npos ? "" : e.path.substr(0, slash));
    last_ino = e.ino;
    last_made.clear();
    if (!dir) continue;  // moved into a directory made after it: made with the copy
    for (; next < e.ino; next++) skip_number(root);
    if (uint64_t got = make_empty(saved, e.path, st, dir.get(),
                                  slash == std::string::npos ? e.path : e.path.substr(slash + 1), shown)) {
      next = got + 1;
      if (S_ISREG(st.st_mode) || S_ISFIFO(st.st_mode)) last_made = e.path;
    }
  }
}

}  // namespace thaw::container
