// File locks: flock and open-file-description (OFD) locks, which belong to
// an open file description, and POSIX record locks (fcntl F_SETLK), which
// belong to a process. fdinfo lists both for the fd they were taken
// through; a restore takes them again, non-blocking, so that a lock another
// process took meanwhile fails the restore (naming it) instead of being
// shared. SQLite in WAL mode holds POSIX read locks for as long as a
// connection is open; `filelock` and pip hold flock locks.
//
// Where each is taken again: a description's locks as soon as it is opened
// (restore_files, open_pool); a process's POSIX locks by the restorer, after
// its last close of a file of ours (closing any fd of a file drops every
// POSIX lock the process holds on it, and the mapped files are opened by
// thaw and closed by the restorer once mapped).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "common/error.h"
#include "engine/resources/file_kinds.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

// One "lock:" line of fdinfo, as fs/locks.c prints it:
//   "lock:\t1: FLOCK  ADVISORY  WRITE 1234 08:02:5678 0 EOF"
//   "lock:\t1: POSIX  ADVISORY  READ 1234 08:02:5678 100 199"
//   "lock:\t1: OFDLCK ADVISORY  WRITE -1 08:02:5678 0 EOF"
// Leases and delegations print other words in the first place.
struct LockLine {
  std::string kind;  // FLOCK, OFDLCK, POSIX, or what the kernel printed
  std::string type;  // READ, WRITE
  int64_t start = 0, end = -1;  // end -1: to the end of the file, however far
};

LockLine parse_line(const std::string& line) {
  std::istringstream in(line.substr(line.find(':') + 1));
  std::string id, kind, advisory, type, pid, dev, start, end;
  in >> id >> kind;
  LockLine l;
  l.kind = kind;
  if (kind == "ACCESS") return l;  // a lock being tested, never held
  if (!(in >> advisory >> type >> pid >> dev >> start >> end))
    fail("cannot read the lock in fdinfo: \"", line, "\"");
  l.type = type;
  try {
    l.start = std::stoll(start);
    l.end = end == "EOF" ? -1 : std::stoll(end);
  } catch (const std::exception&) {
    fail("cannot read the lock in fdinfo: \"", line, "\"");
  }
  return l;
}

std::vector<LockLine> lock_lines(const FdProbe& p) {
  std::vector<LockLine> out;
  for (const auto& line : p.extra)
    if (line.rfind("lock:", 0) == 0) out.push_back(parse_line(line));
  return out;
}

json to_json(const LockLine& l) {
  return json{{"type", l.type == "WRITE" ? "w" : "r"}, {"start", l.start}, {"end", l.end}};
}

}  // namespace

struct flock posix_lock_of(const json& l) {
  struct flock fl {};
  fl.l_type = l["type"] == "w" ? F_WRLCK : F_RDLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = l["start"].get<int64_t>();
  int64_t end = l["end"].get<int64_t>();
  fl.l_len = end < 0 ? 0 : end - fl.l_start + 1;
  return fl;
}

namespace {

std::string range_of(const json& l) {
  int64_t end = l["end"].get<int64_t>();
  return end < 0 ? cat("bytes ", l["start"].get<int64_t>(), " to the end of the file")
                 : cat("bytes ", l["start"].get<int64_t>(), "-", end);
}

std::string what_of(const json& l) {
  return cat(l["type"] == "w" ? "write" : "read", " lock");
}

// Who holds a lock that conflicts with `fl` now (F_GETLK or F_OFD_GETLK);
// "" if none does.
std::string holder(int fd, int getlk, struct flock fl) {
  if (::fcntl(fd, getlk, &fl) != 0 || fl.l_type == F_UNLCK) return "";
  return fl.l_pid > 0 ? cat("process ", fl.l_pid, " (as this namespace numbers it)") : std::string("another process");
}

}  // namespace

json description_locks(const FdProbe& p, bool lockable) {
  json out = json::array();
  for (const LockLine& l : lock_lines(p)) {
    if (l.kind == "POSIX") continue;  // the process's: fd_posix_locks
    if (l.kind == "ACCESS") continue;
    if (l.kind != "FLOCK" && l.kind != "OFDLCK")
      fail("it holds a ", l.kind, " (a lease or delegation), which a restore cannot take again; release it "
           "before the checkpoint");
    if (!lockable)
      fail("it holds a file lock (", l.kind, "), which a restore would not take again on this kind of file; "
           "release it before the checkpoint");
    json j = to_json(l);
    j["kind"] = l.kind == "FLOCK" ? "flock" : "ofd";
    out.push_back(j);
  }
  return out;
}

json fd_posix_locks(const FdProbe& p, bool lockable) {
  json out = json::array();
  for (const LockLine& l : lock_lines(p)) {
    if (l.kind != "POSIX") continue;
    if (!lockable)
      fail("it holds a POSIX lock, which a restore would not take again on this kind of file; release it "
           "before the checkpoint");
    out.push_back(to_json(l));
  }
  return out;
}

void take_description_locks(int fd, const json& f) {
  if (!f.contains("locks")) return;
  for (const auto& l : f["locks"]) {
    if (l["kind"] == "flock") {
      if (::flock(fd, (l["type"] == "w" ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0) continue;
      if (errno == EWOULDBLOCK)
        fail("it held a ", what_of(l), " (flock) at checkpoint, and another open of the file holds a conflicting "
             "one now; restore once it is released");
      fail_errno("flock");
    }
    struct flock fl = posix_lock_of(l);
    if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) continue;
    if (errno == EAGAIN || errno == EACCES) {
      std::string who = holder(fd, F_OFD_GETLK, posix_lock_of(l));
      fail("it held an OFD ", what_of(l), " on ", range_of(l), " at checkpoint, which ",
           who.empty() ? std::string("another process") : who, " holds a conflicting lock on now; restore once "
           "it is released");
    }
    fail_errno("take its OFD lock on ", range_of(l), " again");
  }
}

void drop_write_locks(image::Manifest& m) {
  auto keep_reads = [](json& entry, const char* key) {
    if (!entry.contains(key)) return;
    json reads = json::array();
    for (const auto& l : entry[key])
      if (l["type"] == "r") reads.push_back(l);
    if (reads.empty()) entry.erase(key);
    else entry[key] = reads;
  };
  for (auto& f : m.files) keep_reads(f, "locks");
  for (auto& e : m.fds) keep_reads(e, "posix_locks");
}

void plan_posix_locks(RestoreContext& r) {
  for (const auto& e : r.m.fds) {
    if (!e.contains("posix_locks")) continue;
    int fd = e["fd"];
    const json& f = r.m.files.at(e["file"].get<size_t>());
    std::string file = f.value("path", f.value("desc", std::string("its file")));
    for (const auto& l : e["posix_locks"]) {
      // Checked here, where the error can say who holds it; the restorer
      // takes it (and fails, less clearly, only if one was taken since).
      std::string who = holder(fd, F_GETLK, posix_lock_of(l));
      if (!who.empty())
        fail("fd ", fd, ": the process held a POSIX ", what_of(l), " on ", range_of(l), " of ", file, " at checkpoint, which ", who, " holds a conflicting lock "
             "on now; restore once it is released (a write lock can be held by one process only: the original, "
             "if it still runs, or one restored copy)");
      struct flock fl = posix_lock_of(l);
      r.plan.locks.push_back(rst_lock{fd, fl.l_type, 0, fl.l_start, fl.l_len});
    }
  }
}

}  // namespace thaw::engine
