// epoll: its interest list (fd, events, data), from fdinfo. Opened once the
// fds it watches hold their files, since entries name fds by number.
// Readiness is recomputed by the kernel when each entry is added again: an
// edge-triggered entry that was ready and already reported is reported once
// more.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>

#include "common/error.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

bool match(const FdProbe& p) { return p.link == "anon_inode:[eventpoll]"; }

struct Entry {
  int tfd = -1;
  unsigned events = 0;
  unsigned long long data = 0;
};

// "tfd:        5 events:       19 data:             2222  pos:0 ino:c247 sdev:f"
Entry parse_entry(const std::string& line) {
  Entry e;
  if (std::sscanf(line.c_str(), "tfd: %d events: %x data: %llx", &e.tfd, &e.events, &e.data) != 3)
    fail("cannot parse epoll entry '", line, "'");
  return e;
}

// The entry names a number; the file it watches is the one it was added
// with, which may since have been closed (epoll keeps watching it as long as
// another fd refers to it) or replaced under that number.
void check_watched_file(CheckpointContext& c, const FdProbe& ep, const Entry& e, const std::vector<FdProbe>& all) {
  bool open = false;
  for (const auto& o : all)
    if (o.fd == e.tfd && o.pid == ep.pid) open = true;
  if (!open) fail("watches fd ", e.tfd, ", which is no longer open; not supported");
  kcmp_epoll_slot slot{static_cast<uint32_t>(ep.fd), static_cast<uint32_t>(e.tfd), 0};
  long same = ::syscall(SYS_kcmp, c.pid, c.pid, KCMP_EPOLL_TFD, e.tfd, &slot);
  if (same < 0) fail_errno("compare watched fd ", e.tfd);
  if (same != 0) fail("watches a file that fd ", e.tfd, " no longer refers to (closed and reused); not supported");
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>& all) {
  json entries = json::array();
  for (const auto& line : p.extra) {
    Entry e = parse_entry(line);
    check_watched_file(c, p, e, all);
    entries.push_back(json{{"fd", e.tfd}, {"events", e.events}, {"data", e.data}});
  }
  return json{{"flags", p.flags}, {"entries", entries}};
}

int open_epoll(RestoreContext&, RestoreFiles&, const json& f) {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) fail_errno("epoll: create");
  UniqueFd guard(fd);
  for (const auto& e : f["entries"]) {
    epoll_event ev{};
    ev.events = e["events"];
    ev.data.u64 = e["data"];
    int tfd = e["fd"];
    if (::epoll_ctl(fd, EPOLL_CTL_ADD, tfd, &ev) != 0) fail_errno("epoll: watch fd ", tfd);
  }
  if (::fcntl(fd, F_SETFL, f["flags"].get<int>()) != 0) fail_errno("epoll: set flags");
  return guard.release();
}

std::vector<int> waits_for(const json& f) {
  std::vector<int> fds;
  for (const auto& e : f["entries"]) fds.push_back(e["fd"]);
  return fds;
}

}  // namespace

const FileKind kEpoll{"epoll", match, dump, open_epoll, waits_for};

}  // namespace thaw::engine
