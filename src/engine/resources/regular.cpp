// Files reopened by path: regular files, directories, character devices,
// named FIFOs, and memfds and deleted files (which have no path: they
// reopen the object recreated by shmem.cpp). A file that was deleted or changed is detected
// and named, never silently reopened with other content; only a log (a file
// opened write-only to append to it) follows its path when it was rotated,
// and SQLite's WAL files theirs (sqlite_wal.cpp).
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

using nlohmann::json;

std::string file_changes(uint64_t size, uint64_t ino, int64_t was_mtime_ns, const struct stat& now) {
  std::string out;
  auto add = [&](const std::string& what) { out += (out.empty() ? "" : ", ") + what; };
  if (uint64_t(now.st_size) != size) add(cat("size ", size, " -> ", now.st_size, " bytes"));
  if (now.st_ino != ino) add(cat("inode ", ino, " -> ", now.st_ino));
  int64_t mtime = mtime_ns(now);
  if (mtime != was_mtime_ns) {
    char delta[48];
    std::snprintf(delta, sizeof delta, "%+.3f", double(mtime - was_mtime_ns) / 1e9);
    add(cat("modified: its modification time moved by ", delta, " s"));
  }
  return out;
}

namespace {

bool match(const FdProbe& p) {
  return S_ISREG(p.st.st_mode) || S_ISDIR(p.st.st_mode) || S_ISCHR(p.st.st_mode) ||
         (S_ISFIFO(p.st.st_mode) && !p.link.empty() && p.link[0] == '/');
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>&) {
  json f{{"flags", p.flags}, {"pos", p.info_number("pos")}};
  if (link_is(p, "/memfd:")) {
    std::string name = proc::without_deleted(p.link.substr(7));
    f["memfd"] = true;
    f["shmem"] = dump_shmem_object(c, p.dup.get(), true, name);
    return f;
  }
  if (proc::unlinked(c.pid, p.link, p.st)) {
    // A deleted file of a tmpfs lives in memory only, like a memfd, and
    // comes back as one (under its base name), sharing the object with its
    // mappings: Python's multiprocessing heap (Value, Array) keeps an fd of
    // its deleted /dev/shm arena open beside the shared mapping of it.
    struct statfs fs;
    if (S_ISREG(p.st.st_mode) && ::fstatfs(p.dup.get(), &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
      std::string name = proc::without_deleted(p.link);
      f["memfd"] = true;
      f["shmem"] = dump_shmem_object(c, p.dup.get(), true, name.substr(name.rfind('/') + 1));
      return f;
    }
    // A deleted file of a disk (an anonymous temporary file, such as
    // Python's tempfile.TemporaryFile()): its content is in the image, and
    // each restore makes it anew, without a name, where it was.
    if (S_ISREG(p.st.st_mode) && p.st.st_nlink == 0) {
      f["memfd"] = true;
      f["shmem"] = dump_deleted_file(c, p.dup.get(), p.link);
      return f;
    }
    fail("the file was moved or deleted while open, and its name now is another file's or none a restore "
         "could open; not supported: keep the file under its name until after the checkpoint");
  }
  f["path"] = p.link;
  f["dev"] = p.st.st_dev;
  f["ino"] = p.st.st_ino;
  f["size"] = p.st.st_size;
  f["mtime_ns"] = mtime_ns(p.st);
  f["mode"] = p.st.st_mode;
  if (S_ISREG(p.st.st_mode))
    if (int kept = keep_tmpfs_file(c, p.dup.get(), p.link, false); kept >= 0) f["kept"] = kept;
  if (S_ISFIFO(p.st.st_mode)) {
    // Unread data sits in the pipe buffer: take a copy without consuming it.
    int pr[2];
    if (::pipe2(pr, O_NONBLOCK | O_CLOEXEC) != 0) fail_errno("pipe");
    UniqueFd r(pr[0]), w(pr[1]);
    ::fcntl(w.get(), F_SETPIPE_SZ, 1 << 20);
    std::string data;
    ssize_t n = ::tee(p.dup.get(), w.get(), 1 << 20, SPLICE_F_NONBLOCK);
    if (n > 0) {
      data.resize(n);
      if (::read(r.get(), data.data(), n) != n) fail_errno("read FIFO data");
    }
    f["data"] = store_bytes(c, data);
  }
  return f;
}

// The flags a file was opened with, for opening it again: what concerned
// only making it (creating, truncating, an unnamed file: O_TMPFILE, which
// Python's tempfile.TemporaryFile uses, is O_DIRECTORY with a bit of its
// own) is dropped; O_NOCTTY always, since a session leader reopening a
// terminal must not take it as its controlling one (the kernel keeps no
// O_NOCTTY in the flags).
int reopen_flags(int flags) {
  if ((flags & O_TMPFILE) == O_TMPFILE) flags &= ~O_TMPFILE;
  return (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC)) | O_NOCTTY;
}

int open_memfd(RestoreContext& r, const json& f) {
  int src = r.shmem_fds.at(f["shmem"].get<size_t>());
  // O_NOFOLLOW too: /proc/self/fd/N is a symbolic link (ELOOP with it), and
  // the flag only ever concerned the open by path (mkstemp sets it).
  int flags = reopen_flags(f["flags"].get<int>()) & ~O_NOFOLLOW;
  int fd = ::open(cat("/proc/self/fd/", src).c_str(), flags | O_CLOEXEC);
  if (fd < 0) fail_errno("reopen memfd");
  return fd;
}

int open_file(RestoreContext& r, RestoreFiles&, const json& f) {
  if (f.value("memfd", false)) {
    UniqueFd fd(open_memfd(r, f));
    // An O_PATH fd (of a deleted file, say) has no file position.
    if (!(f["flags"].get<int>() & O_PATH) && ::lseek(fd.get(), f["pos"].get<off_t>(), SEEK_SET) < 0)
      fail_errno("memfd: seek to ", f["pos"].get<off_t>());
    return fd.release();
  }
  std::string path = f["path"];
  int flags = reopen_flags(f["flags"].get<int>());
  // A template's held process gets a stand-in for a file of /dev/shm,
  // which restore_shmem_objects did not make in its holder's /dev/shm: its
  // copies open their own in their own namespaces (template.cpp).
  if (r.held && f.contains("kept")) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail_errno("open /dev/null in its place (a template's held process)");
    return fd;
  }
  // Errors get the fd and the path in front from restore_files.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail_errno("file is gone");
  // A file of /dev/shm is made again where it is gone (shmem.cpp) and
  // found by its name, as others that open it by name find it.
  bool kept = f.contains("kept");
  // A log: a regular file opened only to append to it, which the process
  // never reads. It follows its path, as a process that reopens its log
  // after a rotation does: whatever regular file is there now is opened,
  // whether the log was rotated (renamed away and made anew, as Python's
  // RotatingFileHandler and logrotate do) or truncated (copytruncate).
  // Refusing it failed every restore after the first rotation by any
  // process sharing the file, such as another container of the snapshot.
  bool log = S_ISREG(st.st_mode) && S_ISREG(f.value("mode", 0u)) && (flags & O_APPEND) &&
             (flags & O_ACCMODE) == O_WRONLY;
  bool replaced = st.st_ino != f["ino"].get<uint64_t>() || st.st_dev != f["dev"].get<uint64_t>();
  // Its position is then the end of the file there now, where its next
  // write goes.
  bool log_moved = log && !kept && (replaced || uint64_t(st.st_size) < f["size"].get<uint64_t>());
  // SQLite's WAL files follow their paths too (sqlite_wal.cpp).
  if (!kept && !log && replaced && !sqlite_wal_file(r.m, r.pool(), path))
    fail("file was replaced since checkpoint (inode ", f["ino"].get<uint64_t>(), " -> ", st.st_ino, ")");
  int64_t mtime = mtime_ns(st);
  bool writable = (flags & O_ACCMODE) != O_RDONLY;
  if (S_ISREG(st.st_mode) && !kept) {
    uint64_t size = f["size"];
    if (flags & O_APPEND) {
      if (!log && uint64_t(st.st_size) < size)
        fail("file shrank since checkpoint (", size, " -> ", st.st_size, " bytes)");
    } else if (!writable && (uint64_t(st.st_size) != size || mtime != f["mtime_ns"].get<int64_t>())) {
      fail("file changed since checkpoint (", file_changes(size, f["ino"].get<uint64_t>(), f["mtime_ns"].get<int64_t>(), st),
           ")");
    }
  }
  int fd;
  if (S_ISFIFO(st.st_mode)) {
    // Opening one end of a FIFO blocks until the other is open: open it
    // read-write first (never blocks), refill it, then the real end.
    UniqueFd rw(::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!rw) fail_errno("open FIFO");
    std::string data = load_bytes(r, f["data"]);
    if (!data.empty()) write_all(rw.get(), data.data(), data.size(), "FIFO");
    fd = ::open(path.c_str(), flags | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) fail_errno("open FIFO");
    ::fcntl(fd, F_SETFL, flags);
    // Keep the FIFO's buffer alive until the restored process holds it.
    r.plan.close_fds.push_back(r.park_fd(rw.release()));
    return fd;
  }
  fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) fail_errno("open");
  // An O_PATH fd has no file position (lseek says EBADF).
  if (S_ISREG(st.st_mode) && !(flags & O_PATH) &&
      (log_moved ? ::lseek(fd, 0, SEEK_END) : ::lseek(fd, f["pos"].get<off_t>(), SEEK_SET)) < 0)
    fail_errno("seek");
  if (S_ISDIR(st.st_mode)) ::lseek(fd, f["pos"].get<off_t>(), SEEK_SET);
  return fd;
}

}  // namespace

const FileKind kRegularFile{"file", match, dump, open_file, nullptr};

}  // namespace thaw::engine
