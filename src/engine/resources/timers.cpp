// Interval timers (setitimer). POSIX timers (timer_create) are refused at
// checkpoint for now, by name.
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

void dump_timers(CheckpointContext& c) {
  std::string timers;
  if (try_read_file(cat("/proc/", c.pid, "/timers"), &timers) && !trim(timers).empty())
    fail("process ", c.pid, " has POSIX timers (timer_create); not supported yet");
  auto& leader = c.seizure.leader();
  uint64_t scratch = c.seizure.scratch(leader, sizeof(struct itimerval));
  for (int which : {ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF}) {
    long rc = c.seizure.syscall(leader, SYS_getitimer, which, scratch);
    if (rc < 0) fail("read interval timer ", which, ": ", std::strerror(int(-rc)));
    struct itimerval v;
    c.seizure.read_mem(scratch, &v, sizeof v);
    if (!v.it_value.tv_sec && !v.it_value.tv_usec) continue;
    c.m.process.itimers.push_back(image::Timer{which, v.it_interval.tv_sec * 1000000 + v.it_interval.tv_usec,
                                               v.it_value.tv_sec * 1000000 + v.it_value.tv_usec});
  }
}

void restore_timers(RestoreContext& r) {
  for (const auto& t : r.m.process.itimers) {
    struct itimerval v{};
    v.it_interval.tv_sec = t.interval_us / 1000000;
    v.it_interval.tv_usec = t.interval_us % 1000000;
    v.it_value.tv_sec = t.value_us / 1000000;
    v.it_value.tv_usec = t.value_us % 1000000;
    if (::setitimer(static_cast<__itimer_which>(t.which), &v, nullptr) != 0)
      fail_errno("set interval timer ", t.which);
  }
}

}  // namespace thaw::engine
