// epoll: its interest list (fd, events, data), from fdinfo. Restored after
// every other fd is in place, since entries name fds by number.
#include <fcntl.h>
#include <sys/epoll.h>

#include <cstdio>

#include "common/error.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

bool match(const FdProbe& p) { return p.link == "anon_inode:[eventpoll]"; }

json dump(CheckpointContext&, FdProbe& p, const std::vector<FdProbe>& all) {
  json entries = json::array();
  for (const auto& line : p.extra) {
    int tfd = -1;
    unsigned events = 0;
    unsigned long long data = 0, ino = 0;
    long long pos = 0;
    if (std::sscanf(line.c_str(), "tfd: %d events: %x data: %llx pos:%lld ino:%llx", &tfd, &events, &data, &pos,
                    &ino) < 3)
      fail("cannot parse epoll entry '", line, "'");
    bool found = false;
    for (const auto& o : all)
      if (o.fd == tfd && (ino == 0 || o.st.st_ino == ino)) found = true;
    if (!found)
      fail("epoll watches fd ", tfd, " whose file is no longer open under that number; not supported");
    entries.push_back(json{{"fd", tfd}, {"events", events}, {"data", data}});
  }
  return json{{"flags", p.flags}, {"entries", entries}};
}

int open_epoll(RestoreContext&, RestoreFiles&, const json& f) {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) fail_errno("epoll: create");
  for (const auto& e : f["entries"]) {
    epoll_event ev{};
    ev.events = e["events"];
    ev.data.u64 = e["data"];
    int tfd = e["fd"];
    if (::epoll_ctl(fd, EPOLL_CTL_ADD, tfd, &ev) != 0) fail_errno("epoll: watch fd ", tfd);
  }
  if (::fcntl(fd, F_SETFL, f["flags"].get<int>()) != 0) fail_errno("epoll: set flags");
  return fd;
}

}  // namespace

const FileKind kEpoll{"epoll", match, dump, open_epoll, true};

}  // namespace thaw::engine
