// timerfd: clock, remaining time and interval, from fdinfo. Expirations not
// yet read are kept by arming the timer to fire at once.
#include <fcntl.h>
#include <sys/timerfd.h>

#include <cstdio>

#include "common/error.h"
#include "engine/resources/file_kinds.h"

namespace thaw::engine {

using nlohmann::json;

namespace {

bool match(const FdProbe& p) { return p.link == "anon_inode:[timerfd]"; }

std::pair<int64_t, int64_t> pair_of(const std::string& s) {
  long long a = 0, b = 0;
  std::sscanf(s.c_str(), "(%lld, %lld)", &a, &b);
  return {a, b};
}

json dump(CheckpointContext&, FdProbe& p, const std::vector<FdProbe>&) {
  auto v = pair_of(p.info.at("it_value")), i = pair_of(p.info.at("it_interval"));
  return json{{"flags", p.flags},
              {"clock", std::stoi(p.info.at("clockid"))},
              {"ticks", std::stoull(p.info.at("ticks"))},
              {"value_ns", v.first * 1000000000 + v.second},
              {"interval_ns", i.first * 1000000000 + i.second}};
}

int open_timerfd(RestoreContext&, RestoreFiles&, const json& f) {
  int fd = ::timerfd_create(f["clock"].get<int>(), TFD_CLOEXEC);
  if (fd < 0) fail_errno("timerfd: create");
  int64_t value = f["value_ns"], interval = f["interval_ns"];
  if (f["ticks"].get<uint64_t>() > 0) value = 1;  // unread expirations: fire right away
  if (value) {
    itimerspec its{};
    its.it_value = {value / 1000000000, value % 1000000000};
    its.it_interval = {interval / 1000000000, interval % 1000000000};
    if (::timerfd_settime(fd, 0, &its, nullptr) != 0) fail_errno("timerfd: arm");
  }
  if (::fcntl(fd, F_SETFL, f["flags"].get<int>()) != 0) fail_errno("timerfd: set flags");
  return fd;
}

}  // namespace

const FileKind kTimerfd{"timerfd", match, dump, open_timerfd, false};

}  // namespace thaw::engine
