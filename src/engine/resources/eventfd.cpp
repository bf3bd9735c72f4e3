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
  // Kernels before 5.2 print no eventfd-semaphore line: counting mode then.
  bool semaphore = p.info.count("eventfd-semaphore") && p.info_number("eventfd-semaphore") != 0;
  return json{{"flags", p.flags}, {"count", p.info_number("eventfd-count", 16)}, {"semaphore", semaphore}};
}

int open_eventfd(RestoreContext&, RestoreFiles&, const json& f) {
  uint64_t count = f["count"];
  int flags = EFD_CLOEXEC | (f["semaphore"].get<bool>() ? EFD_SEMAPHORE : 0);
  UniqueFd fd(::eventfd(0, flags));
  if (!fd) fail_errno("eventfd: create");
  // The initial-value argument is 32 bits wide; the counter is 64.
  if (count && ::write(fd.get(), &count, sizeof count) != sizeof count) fail_errno("eventfd: set counter to ", count);
  if (::fcntl(fd.get(), F_SETFL, f["flags"].get<int>()) != 0) fail_errno("eventfd: set flags");
  return fd.release();
}

}  // namespace

const FileKind kEventfd{"eventfd", match, dump, open_eventfd, nullptr};

}  // namespace thaw::engine
