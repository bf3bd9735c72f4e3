// eventfd: counter value and semaphore mode, from fdinfo.
#include <fcntl.h>
#include <sys/eventfd.h>

#include "common/error.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

bool match(const FdProbe& p) { return p.link == "anon_inode:[eventfd]"; }

json dump(CheckpointContext&, FdProbe& p, const std::vector<FdProbe>&) {
  return json{{"flags", p.flags},
              {"count", std::stoull(p.info.at("eventfd-count"), nullptr, 16)},
              {"semaphore", p.info.count("eventfd-semaphore") && p.info["eventfd-semaphore"] == "1"}};
}

int open_eventfd(RestoreContext&, RestoreFiles&, const json& f) {
  uint64_t count = f["count"];
  int flags = EFD_CLOEXEC | (f["semaphore"].get<bool>() ? EFD_SEMAPHORE : 0);
  int fd = ::eventfd(0, flags);
  if (fd < 0) fail_errno("eventfd: create");
  // The initial-value argument is 32 bits wide; the counter is 64.
  if (count && ::write(fd, &count, sizeof count) != sizeof count) fail_errno("eventfd: set counter");
  if (::fcntl(fd, F_SETFL, f["flags"].get<int>()) != 0) fail_errno("eventfd: set flags");
  return fd;
}

}  // namespace

const FileKind kEventfd{"eventfd", match, dump, open_eventfd, false};

}  // namespace thaw::engine
