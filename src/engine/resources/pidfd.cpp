// pidfds (pidfd_open, clone's CLONE_PIDFD; asyncio's child watcher on
// Python 3.12 and later): one that names a process of the checkpoint — the
// process itself, one of its tree, or a child of one that has exited and
// waits to be reaped — comes back naming that process restored, which has
// its pid again. One that names a process outside the checkpoint is
// refused: after a restore no pid names it.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "engine/engine.h"
#include "engine/resources/file_kinds.h"
#include "proc/procfs.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

// How long a restore waits for the process a pidfd names to be made: in a
// tree, another branch's processes are made while this one opens its files.
constexpr auto kMadeWithin = std::chrono::seconds(5);

bool match(const FdProbe& p) { return p.link == "anon_inode:[pidfd]" || link_is(p, "pidfd:"); }

// The pids of an fdinfo "NSpid" line, outermost (thaw's namespace) first.
std::vector<long> ns_pids(const FdProbe& p) {
  std::vector<long> ids;
  auto it = p.info.find("NSpid");
  if (it == p.info.end()) fail("fdinfo has no NSpid line (a kernel before 5.x?)");
  std::istringstream in(it->second);
  for (long id; in >> id;) ids.push_back(id);
  if (ids.empty()) fail("fdinfo's NSpid line is empty");
  return ids;
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>&) {
  // PIDFD_THREAD (Linux 6.9) is O_EXCL: a thread's, which a restore makes
  // anew with another tid.
  if (p.flags & O_EXCL)
    fail("a pidfd of a thread (PIDFD_THREAD) is not supported: threads come back with new ids");
  std::vector<long> ids = ns_pids(p);
  pid_t host = static_cast<pid_t>(ids.front());
  if (host <= 0)
    fail("a pidfd of a process that has ended and was reaped; not supported: no process could be named by it "
         "again (", kPassingState, " where the program closes it once the child is reaped: take the checkpoint "
         "again then)");
  pid_t pid = 0;
  if (auto it = c.tree_pids.find(host); it != c.tree_pids.end()) {
    pid = it->second;
  } else {
    // A child of one of the tree's processes that has exited and waits to
    // be reaped: its parent's restore makes it again, with its pid.
    auto status = proc::read_status(cat("/proc/", host));
    std::string state = status["State"];
    long parent = std::atol(status["PPid"].c_str());
    if (!state.empty() && state[0] == 'Z' && c.tree_pids.count(static_cast<pid_t>(parent)))
      pid = static_cast<pid_t>(ids.back());
  }
  if (pid <= 0)
    fail("a pidfd of process ", host, proc::command_line(host), ", which is outside the checkpoint; not supported: "
         "after a restore no pid names that process (checkpoint the tree it belongs to, or close the pidfd first)");
  return json{{"pid", pid}, {"flags", p.flags}, {"desc", cat("pidfd of process ", pid)}};
}

int open_pidfd(RestoreContext&, RestoreFiles&, const json& f) {
  pid_t pid = f["pid"].get<pid_t>();
  int flags = f["flags"].get<int>() & O_NONBLOCK;  // PIDFD_NONBLOCK
  auto deadline = std::chrono::steady_clock::now() + kMadeWithin;
  for (;;) {
    int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
    if (fd >= 0) {
      if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        ::close(fd);
        fail_errno("pidfd of process ", pid, ": set close-on-exec");
      }
      return fd;
    }
    if (errno != ESRCH || std::chrono::steady_clock::now() >= deadline)
      fail_errno("pidfd of process ", pid, ": pidfd_open");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace

const FileKind kPidfd{"pidfd", match, dump, open_pidfd, nullptr};

}  // namespace thaw::engine
