#include "container/beneath.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/io.h"

namespace thaw::container {

namespace {

std::string why(int err) {
  switch (err) {
    case ELOOP: return "is a symbolic link (or passes through one), which is not followed here";
    case EXDEV: return "leads out of its directory";
    case ENOENT: return "does not exist";
    case ENOTDIR: return "is not a directory (or passes through a file)";
    case EEXIST: return "exists: add --force to overwrite it";
    default: return std::strerror(err);
  }
}

// A directory's entries, read through an fd of its own (closedir closes
// it; `dir` may be an O_PATH fd, which cannot be read).
std::vector<std::string> names_in(int dir) {
  int fd = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail_errno("open a directory to read it");
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    fail_errno("read a directory");
  }
  std::vector<std::string> out;
  while (auto* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

void copy_data(int from, int to, const std::string& shown) {
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(from, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno(shown, ": read");
    if (n == 0) return;
    write_all(to, buf, static_cast<size_t>(n), shown);
  }
}

std::string join(const std::string& a, const std::string& b) { return a.empty() || a.back() == '/' ? a + b : a + "/" + b; }

}  // namespace

UniqueFd open_beneath(int dir, const std::string& rel, int flags, const std::string& shown, mode_t mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  for (;;) {
    long fd = ::syscall(SYS_openat2, dir, rel.empty() ? "." : rel.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno == EINTR || errno == EAGAIN) continue;  // EAGAIN: a rename raced the lookup
    int err = errno;
    // O_PATH | O_NOFOLLOW opens a final link itself, so O_DIRECTORY then
    // says ENOTDIR: name it for what it is (a look only, for the message).
    struct stat st;
    if (err == ENOTDIR && ::fstatat(dir, rel.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
    fail(shown, ": ", why(err));
  }
}

UniqueFd make_dirs_beneath(int dir, const std::string& rel, const std::string& shown) {
  UniqueFd cur = open_beneath(dir, "", O_PATH | O_DIRECTORY, shown);
  size_t at = 0;
  while (at < rel.size()) {
    size_t slash = rel.find('/', at);
    std::string part = rel.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    at = slash == std::string::npos ? rel.size() : slash + 1;
    if (part.empty() || part == ".") continue;
    if (::mkdirat(cur.get(), part.c_str(), 0755) != 0 && errno != EEXIST) fail_errno(shown, ": create ", part);
    cur = open_beneath(cur.get(), part, O_PATH | O_DIRECTORY, shown);
  }
  return cur;
}

std::vector<Entry> list_beneath(int dir) {
  std::vector<Entry> out;
  for (const auto& n : names_in(dir)) {
    struct stat st;
    if (::fstatat(dir, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    char type = S_ISDIR(st.st_mode) ? 'd' : S_ISREG(st.st_mode) ? 'f' : S_ISLNK(st.st_mode) ? 'l' : '?';
    out.push_back({n, type, st.st_mtim.tv_sec, type == 'f' ? static_cast<uint64_t>(st.st_size) : 0});
  }
  return out;
}

void copy_into(const std::string& local, int dir, const std::string& name, bool force, const std::string& shown) {
  struct stat st;
  if (::lstat(local.c_str(), &st) != 0) fail_errno(local);
  if (S_ISLNK(st.st_mode)) fail(local, " is a symbolic link, which thaw volume does not copy");
  if (S_ISDIR(st.st_mode)) {
    if (::mkdirat(dir, name.c_str(), 0755) != 0 && errno != EEXIST) fail_errno(shown, ": create");
    UniqueFd sub = open_beneath(dir, name, O_PATH | O_DIRECTORY, shown);
    UniqueFd src(::open(local.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (!src) fail_errno(local);
    for (const auto& n : names_in(src.get())) copy_into(join(local, n), sub.get(), n, force, join(shown, n));
    return;
  }
  if (!S_ISREG(st.st_mode)) fail(local, ": not a regular file or a directory; not copied");
  UniqueFd src(::open(local.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!src) fail_errno(local);
  // O_NONBLOCK: a FIFO put there must not block the copy; checked below.
  UniqueFd dst = open_beneath(dir, name, O_WRONLY | O_CREAT | O_NONBLOCK | (force ? 0 : O_EXCL), shown,
                              st.st_mode & 0777);
  struct stat dt;
  if (::fstat(dst.get(), &dt) != 0 || !S_ISREG(dt.st_mode)) fail(shown, " exists and is not a regular file");
  if (::ftruncate(dst.get(), 0) != 0) fail_errno(shown, ": truncate");
  copy_data(src.get(), dst.get(), shown);
}

void copy_out_of(int dir, const std::string& name, const std::string& local, bool force, const std::string& shown) {
  UniqueFd src = open_beneath(dir, name, O_RDONLY | O_NONBLOCK, shown);
  struct stat st;
  if (::fstat(src.get(), &st) != 0) fail_errno(shown);
  if (S_ISDIR(st.st_mode)) {
    struct stat lt;
    if (::stat(local.c_str(), &lt) == 0) {
      if (!S_ISDIR(lt.st_mode)) fail(local, " exists and is not a directory");
    } else if (::mkdir(local.c_str(), 0755) != 0) {
      fail_errno("create ", local);
    }
    for (const auto& n : names_in(src.get())) copy_out_of(src.get(), n, join(local, n), force, join(shown, n));
    return;
  }
  if (!S_ISREG(st.st_mode)) fail(shown, ": not a regular file or a directory; not copied");
  // The user's side: an existing file is kept unless --force.
  UniqueFd dst(::open(local.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_TRUNC | (force ? 0 : O_EXCL),
                      st.st_mode & 0777));
  if (!dst && errno == EEXIST) fail(local, " exists: add --force to overwrite it");
  if (!dst) fail_errno("create ", local);
  copy_data(src.get(), dst.get(), shown);
}

void remove_beneath(int dir, const std::string& name) {
  if (::unlinkat(dir, name.c_str(), 0) == 0 || errno == ENOENT) return;
  if (errno != EISDIR && errno != EPERM) fail_errno("remove ", name);
  // A directory: empty it through its own fd, then remove it.
  {
    UniqueFd sub = open_beneath(dir, name, O_RDONLY | O_DIRECTORY, name);
    for (const auto& n : names_in(sub.get())) remove_beneath(sub.get(), n);
  }
  if (::unlinkat(dir, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) fail_errno("remove ", name);
}

}  // namespace thaw::container
