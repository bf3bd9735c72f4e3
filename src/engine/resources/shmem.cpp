// Shared memory objects — memfds and MAP_SHARED|MAP_ANONYMOUS memory —,
// files deleted while open or mapped, whose content belongs to no file a
// restore could open, and the named files of /dev/shm, which live in memory
// only and vanish with it (a container's own /dev/shm ends with the
// container): stored once per object (by device and inode), whether the
// process reaches it through mappings, fds, or both.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "common/io.h"
#include "proc/procfs.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

using image::kPageSize;

namespace {

// An open file description of our own for `fd`'s object: `fd` may share the
// target's (pidfd_getfd), and seeking for data below would move its offset.
UniqueFd own_description(int fd) {
  UniqueFd own(::open(cat("/proc/self/fd/", fd).c_str(), O_RDONLY | O_CLOEXEC));
  if (!own) fail_errno("reopen shared memory object");
  return own;
}

// An fd of a new shared anonymous object (what mmap(MAP_SHARED |
// MAP_ANONYMOUS) makes, "/dev/zero (deleted)" in maps), which the processes
// of a tree then map as they did theirs. Where map_files cannot be opened
// (it takes CAP_SYS_ADMIN), a memfd serves, under another name in maps.
int shared_anonymous_object(uint64_t size) {
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      auto at = reinterpret_cast<uint64_t>(p);
      int fd = ::open(cat("/proc/self/map_files/", std::hex, at, "-", at + size).c_str(), O_RDWR | O_CLOEXEC);
      ::munmap(p, size);
      if (fd >= 0) return fd;
    }
  }
  return ::memfd_create("thaw-shared-anon", MFD_CLOEXEC);
}

}  // namespace

int dump_deleted_file(CheckpointContext& c, int target_fd, const std::string& link) {
  struct stat st;
  if (::fstat(target_fd, &st) != 0) fail_errno("stat the deleted file");
  // What it holds on disk: its holes are not stored.
  uint64_t held = std::min<uint64_t>(st.st_size, uint64_t(st.st_blocks) * 512);
  if (held > kDeletedFileLimit)
    fail("the file was deleted while open (or mapped) and holds ", held >> 20, " MiB, more than the ",
         kDeletedFileLimit >> 20, " MiB a checkpoint copies into the image; close it before the checkpoint, or keep "
         "it under a name until after it");
  std::string path = proc::without_deleted(link);
  size_t slash = path.rfind('/');
  return dump_shmem_object(c, target_fd, true, path.substr(slash + 1), slash == 0 ? "/" : path.substr(0, slash));
}

// What is kept of a named file of /dev/shm (shm_open objects, named
// semaphores, multiprocessing.shared_memory): all of it, up to
// kDeletedFileLimit, so that a restore where it is gone — in a fresh
// container's /dev/shm, or after its last user removed it — makes it
// again. A larger one stays a file by name, which must be there. Of other
// tmpfs files only small ones mapped shared are kept: a named POSIX
// semaphore its creator removes when it ends (Python's multiprocessing does
// at exit for a "spawn" pool's), which the pool's workers open by name.
int keep_tmpfs_file(CheckpointContext& c, int target_fd, const std::string& path, bool mapped_shared) {
  struct stat st;
  struct statfs fs;
  if (::fstat(target_fd, &st) != 0 || !S_ISREG(st.st_mode) || ::fstatfs(target_fd, &fs) != 0 ||
      fs.f_type != TMPFS_MAGIC)
    return -1;
  uint64_t held = std::min<uint64_t>(st.st_size, uint64_t(st.st_blocks) * 512);
  bool in_shm = path.rfind("/dev/shm/", 0) == 0;
  bool keep = in_shm ? held <= kDeletedFileLimit : mapped_shared && uint64_t(st.st_size) <= kKeptSharedFileMax;
  if (!keep) return -1;
  int idx = dump_shmem_object(c, target_fd, false, path.substr(path.rfind('/') + 1));
  image::Shmem& obj = (c.shmem_owner ? *c.shmem_owner : c).m.shmem[idx];
  obj.path = path;
  obj.uid = st.st_uid;
  obj.gid = st.st_gid;
  obj.mode = st.st_mode & 07777;
  obj.mtime_ns = mtime_ns(st);
  // Its directories below /dev/shm, as the process sees them.
  obj.dirs.clear();
  for (size_t at = path.find('/', 9); in_shm && at != std::string::npos; at = path.find('/', at + 1)) {
    struct stat ds;
    if (::stat(cat("/proc/", c.pid, "/root", path.substr(0, at)).c_str(), &ds) == 0)
      obj.dirs.push_back({uint32_t(ds.st_uid), uint32_t(ds.st_gid), uint32_t(ds.st_mode & 07777)});
    else
      obj.dirs.push_back({uint32_t(st.st_uid), uint32_t(st.st_gid), 0700});
  }
  return idx;
}

