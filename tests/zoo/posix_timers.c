/* POSIX timers: a periodic process-directed timer and a thread-directed one
 * keep firing after restore with the same timer ids; a long one-shot timer
 * keeps a plausible remaining time. */
#include "zoo.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

static atomic_int fired_proc, fired_thread;

static void on_proc(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    if (si->si_value.sival_int == 42) atomic_fetch_add(&fired_proc, 1);
}

static void on_thread(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    if (si->si_value.sival_int == 7) atomic_fetch_add(&fired_thread, 1);
}

static void wait_for(atomic_int *counter, int at_least, const char *what)
{
    for (int i = 0; i < 500 && atomic_load(counter) < at_least; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(atomic_load(counter) >= at_least, "%s did not fire", what);
}

int main(void)
{
    char line[64];
    struct sigaction sa = {0};
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sa.sa_sigaction = on_proc;
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    sa.sa_sigaction = on_thread;
    CHECK_SYS(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction");

    timer_t periodic, directed, oneshot;
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    ev.sigev_value.sival_int = 42;
    CHECK_SYS(timer_create(CLOCK_MONOTONIC, &ev, &periodic) == 0, "timer_create");
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGUSR2;
    ev.sigev_value.sival_int = 7;
    ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    CHECK_SYS(timer_create(CLOCK_REALTIME, &ev, &directed) == 0, "timer_create");
    ev.sigev_notify = SIGEV_NONE;
    CHECK_SYS(timer_create(CLOCK_MONOTONIC, &ev, &oneshot) == 0, "timer_create");

    struct itimerspec its = {{0, 20 * 1000 * 1000}, {0, 20 * 1000 * 1000}};
    CHECK_SYS(timer_settime(periodic, 0, &its, NULL) == 0, "timer_settime");
    CHECK_SYS(timer_settime(directed, 0, &its, NULL) == 0, "timer_settime");
    struct itimerspec longone = {{0, 0}, {1000, 0}};
    CHECK_SYS(timer_settime(oneshot, 0, &longone, NULL) == 0, "timer_settime");
    wait_for(&fired_proc, 2, "periodic timer (before)");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    int before_p = atomic_load(&fired_proc), before_t = atomic_load(&fired_thread);
    wait_for(&fired_proc, before_p + 3, "periodic timer");
    wait_for(&fired_thread, before_t + 3, "thread-directed timer");
    printf("periodic ok\nthread-directed ok\n");
    struct itimerspec cur;
    CHECK_SYS(timer_gettime(oneshot, &cur) == 0, "timer_gettime (same id)");
    CHECK(cur.it_value.tv_sec > 900 && cur.it_value.tv_sec <= 1000, "one-shot remaining %ld s",
          (long)cur.it_value.tv_sec);
    printf("one-shot ok\n");
    timer_t ids[3] = {periodic, directed, oneshot};
    for (int i = 0; i < 3; i++) CHECK_SYS(timer_gettime(ids[i], &cur) == 0, "timer id kept");
    printf("ids ok\n");
    zoo_done();
}
