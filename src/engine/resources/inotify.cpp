// inotify: an instance's watches, each with its watch descriptor, mask and
// the path of what it watches. fdinfo names a watched inode only by a file
// handle; the checkpoint opens it (open_by_handle_at, through a mount of
// its filesystem in the holder's mount table) to learn its path. A restore
// adds the watches again in the order of their descriptors, and makes the
// kernel skip the numbers between them (it hands out the next number after
// the last one given, even once that one is removed), so that every watch
// has its old number and the next one added gets the number it would have
// (unless the process had removed watches numbered above all it kept: the
// kernel shows no trace of them, and the next watch may get such a number
// again, as it may when the numbers wrap). Events queued at the checkpoint
// are not carried (reading them would take them from a target that runs
// on); the checkpoint says so.
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

bool match(const FdProbe& p) { return p.link == "anon_inode:inotify"; }

struct Watch {
  int wd = 0;
  uint32_t mask = 0;
  uint64_t ino = 0;
  unsigned dev_major = 0, dev_minor = 0;
  int handle_type = 0;
  std::vector<unsigned char> handle;
};

uint64_t hex_field(const std::string& line, const std::string& key) {
  auto at = line.find(" " + key + ":");
  if (at == std::string::npos) fail("fdinfo line '", line, "' has no '", key, "'");
  return std::stoull(line.substr(at + key.size() + 2), nullptr, 16);
}

// "inotify wd:4 ino:64008 sdev:fe00000 mask:4000004 ignored_mask:0
// fhandle-bytes:8 fhandle-type:1 f_handle:0840060071a37e6d", all in hex.
Watch parse_watch(const std::string& line) {
  Watch w;
  w.wd = static_cast<int>(hex_field(line, "wd"));
  w.ino = hex_field(line, "ino");
  uint64_t sdev = hex_field(line, "sdev");  // the kernel's own dev_t: major << 20 | minor
  w.dev_major = static_cast<unsigned>(sdev >> 20);
  w.dev_minor = static_cast<unsigned>(sdev & 0xfffff);
  w.mask = static_cast<uint32_t>(hex_field(line, "mask"));
  w.handle_type = static_cast<int>(hex_field(line, "fhandle-type"));
  size_t bytes = hex_field(line, "fhandle-bytes");
  auto at = line.find(" f_handle:");
  if (at == std::string::npos) fail("fdinfo line '", line, "' has no file handle");
  std::string hex = line.substr(at + 10, bytes * 2);
  if (hex.size() != bytes * 2) fail("fdinfo line '", line, "': file handle shorter than ", bytes, " bytes");
  for (size_t i = 0; i < bytes; i++) w.handle.push_back(static_cast<unsigned char>(std::stoul(hex.substr(2 * i, 2), nullptr, 16)));
  return w;
}