int dump_shmem_object(CheckpointContext& target, int target_fd, bool memfd, const std::string& name,
                      const std::string& dir) {
  CheckpointContext& c = target.shmem_owner ? *target.shmem_owner : target;
  struct stat st;
  if (::fstat(target_fd, &st) != 0) fail_errno("stat shared memory object");
  auto key = std::make_pair(uint64_t(st.st_dev), uint64_t(st.st_ino));
  auto it = c.shmem_index.find(key);
  if (it != c.shmem_index.end()) return it->second;

  image::Shmem obj;
  obj.dev = st.st_dev;
  obj.ino = st.st_ino;
  obj.size = st.st_size;
  obj.memfd = memfd;
  obj.name = name;
  obj.dir = dir;
  if (!dir.empty()) {
    obj.uid = st.st_uid;
    obj.gid = st.st_gid;
    obj.mode = st.st_mode & 07777;
  }
  UniqueFd own = own_description(target_fd);
  int fd = own.get();
  if (memfd) {
    int seals = ::fcntl(fd, F_GET_SEALS);
    obj.seals = seals > 0 ? seals : 0;
  }
  // Only the parts that hold data: holes read back as zeros anyway.
  std::vector<unsigned char> buf(image::kSegmentBytes);
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole up to the end
    if (data < 0) fail_errno("find data after offset ", pos);
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) fail_errno("find the end of data at offset ", data);
    hole = std::min<off_t>(hole, st.st_size);
    for (off_t o = data; o < hole;) {
      uint64_t n = std::min<uint64_t>(hole - o, buf.size());
      pread_all(fd, buf.data(), n, o, "shared memory object");
      uint64_t padded = (n + kPageSize - 1) & ~(kPageSize - 1);
      std::fill(buf.begin() + n, buf.begin() + padded, 0);
      obj.runs.push_back(c.writer.append(o, buf.data(), n));
      o += n;
    }
    pos = hole;
  }
  c.m.shmem.push_back(std::move(obj));
  int idx = static_cast<int>(c.m.shmem.size() - 1);
  c.shmem_index[key] = idx;
  return idx;
}

namespace {

// Fills the object made anew (`made`, ours to close) and gives it its
// owner, mode and seals. Parked, as thaw's own fds are.
UniqueFd fill_object(RestoreContext& r, const image::Shmem& obj, int made, const std::string& what) {
  UniqueFd fd(r.park_fd(made));
  // Made by thaw, it is root's, 0600: a process of another user could
  // not change its mode or open it again through /proc/self/fd.
  // A kept file's are always recorded (its mode may be 0).
  if ((obj.mode != 0 || !obj.path.empty()) &&
      (::fchown(fd.get(), obj.uid, obj.gid) != 0 || ::fchmod(fd.get(), obj.mode) != 0))
    fail_errno(what, ": give it its owner (", obj.uid, ":", obj.gid, ") and mode (", std::oct, obj.mode, ")");
  if (::ftruncate(fd.get(), obj.size) != 0) fail_errno(what, ": set size");
  for (const auto& run : obj.runs) {
    std::string data = r.read_run(run);
    pwrite_all(fd.get(), data.data(), data.size(), run.addr, what);
  }
  // F_SEAL_SEAL last: it forbids adding the others.
  unsigned seals = obj.seals & ~F_SEAL_SEAL;
  if (seals && ::fcntl(fd.get(), F_ADD_SEALS, seals) != 0) fail_errno(what, ": seal");
  if ((obj.seals & F_SEAL_SEAL) && ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SEAL) != 0) fail_errno(what, ": seal");
  return fd;
}

// The object made anew and filled; `on_disk`: a deleted file, unnamed in
// its directory (O_TMPFILE), else in memory.
UniqueFd make_object(RestoreContext& r, const image::Shmem& obj, bool on_disk, const std::string& what) {
  unsigned flags = MFD_CLOEXEC | (obj.seals ? MFD_ALLOW_SEALING : 0);
  // memfd_create takes names of up to 249 bytes ("memfd:" makes a NAME_MAX).
  int made = on_disk      ? ::open(obj.dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)
             : obj.memfd ? ::memfd_create(obj.name.substr(0, 249).c_str(), flags)
                         : shared_anonymous_object(obj.size);
  if (made < 0) fail_errno(what, on_disk ? ": create in its directory" : ": create");
  return fill_object(r, obj, made, what);
}

