// timerfd: clock, settime flags, remaining time, interval and expirations
// not yet read, from fdinfo. A relative timer restarts with the time it had
// left (time stands still while checkpointed); an absolute one keeps its
// deadline on its clock, so time spent checkpointed counts against it.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>

#include <cstdio>

#include "common/error.h"
#include "engine/resources/file_kinds.h"

// From <linux/timerfd.h>, which cannot be included next to <sys/timerfd.h>.
#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

namespace thaw::engine {

using nlohmann::json;

namespace {

constexpr int64_t kNs = 1000000000;

bool match(const FdProbe& p) { return p.link == "anon_inode:[timerfd]"; }

// "(12, 345)" -> 12 s 345 ns, in nanoseconds.
int64_t time_field(const FdProbe& p, const char* key) {
  auto it = p.info.find(key);
  if (it == p.info.end()) fail("fdinfo has no '", key, "' field");
  long long sec = 0, nsec = 0;
  if (std::sscanf(it->second.c_str(), "(%lld, %lld)", &sec, &nsec) != 2)
    fail("fdinfo field '", key, "' is not a (seconds, nanoseconds) pair: '", it->second, "'");
  return sec * kNs + nsec;
}

int64_t now_ns(int clock) {
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) fail_errno("read clock ", clock);
  return int64_t(ts.tv_sec) * kNs + ts.tv_nsec;
}

timespec to_timespec(int64_t ns) { return timespec{ns / kNs, ns % kNs}; }

// A periodic timer counts the periods it missed only when asked (fdinfo
// shows one expiration and no time left): timerfd_gettime folds them into
// the count, as a read would, without consuming them. Then fdinfo is read
// again.
void count_missed_periods(CheckpointContext& c, FdProbe& p) {
  itimerspec cur{};
  if (::timerfd_gettime(p.dup.get(), &cur) != 0) fail_errno("timerfd: read the timer");
  p.info = proc::read_fdinfo(c.pid, p.fd, nullptr);
}

json dump(CheckpointContext& c, FdProbe& p, const std::vector<FdProbe>&) {
  count_missed_periods(c, p);
  int clock = static_cast<int>(p.info_number("clockid"));
  // Kernels before 4.10 print no settime flags: relative timers then.
  int settime = p.info.count("settime flags") ? static_cast<int>(p.info_number("settime flags", 8)) : 0;
  json f{{"flags", p.flags},
         {"clock", clock},
         {"settime_flags", settime},
         {"ticks", p.info_number("ticks")},
         {"interval_ns", time_field(p, "it_interval")}};
  // fdinfo shows the time left even for an absolute timer; its deadline is
  // that much after now on its own clock.
  int64_t left = time_field(p, "it_value");
  if (left && (settime & TFD_TIMER_ABSTIME))
    f["deadline_ns"] = now_ns(clock) + left;
  else
    f["value_ns"] = left;
  return f;
}

void arm(int fd, const json& f) {
  int64_t interval = f["interval_ns"];
  int settime = 0;
  int64_t value = f.value("value_ns", int64_t{0});
  if (f.contains("deadline_ns")) {
    settime = f["settime_flags"].get<int>() & (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
    value = f["deadline_ns"];
  }
  if (!value) return;  // disarmed
  itimerspec its{to_timespec(interval), to_timespec(value)};
  if (::timerfd_settime(fd, settime, &its, nullptr) != 0) fail_errno("timerfd: arm");
}

// Arming resets the expiration count, so it is set after.
void set_ticks(int fd, const json& f) {
  uint64_t ticks = f["ticks"];
  if (!ticks) return;
  if (::ioctl(fd, TFD_IOC_SET_TICKS, &ticks) == 0) return;
  if (errno != ENOTTY) fail_errno("timerfd: set ", ticks, " unread expirations");
  // A kernel without CONFIG_CHECKPOINT_RESTORE: one expiration at once is the
  // closest thing (the count read back is 1; a periodic timer's phase shifts).
  itimerspec once{to_timespec(f["interval_ns"].get<int64_t>()), {0, 1}};
  if (::timerfd_settime(fd, 0, &once, nullptr) != 0) fail_errno("timerfd: arm for unread expirations");
}

int open_timerfd(RestoreContext&, RestoreFiles&, const json& f) {
  int clock = f["clock"];
  int fd = ::timerfd_create(clock, TFD_CLOEXEC);
  if (fd < 0) fail_errno("timerfd: create on clock ", clock);
  UniqueFd guard(fd);
  arm(fd, f);
  set_ticks(fd, f);
  if (::fcntl(fd, F_SETFL, f["flags"].get<int>()) != 0) fail_errno("timerfd: set flags");
  return guard.release();
}

}  // namespace

const FileKind kTimerfd{"timerfd", match, dump, open_timerfd, nullptr};

}  // namespace thaw::engine
