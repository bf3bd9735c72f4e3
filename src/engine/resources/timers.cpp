// Interval timers (setitimer) and POSIX timers (timer_create): the latter
// are recreated by the restorer with their old ids, once their target
// threads exist.
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <sstream>

#include "common/error.h"
#include "common/io.h"
#include "engine/resources/resources.h"

namespace thaw::engine {

namespace {

constexpr int kSigevThreadId = 4;

// /proc/PID/timers: "ID:", "signal: N/VALUE", "notify: KIND/pid.N" or
// "KIND/tid.N", "ClockID:" per timer; the times come from timer_gettime.
void dump_posix_timers(CheckpointContext& c, proc::Tracee& leader) {
  std::string text;
  if (!try_read_file(cat("/proc/", c.pid, "/timers"), &text)) return;
  std::istringstream in(text);
  std::string line;
  image::PosixTimer t;
  bool have = false;
  auto finish = [&] {
    if (!have) return;
    uint64_t scratch = c.seizure.scratch(leader, 32);
    long rc = c.seizure.syscall(leader, SYS_timer_gettime, t.id, scratch);
    if (rc < 0) fail("read POSIX timer ", t.id, ": ", std::strerror(int(-rc)));
    int64_t v[4];
    c.seizure.read_mem(scratch, v, sizeof v);
    t.interval_ns = v[0] * 1000000000 + v[1];
    t.value_ns = v[2] * 1000000000 + v[3];
    c.m.process.posix_timers.push_back(t);
    t = image::PosixTimer{};
    have = false;
  };
  while (std::getline(in, line)) {
    auto pos = line.find(':');
    if (pos == std::string::npos) continue;
    std::string key = line.substr(0, pos), val = trim(line.substr(pos + 1));
    if (key == "ID") {
      finish();
      t.id = std::stoi(val);
      have = true;
    } else if (key == "signal") {
      auto slash = val.find('/');
      t.signo = std::stoi(val.substr(0, slash));
      t.sigval = std::stoull(val.substr(slash + 1), nullptr, 16);
    } else if (key == "notify") {
      auto slash = val.find('/'), dot = val.find('.');
      std::string kind = val.substr(0, slash), who = val.substr(slash + 1, dot - slash - 1);
      t.notify = kind == "none" ? SIGEV_NONE : kind == "thread" ? SIGEV_THREAD : SIGEV_SIGNAL;
      if (who == "tid") {
        t.notify |= kSigevThreadId;
        t.notify_tid = std::stoi(val.substr(dot + 1));
      }
    } else if (key == "ClockID") {
      t.clock = std::stoi(val);
    }
  }
  finish();
}

}  // namespace

void restore_posix_timers(RestoreContext& r) {
  for (const auto& t : r.m.process.posix_timers) {
    rst_timer rt{};
    rt.id = t.id;
    rt.clock = t.clock;
    rt.signo = t.signo;
    rt.notify = t.notify;
    // notify_tid is the target thread as the checkpoint's /proc showed it.
    rt.tid = t.notify_tid;
    for (const auto& th : r.m.threads)
      if (th.tid == t.notify_tid) rt.tid = restore_tid(r.m, th);
    rt.sigval = t.sigval;
    rt.value_ns = t.value_ns;
    rt.interval_ns = t.interval_ns;
    r.plan.timers.push_back(rt);
  }
}

void dump_timers(CheckpointContext& c) {
  auto& leader = c.seizure.leader();
  dump_posix_timers(c, leader);
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
  restore_posix_timers(r);
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