// A kept file found under its name is used as it is: it is the object
// the processes that open it by name share (the original's, or the one
// an earlier restore made). Gone, it is made under a temporary name and
// linked to its own, as sem_open does: a process of the same tree or
// another restore that made it first wins, and this one uses theirs.
void make_kept_file_if_gone(RestoreContext& r, const image::Shmem& obj) {
  std::string what = cat("file ", obj.path, " (kept in the image)");
  struct stat st;
  if (::stat(obj.path.c_str(), &st) == 0) return;
  if (errno != ENOENT) fail_errno(what, ": stat");
  // Its directories of /dev/shm too, where gone (a fresh /dev/shm has
  // none), with their owner and mode.
  size_t k = 0;
  bool in_shm = obj.path.rfind("/dev/shm/", 0) == 0;
  for (size_t at = obj.path.find('/', 9); in_shm && at != std::string::npos; at = obj.path.find('/', at + 1), k++) {
    std::string d = obj.path.substr(0, at);
    if (::mkdir(d.c_str(), 0700) != 0) {
      if (errno == EEXIST) continue;
      fail_errno(what, " is gone; make its directory ", d);
    }
    report_made(r, d);
    if (k < obj.dirs.size() && (::chown(d.c_str(), obj.dirs[k][0], obj.dirs[k][1]) != 0 ||
                                ::chmod(d.c_str(), obj.dirs[k][2]) != 0))
      fail_errno(what, " is gone; give its directory ", d, " its owner and mode");
  }
  std::string dir = obj.path.substr(0, obj.path.rfind('/') + 1);
  std::string tmp = cat(dir, ".thaw-", random_hex(8));
  int made = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (made < 0) fail_errno(what, " is gone; make it again: create ", tmp);
  try {
    UniqueFd fd = fill_object(r, obj, made, what);
    // Its time as at checkpoint: a private mapping of it is checked
    // against that (check_mapped_files), as of any mapped file.
    struct timespec times[2] = {{0, UTIME_OMIT}, {obj.mtime_ns / 1000000000, obj.mtime_ns % 1000000000}};
    if (obj.mtime_ns != 0 && ::futimens(fd.get(), times) != 0) fail_errno(what, ": set its time");
    if (::link(tmp.c_str(), obj.path.c_str()) == 0)
      report_made(r, obj.path);
    else if (errno != EEXIST)
      fail_errno(what, " is gone; make it again: link");
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  ::unlink(tmp.c_str());
}

}  // namespace

void restore_shmem_objects(RestoreContext& r) {
  const auto& objects = r.shmem();
  r.shmem_fds.assign(objects.size(), -1);
  for (size_t i = 0; i < objects.size(); i++) {
    const auto& obj = objects[i];
    if (!obj.path.empty()) {
      // Opened and mapped by its name, as it was. Not for a template's held
      // process: it never runs, and would make the file in the /dev/shm of
      // whoever holds it (the host's); each copy makes its own in its own
      // namespace (template.cpp).
      if (!r.held) make_kept_file_if_gone(r, obj);
      continue;
    }
    // Shared anonymous memory is made again by mmap itself, except in a
    // tree, where several processes may map it: one memfd serves them all.
    if (!obj.memfd && r.tree.empty()) continue;
    std::string what = !obj.dir.empty() ? cat("deleted file ", obj.dir, "/", obj.name)
                       : obj.memfd      ? cat("memfd '", obj.name, "'")
                                        : std::string("shared anonymous memory");
    UniqueFd fd;
    // A deleted file is made again where it was, on its filesystem, with
    // no name; where it cannot be (its directory gone, its filesystem
    // full or without O_TMPFILE), in memory.
    if (!obj.dir.empty()) {
      try {
        fd = make_object(r, obj, true, what);
      } catch (const Error&) {
        fd.reset();
      }
    }
    if (!fd) fd = make_object(r, obj, false, what);
    r.shmem_fds[i] = fd.get();
    // The restorer closes it once its mappings are made (files reopen it).
    r.plan.close_fds.push_back(fd.release());
  }
}

}  // namespace thaw::engine
