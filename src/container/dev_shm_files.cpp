#include "container/dev_shm_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "common/error.h"
#include "common/io.h"
#include "common/unique_fd.h"
#include "container/dev_shm_inodes.h"

namespace thaw::container {

namespace {

UniqueFd open_dir_at(int at, const char* name, const std::string& shown) {
  UniqueFd fd(::openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) fail_errno("open directory ", shown);
  return fd;
}

// Names in the directory `dir` (its own description: reading moves it).
std::vector<std::string> names_in(int dir, const std::string& shown) {
  int own = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* d = own >= 0 ? ::fdopendir(own) : nullptr;
  if (!d) {
    if (own >= 0) ::close(own);
    fail_errno("list ", shown);
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d))
    if (std::string n = e->d_name; n != "." && n != "..") names.push_back(std::move(n));
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// Owner, mode and times of what `fd` (or the symlink `name` in `dir`) is.
void give_attributes(int fd, const struct stat& st, const std::string& shown) {
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (::fchown(fd, st.st_uid, st.st_gid) != 0 || ::fchmod(fd, st.st_mode & 07777) != 0 ||
      ::futimens(fd, times) != 0)
    fail_errno("give ", shown, " its owner, mode and times");
}

// The data of a regular file; holes stay holes (a shared memory object is
// often made with ftruncate and filled in part).
uint64_t copy_data(int from, int to, uint64_t size, const std::string& shown) {
  if (::ftruncate(to, static_cast<off_t>(size)) != 0) fail_errno("size ", shown);
  uint64_t copied = 0;
  std::string buf(1 << 20, '\0');
  off_t pos = 0;
  while (pos < static_cast<off_t>(size)) {
    off_t data = ::lseek(from, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;
    if (data < 0) fail_errno("read ", shown);
    off_t hole = ::lseek(from, data, SEEK_HOLE);
    if (hole < 0) fail_errno("read ", shown);
    hole = std::min<off_t>(hole, static_cast<off_t>(size));
    for (off_t o = data; o < hole;) {
      size_t n = std::min<uint64_t>(hole - o, buf.size());
      pread_all(from, buf.data(), n, o, shown);
      pwrite_all(to, buf.data(), n, o, shown);
      o += static_cast<off_t>(n);
      copied += n;
    }
    pos = hole;
  }
  return copied;
}

struct Copy {
  dev_t dev;  // of the tree's root: an entry on another filesystem is a mount in it
  SavedFiles& out;
  bool filling;  // into a fresh /dev/shm, where make_in_inode_order made its entries empty
  int root;      // the destination's root, which `linked` names paths from
  // A file of several names, by its inode where it is copied from: the
  // path (below the root) of its copy, which its other names link to.
  std::map<std::pair<dev_t, ino_t>, std::string> linked = {};
  SavedInodes* inodes = nullptr;  // where saving lists the number of each entry it keeps
};

// How the copy's root is named in messages, and paths below it.
constexpr const char* kShownRoot = "/dev/shm";
std::string below_root(const std::string& shown) { return shown.substr(std::strlen(kShownRoot) + 1); }

void keep_number(Copy& c, const std::string& path, const struct stat& st) {
  if (c.inodes) c.inodes->push_back({st.st_ino, below_root(path)});
}

void copy_dir(Copy& c, int from, int to, const std::string& shown) {
  for (const auto& name : names_in(from, shown)) {
    std::string path = shown + "/" + name;
    struct stat st;
    if (::fstatat(from, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      fail_errno("stat ", path);
    }
    if (st.st_dev != c.dev) continue;  // bound from the host: not the container's
    if (S_ISDIR(st.st_mode)) {
      if (::mkdirat(to, name.c_str(), 0700) != 0 && !(c.filling && errno == EEXIST))
        fail_errno("make directory ", path);
      keep_number(c, path, st);
      UniqueFd src = open_dir_at(from, name.c_str(), path);
      UniqueFd dst = open_dir_at(to, name.c_str(), path);
      copy_dir(c, src.get(), dst.get(), path);
      give_attributes(dst.get(), st, path);  // after its entries: they change its times
    } else if (S_ISREG(st.st_mode) && st.st_nlink > 1 && c.linked.count({st.st_dev, st.st_ino})) {
      // Another name of a file copied already: one file, as it was.
      // (Filling, make_in_inode_order has linked it already.)
      if (::linkat(c.root, c.linked[{st.st_dev, st.st_ino}].c_str(), to, name.c_str(), 0) != 0 &&
          !(c.filling && errno == EEXIST))
        fail_errno("link ", path, " to ", kShownRoot, "/", c.linked[{st.st_dev, st.st_ino}]);
      keep_number(c, path, st);
      c.out.files++;
    } else if (S_ISREG(st.st_mode)) {
      if (st.st_nlink > 1) c.linked[{st.st_dev, st.st_ino}] = below_root(path);
      UniqueFd src(::openat(from, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      if (!src) fail_errno("open ", path);
      int excl = c.filling ? 0 : O_EXCL;
      UniqueFd dst(::openat(to, name.c_str(), O_WRONLY | O_CREAT | excl | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!dst) fail_errno("create ", path);
      keep_number(c, path, st);
      c.out.bytes += copy_data(src.get(), dst.get(), static_cast<uint64_t>(st.st_size), path);
      give_attributes(dst.get(), st, path);
      c.out.files++;
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = ::readlinkat(from, name.c_str(), target.data(), target.size());
      if (n < 0) fail_errno("read symlink ", path);
      target.resize(static_cast<size_t>(n));
      struct timespec times[2] = {st.st_atim, st.st_mtim};
      keep_number(c, path, st);
      if ((::symlinkat(target.c_str(), to, name.c_str()) != 0 && !(c.filling && errno == EEXIST)) ||
          ::fchownat(to, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0 ||
          ::utimensat(to, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
        fail_errno("make symlink ", path);
      c.out.files++;
    } else if (S_ISFIFO(st.st_mode)) {
      if (::mknodat(to, name.c_str(), S_IFIFO | 0600, 0) != 0 && !(c.filling && errno == EEXIST))
        fail_errno("make FIFO ", path);
      keep_number(c, path, st);
      UniqueFd dst(::openat(to, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
      struct timespec times[2] = {st.st_atim, st.st_mtim};
      // fchmod and fchown take no O_PATH fd: through its /proc link.
      std::string link = cat("/proc/self/fd/", dst.get());
      if (!dst || ::chown(link.c_str(), st.st_uid, st.st_gid) != 0 || ::chmod(link.c_str(), st.st_mode & 07777) != 0 ||
          ::utimensat(to, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0)
        fail_errno("give FIFO ", path, " its owner, mode and times");
      c.out.files++;
    } else if (S_ISSOCK(st.st_mode)) {
      c.out.left_out.push_back(path + ": a socket (a process of the snapshot that listens on it binds it again)");
    } else {
      c.out.left_out.push_back(path + ": a device node");
    }
  }
}

}  // namespace

SavedFiles save_dev_shm_files(pid_t pid, const std::string& to) {
  SavedFiles out;
  std::string root = cat("/proc/", pid, "/root/dev/shm");
  UniqueFd from(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  // A host without /dev/shm gives its containers none (mounts.cpp): an
  // empty copy, and the snapshot is taken as before.
  if (!from && errno != ENOENT) fail_errno("open the container's /dev/shm (", root, ")");
  if (::mkdir(to.c_str(), 0700) != 0) fail_errno("make ", to);
  if (!from) {
    write_saved_inodes({}, saved_inodes_path(to));
    return out;
  }
  struct stat st;
  if (::fstat(from.get(), &st) != 0) fail_errno("stat ", root);
  UniqueFd dst = open_dir_at(AT_FDCWD, to.c_str(), to);
  SavedInodes inodes;
  Copy c{st.st_dev, out, false, dst.get()};
  c.inodes = &inodes;
  with_context("save the files of the container's /dev/shm", [&] {
    copy_dir(c, from.get(), dst.get(), kShownRoot);
    write_saved_inodes(inodes, saved_inodes_path(to));
  });
  return out;
}

SavedDevShm open_saved_dev_shm_files(const std::string& from) {
  if (from.empty()) return {};
  return with_context("the files of the snapshot's /dev/shm", [&] {
    return SavedDevShm{open_dir_at(AT_FDCWD, from.c_str(), from), read_saved_inodes(saved_inodes_path(from))};
  });
}

void fill_dev_shm_files(const SavedDevShm& saved, const std::string& from) {
  if (saved.dir) {
    with_context(cat("give the container the files of its snapshot's /dev/shm (", from, ")"), [&] {
      UniqueFd dst = open_dir_at(AT_FDCWD, "/dev/shm", "/dev/shm");
      struct stat st;
      if (::fstat(saved.dir.get(), &st) != 0) fail_errno("stat ", from);
      make_in_inode_order(saved.dir.get(), dst.get(), saved.inodes);
      SavedFiles ignored;
      Copy c{st.st_dev, ignored, true, dst.get()};
      copy_dir(c, saved.dir.get(), dst.get(), kShownRoot);
    });
  }
  if (::mkdir(kContainerTmp, 0700) == 0) {
    // mkdir's mode passes the umask: the sticky, world-writable one is set apart.
    if (::chmod(kContainerTmp, 01777) != 0) fail_errno("make ", kContainerTmp, " writable by all");
  } else if (errno != EEXIST) {
    fail_errno("make ", kContainerTmp);
  }
}

}  // namespace thaw::container