// An fd on a mount of the filesystem major:minor as `pid` sees its
// mounts: the filesystem's own root mounted, where there is one (a mount of
// a subdirectory cannot reach what lies outside it).
UniqueFd mount_of(pid_t pid, unsigned major_, unsigned minor_) {
  std::istringstream in(read_file(cat("/proc/", pid, "/mountinfo")));
  std::string line, want = cat(major_, ":", minor_), fallback;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point;
    if (!(f >> id >> parent >> dev >> root >> point) || dev != want) continue;
    if (root == "/") {
      fallback = point;
      break;
    }
    if (fallback.empty()) fallback = point;
  }
  if (fallback.empty()) return UniqueFd();
  // mountinfo escapes spaces and the like as \ooo.
  std::string path;
  for (size_t i = 0; i < fallback.size(); i++) {
    if (fallback[i] == '\\' && i + 3 < fallback.size()) {
      path += static_cast<char>(std::stoi(fallback.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      path += fallback[i];
    }
  }
  // Not O_PATH: open_by_handle_at takes no such fd.
  return UniqueFd(::open(cat("/proc/", pid, "/root", path).c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>&) {
  json watches = json::array();
  for (const auto& line : p.extra) {
    if (line.rfind("inotify ", 0) != 0) continue;
    Watch w = parse_watch(line);
    std::string what = cat("inotify watch ", w.wd);
    UniqueFd mnt = mount_of(p.pid, w.dev_major, w.dev_minor);
    if (!mnt) fail(what, ": no mount of its filesystem (device ", w.dev_major, ":", w.dev_minor, ") is visible");
    std::vector<char> buf(sizeof(file_handle) + w.handle.size());
    auto* fh = reinterpret_cast<file_handle*>(buf.data());
    fh->handle_bytes = static_cast<unsigned>(w.handle.size());
    fh->handle_type = w.handle_type;
    std::copy(w.handle.begin(), w.handle.end(), fh->f_handle);
    UniqueFd target(::open_by_handle_at(mnt.get(), fh, O_PATH | O_CLOEXEC));
    if (!target) {
      if (errno == ESTALE) fail(what, ": the file it watches (inode ", w.ino, ") was deleted; not supported");
      fail_errno(what, ": open the file it watches (inode ", w.ino, ")");
    }
    struct stat st;
    if (::fstat(target.get(), &st) != 0) fail_errno(what, ": stat the file it watches");
    std::string path = proc::read_link(cat("/proc/self/fd/", target.get()));
    if (path.empty() || path[0] != '/' || st.st_nlink == 0)
      fail(what, ": the file it watches (inode ", w.ino, ") has no path (", path, "); not supported");
    watches.push_back(json{{"wd", w.wd}, {"mask", w.mask}, {"path", path}, {"dev", st.st_dev}, {"ino", st.st_ino}});
  }
  std::sort(watches.begin(), watches.end(), [](const json& a, const json& b) { return a["wd"] < b["wd"]; });
  int queued = 0;
  if (::ioctl(p.dup.get(), FIONREAD, &queued) == 0 && queued > 0)
    c.notes.push_back(cat(p.where(), ": ", queued, " bytes of inotify events not read yet are not in the image"));
  return json{{"flags", p.flags}, {"watches", watches}};
}

// Reads and drops whatever is queued: the restore's own IN_IGNORED events
// for the numbers it skipped.
void drain(int fd) {
  alignas(inotify_event) char buf[16384];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

int open_inotify(RestoreContext&, RestoreFiles&, const json& f) {
  UniqueFd fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!fd) fail_errno("inotify: create");
  // A path no watch is on, added and removed again to use up a number.
  std::vector<std::string> spares = {"/", "/proc", "/dev/null", "/dev"};
  size_t spare = 0;
  int next = 1, skipped = 0;
  for (const auto& w : f["watches"]) {
    int wd = w["wd"];
    std::string path = w["path"];
    std::string what = cat("inotify watch ", wd, " (", path, ")");
    while (next < wd) {
      if (spare == spares.size()) fail(what, ": no path to skip watch numbers with");
      int got = ::inotify_add_watch(fd.get(), spares[spare].c_str(), IN_ACCESS | IN_DONT_FOLLOW);
      if (got < 0) fail_errno("inotify: skip watch number ", next);
      if (got < next) {  // one of the image's own watches is on it
        spare++;
        continue;
      }
      ::inotify_rm_watch(fd.get(), got);
      next = got + 1;
      // Each skip queues an IN_IGNORED event: keep clear of the queue's limit.
      if (++skipped % 4096 == 0) drain(fd.get());
    }
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) fail_errno(what, ": the watched file is gone");
    if (st.st_ino != w["ino"].get<uint64_t>() || st.st_dev != w["dev"].get<uint64_t>())
      fail(what, ": the watched path is another file than at checkpoint (inode ", st.st_ino, ", was ",
           w["ino"].get<uint64_t>(), "); take a new checkpoint");
    int got = ::inotify_add_watch(fd.get(), path.c_str(), w["mask"].get<uint32_t>() | IN_DONT_FOLLOW);
    if (got < 0) fail_errno(what, ": add the watch");
    if (got != wd) fail(what, ": the kernel gave it number ", got, "; not supported");
    next = wd + 1;
  }
  drain(fd.get());
  if (::fcntl(fd.get(), F_SETFL, f["flags"].get<int>()) != 0) fail_errno("inotify: set flags");
  return fd.release();
}

}  // namespace

const FileKind kInotify{"inotify", match, dump, open_inotify, nullptr};

}  // namespace thaw::engine
