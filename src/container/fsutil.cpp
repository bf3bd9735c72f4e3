#include "container/fsutil.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "common/error.h"
#include "common/io.h"
#include "common/unique_fd.h"

namespace thaw::container {

void mkdir_p(const std::string& path, unsigned mode) {
  if (path.empty()) return;
  std::string cur;
  for (size_t i = 0; i <= path.size(); i++) {
    if (i < path.size() && path[i] != '/') continue;
    cur = path.substr(0, i);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) fail_errno("create directory ", cur);
  }
  if (!is_dir(path)) fail("create directory ", path, ": exists and is not a directory");
}

void write_file_atomic(const std::string& path, const std::string& data, unsigned mode) {
  std::string tmp = cat(path, ".tmp.", ::getpid(), ".", ::gettid());
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
    if (!fd) fail_errno("create ", tmp);
    write_all(fd.get(), data.data(), data.size(), tmp);
    if (::fsync(fd.get()) != 0) fail_errno("fsync ", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    errno = e;
    fail_errno("rename ", tmp, " to ", path);
  }
}

namespace {

// Empties the directory `dir` (`shown` in messages), through fds: a path
// below it may be longer than PATH_MAX (a container's /dev/shm copied into
// a snapshot's image, under $THAW_HOME, may hold such paths).
void remove_below(int dir, const std::string& shown) {
  std::vector<std::string> names;
  int own = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* d = own >= 0 ? ::fdopendir(own) : nullptr;
  if (!d) {
    if (own >= 0) ::close(own);
    fail_errno("list ", shown);
  }
  while (dirent* e = ::readdir(d))
    if (std::string n = e->d_name; n != "." && n != "..") names.push_back(std::move(n));
  ::closedir(d);
  for (const auto& n : names) {
    if (::unlinkat(dir, n.c_str(), 0) == 0 || errno == ENOENT) continue;
    if (errno != EISDIR) fail_errno("remove ", shown, "/", n);
    UniqueFd sub(::openat(dir, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub && errno == ENOENT) continue;
    if (!sub) fail_errno("open ", shown, "/", n);
    remove_below(sub.get(), shown + "/" + n);
    if (::unlinkat(dir, n.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) fail_errno("remove ", shown, "/", n);
  }
}

}  // namespace

void remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir && errno == ENOENT) return;
    if (!dir) fail_errno("open ", path);
    remove_below(dir.get(), path);
    if (::rmdir(path.c_str()) != 0 && errno != ENOENT) fail_errno("remove ", path);
  } else if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    fail_errno("remove ", path);
  }
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = ::opendir(path.c_str());
  if (!d) return out;
  while (auto* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void copy_file(const std::string& from, const std::string& to) {
  struct stat st;
  if (::stat(from.c_str(), &st) != 0) fail_errno("stat ", from);
  auto slash = to.rfind('/');
  if (slash != std::string::npos && slash > 0) mkdir_p(to.substr(0, slash));
  std::string data = read_file(from);
  UniqueFd fd(::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 07777));
  if (!fd) fail_errno("create ", to);
  write_all(fd.get(), data.data(), data.size(), to);
}

uint64_t tree_bytes(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  if (!S_ISDIR(st.st_mode)) return S_ISREG(st.st_mode) ? uint64_t(st.st_size) : 0;
  uint64_t sum = 0;
  for (const auto& n : list_dir(path)) sum += tree_bytes(path + "/" + n);
  return sum;
}

}  // namespace thaw::container
