/* threads: several threads, each blocked in a different syscall at checkpoint
 * time (futex, nanosleep, poll, read) plus a spinning computation thread.
 * After restore they are woken and report thread-local state, work results,
 * and that their tids did not change. The futex one has a signal pending
 * for it alone, sent with pthread_kill (tgkill) while it blocks it. */
#include "zoo.h"
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

#define NTHREADS 5

static __thread uint64_t tls_value;
static __thread char tls_name[32];
static __thread uint64_t tls_array[64];

static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int cond_flag;
static atomic_int stop_flag;
static atomic_int started;
static int poll_pipe[2], read_pipe[2];

struct result {
    pid_t tid_before;
    int tid_ok;
    uint64_t tls_value;
    char tls_name[32];
    uint64_t work;
    long loops; /* not printed (timing dependent) */
    int spin_ok;
};
static struct result results[NTHREADS];

static pid_t my_gettid(void) { return (pid_t)syscall(SYS_gettid); }

static void tls_init(int idx, const char *name)
{
    tls_value = 1000 + idx;
    snprintf(tls_name, sizeof tls_name, "%s", name);
    for (int i = 0; i < 64; i++)
        tls_array[i] = (uint64_t)idx * 1000003u + i * i;
    results[idx].tid_before = my_gettid();
    atomic_fetch_add(&started, 1);
}

static void tls_report(int idx)
{
    struct result *r = &results[idx];
    r->tid_ok = my_gettid() == r->tid_before;
    r->tls_value = tls_value;
    snprintf(r->tls_name, sizeof r->tls_name, "%s", tls_name);
    uint64_t h = 0;
    for (int i = 0; i < 64; i++)
        h = h * 31 + tls_array[i];
    r->work = h;
}

static int thread_signal_ok;

static void *t_cond(void *arg)
{
    (void)arg;
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL);
    tls_init(0, "cond");
    pthread_mutex_lock(&mtx);
    while (!cond_flag)
        pthread_cond_wait(&cond, &mtx);
    pthread_mutex_unlock(&mtx);
    /* still pending for this thread, as tgkill sent it */
    siginfo_t si;
    struct timespec zero = {0, 0};
    thread_signal_ok = sigtimedwait(&usr1, &si, &zero) == SIGUSR1 &&
                       (si.si_code == SI_TKILL || si.si_code == SI_USER) &&
                       si.si_pid == getpid();
    tls_report(0);
    return NULL;
}

static void *t_sleep(void *arg)
{
    (void)arg;
    tls_init(1, "nanosleep");
    long loops = 0;
    while (!atomic_load(&stop_flag)) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        loops++;
    }
    results[1].loops = loops;
    tls_report(1);
    return NULL;
}

static void *t_poll(void *arg)
{
    (void)arg;
    tls_init(2, "poll");
    for (;;) {
        struct pollfd p = {.fd = poll_pipe[0], .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (r < 0 && errno == EINTR)
            continue;
        CHECK_SYS(r >= 0, "poll");
        if (r == 1) {
            CHECK(p.revents & POLLIN, "poll revents %x", p.revents);
            break;
        }
    }
    char c;
    CHECK(read(poll_pipe[0], &c, 1) == 1 && c == 'p', "poll pipe byte");
    tls_report(2);
    return NULL;
}

static void *t_read(void *arg)
{
    (void)arg;
    tls_init(3, "read");
    char buf[16];
    ssize_t r;
    do
        r = read(read_pipe[0], buf, sizeof buf);
    while (r < 0 && errno == EINTR);
    CHECK(r == 5 && memcmp(buf, "wake!", 5) == 0, "read pipe data");
    tls_report(3);
    return NULL;
}

/* Fixed computation repeated until told to stop; every round must give the
 * same result (registers/stack of a running thread must survive). */
static uint64_t compute_round(void)
{
    uint64_t x = 88172645463325252ULL, acc = 0;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc += x % 1000003;
    }
    return acc;
}

static void *t_spin(void *arg)
{
    (void)arg;
    tls_init(4, "spinner");
    uint64_t first = compute_round();
    long rounds = 1;
    int ok = 1;
    while (!atomic_load(&stop_flag)) {
        if (compute_round() != first)
            ok = 0;
        rounds++;
    }
    results[4].loops = rounds;
    results[4].spin_ok = ok;
    tls_report(4);
    results[4].work ^= first;
    return NULL;
}

int main(void)
{
    void *(*fns[NTHREADS])(void *) = {t_cond, t_sleep, t_poll, t_read, t_spin};
    pthread_t th[NTHREADS];
    char line[64];

    tls_value = 999;
    snprintf(tls_name, sizeof tls_name, "main");
    pid_t main_tid = my_gettid();
    CHECK_SYS(pipe(poll_pipe) == 0, "pipe");
    CHECK_SYS(pipe(read_pipe) == 0, "pipe");
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&th[i], NULL, fns[i], NULL) == 0, "pthread_create");
    while (atomic_load(&started) < NTHREADS)
        usleep(1000);
    CHECK(pthread_kill(th[0], SIGUSR1) == 0, "pthread_kill");
    usleep(20000); /* let them reach their blocking syscalls */

    zoo_ready();
    zoo_read_line(line, sizeof line);

    /* wake everybody */
    pthread_mutex_lock(&mtx);
    cond_flag = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&mtx);
    atomic_store(&stop_flag, 1);
    CHECK(write(poll_pipe[1], "p", 1) == 1, "write poll pipe");
    CHECK(write(read_pipe[1], "wake!", 5) == 5, "write read pipe");
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_join(th[i], NULL) == 0, "pthread_join");

    int tids_ok = my_gettid() == main_tid && getpid() == main_tid;
    CHECK(tls_value == 999 && strcmp(tls_name, "main") == 0, "main tls");
    printf("main tls=%llu name=%s\n", (unsigned long long)tls_value, tls_name);
    for (int i = 0; i < NTHREADS; i++) {
        struct result *r = &results[i];
        CHECK(r->tls_value == (uint64_t)(1000 + i), "thread %d tls value", i);
        printf("thread %d tls=%llu name=%s work=%016llx\n", i,
               (unsigned long long)r->tls_value, r->tls_name,
               (unsigned long long)r->work);
        if (!r->tid_ok)
            tids_ok = 0;
    }
    CHECK(thread_signal_ok, "the signal pending for the futex thread was lost or changed");
    printf("thread signal ok\n");
    CHECK(results[4].spin_ok, "spinner computed inconsistent results");
    printf("spinner ok\n");
    CHECK(tids_ok, "tid changed across restore");
    printf("tid ok\n");
    zoo_done();
}
