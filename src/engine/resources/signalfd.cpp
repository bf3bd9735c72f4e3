// signalfd: the set of signals it reads, from fdinfo.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/error.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

bool match(const FdProbe& p) { return p.link == "anon_inode:[signalfd]"; }

json dump(CheckpointContext&, FdProbe& p, const std::vector<FdProbe>&) {
  return json{{"flags", p.flags}, {"mask", p.info_number("sigmask", 16)}};
}

int open_signalfd(RestoreContext&, RestoreFiles&, const json& f) {
  uint64_t mask = f["mask"];
  // The raw call takes the kernel's 8-byte mask directly.
  UniqueFd fd(static_cast<int>(::syscall(SYS_signalfd4, -1, &mask, sizeof mask, SFD_CLOEXEC)));
  if (!fd) fail_errno("signalfd: create");
  if (::fcntl(fd.get(), F_SETFL, f["flags"].get<int>()) != 0) fail_errno("signalfd: set flags");
  return fd.release();
}

}  // namespace

const FileKind kSignalfd{"signalfd", match, dump, open_signalfd, nullptr};

}  // namespace thaw::engine
