/* timerfd: a periodic timerfd keeps firing after checkpoint/restore; a long
 * one-shot timer (relative and absolute) keeps a plausible remaining time; a
 * disarmed timerfd stays disarmed; flags survive. */
#include "zoo.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/timerfd.h>
#include <time.h>

#define PERIOD_NS (20 * 1000 * 1000)
#define LONG_SEC 1000

static void check_remaining(int fd, const char *what)
{
    struct itimerspec its;
    CHECK_SYS(timerfd_gettime(fd, &its) == 0, "timerfd_gettime");
    CHECK(its.it_interval.tv_sec == 0 && its.it_interval.tv_nsec == 0, "%s: interval", what);
    CHECK(its.it_value.tv_sec > LONG_SEC - 100 && its.it_value.tv_sec <= LONG_SEC,
          "%s: remaining time implausible (%ld s)", what, (long)its.it_value.tv_sec);
    uint64_t v;
    CHECK(read(fd, &v, 8) < 0 && errno == EAGAIN, "%s: fired early", what);
    printf("%s ok\n", what);
}

int main(void)
{
    char line[64];
    uint64_t exp;

    int tp = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    CHECK_SYS(tp >= 0, "timerfd_create");
    struct itimerspec its = {{0, PERIOD_NS}, {0, PERIOD_NS}};
    CHECK_SYS(timerfd_settime(tp, 0, &its, NULL) == 0, "settime periodic");
    CHECK(read(tp, &exp, 8) == 8 && exp >= 1, "periodic timer before");

    int trel = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    CHECK_SYS(trel >= 0, "timerfd_create");
    struct itimerspec lng = {{0, 0}, {LONG_SEC, 0}};
    CHECK_SYS(timerfd_settime(trel, 0, &lng, NULL) == 0, "settime relative");

    int tabs = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    CHECK_SYS(tabs >= 0, "timerfd_create");
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct itimerspec abs_its = {{0, 0}, {now.tv_sec + LONG_SEC, now.tv_nsec}};
    CHECK_SYS(timerfd_settime(tabs, TFD_TIMER_ABSTIME, &abs_its, NULL) == 0, "settime abs");

    int toff = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK | TFD_CLOEXEC);
    CHECK_SYS(toff >= 0, "timerfd_create disarmed");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK(fcntl(tp, F_GETFD) == FD_CLOEXEC && !(fcntl(tp, F_GETFL) & O_NONBLOCK),
          "periodic timerfd flags");
    CHECK((fcntl(trel, F_GETFL) & O_NONBLOCK) && fcntl(trel, F_GETFD) == 0,
          "relative timerfd flags");
    CHECK((fcntl(toff, F_GETFL) & O_NONBLOCK) && fcntl(toff, F_GETFD) == FD_CLOEXEC,
          "disarmed timerfd flags");

    struct itimerspec cur;
    CHECK_SYS(timerfd_gettime(tp, &cur) == 0, "gettime periodic");
    CHECK(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == PERIOD_NS,
          "periodic interval changed");
    for (int i = 0; i < 3; i++) {
        struct pollfd p = {.fd = tp, .events = POLLIN};
        CHECK(poll(&p, 1, 2000) == 1, "periodic timerfd stopped firing");
        CHECK(read(tp, &exp, 8) == 8 && exp >= 1, "periodic read");
    }
    printf("periodic timerfd fires\n");

    check_remaining(trel, "relative one-shot timerfd");
    check_remaining(tabs, "absolute one-shot timerfd");

    CHECK_SYS(timerfd_gettime(toff, &cur) == 0, "gettime disarmed");
    CHECK(cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0, "disarmed timer armed");
    CHECK(read(toff, &exp, 8) < 0 && errno == EAGAIN, "disarmed timer fired");
    printf("disarmed timerfd ok\n");
    zoo_done();
}
