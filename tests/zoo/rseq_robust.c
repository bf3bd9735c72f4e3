/* rseq_robust: restartable sequences registration (done by glibc for every
 * thread) and the robust futex list survive checkpoint/restore.
 *
 * rseq: re-registering the same area must fail with the same errno as before
 * the checkpoint (EBUSY/EINVAL = still registered; success would mean the
 * restored thread was not registered), and cpu_id must be valid and agree
 * with getcpu(2).
 * robust list: a thread holding a robust mutex exits without unlocking it;
 * the kernel must mark it EOWNERDEAD, which only works if the restored thread
 * has its robust list registered (and kept its tid). */
#include "zoo.h"
#include <pthread.h>
#include <semaphore.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>

#define RSEQ_AREA_LEN 32

static pthread_mutex_t robust;
static sem_t locked;
static int wake_pipe[2];

struct rseq_state {
    int probe_errno_before, probe_errno_after;
    int cpu_ok;
};
static struct rseq_state st_main, st_thread;

static struct rseq *my_rseq(void)
{
    return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* Try to register the glibc rseq area again; returns errno (0 = it worked,
 * i.e. the thread was NOT registered). */
static int rseq_probe(void)
{
    long r = syscall(SYS_rseq, my_rseq(), RSEQ_AREA_LEN, 0, RSEQ_SIG);
    return r == 0 ? 0 : errno;
}

static int cpu_consistent(void)
{
    int ncpu = get_nprocs_conf();
    for (int i = 0; i < 1000; i++) {
        int a = (int)__atomic_load_n(&my_rseq()->cpu_id, __ATOMIC_RELAXED);
        unsigned cpu = 0;
        if (syscall(SYS_getcpu, &cpu, NULL, NULL) != 0)
            return 0;
        int c = (int)__atomic_load_n(&my_rseq()->cpu_id, __ATOMIC_RELAXED);
        if (a < 0 || a >= ncpu)
            return 0;
        if (a == c && (unsigned)a == cpu)
            return 1;
    }
    return 0;
}

static void *holder(void *arg)
{
    (void)arg;
    char c;
    if (__rseq_size != 0)
        st_thread.probe_errno_before = rseq_probe();
    CHECK(pthread_mutex_lock(&robust) == 0, "thread lock");
    sem_post(&locked);
    while (read(wake_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    if (__rseq_size != 0) {
        st_thread.probe_errno_after = rseq_probe();
        st_thread.cpu_ok = cpu_consistent();
    }
    return NULL; /* exits holding the robust mutex */
}

static void report(const char *who, const struct rseq_state *s)
{
    CHECK(s->probe_errno_after != 0, "%s: rseq not registered after restore", who);
    CHECK(s->probe_errno_after == s->probe_errno_before,
          "%s: rseq registration differs (errno %d -> %d)", who, s->probe_errno_before,
          s->probe_errno_after);
    CHECK(s->cpu_ok, "%s: rseq cpu_id invalid or inconsistent with getcpu", who);
    printf("%s: rseq registered\n", who);
}

int main(void)
{
    char line[64];
    pthread_t th;

    int have_rseq = __rseq_size != 0; /* 0: glibc.pthread.rseq=0 tunable */
    if (have_rseq) {
        st_main.probe_errno_before = rseq_probe();
        CHECK(st_main.probe_errno_before != 0, "rseq probe registered a new area");
    }

    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    CHECK(pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST) == 0, "setrobust");
    CHECK(pthread_mutex_init(&robust, &ma) == 0, "mutex init");
    CHECK_SYS(sem_init(&locked, 0, 0) == 0, "sem_init");
    CHECK_SYS(pipe(wake_pipe) == 0, "pipe");
    CHECK(pthread_create(&th, NULL, holder, NULL) == 0, "pthread_create");
    while (sem_wait(&locked) != 0)
        ;
    CHECK(pthread_mutex_trylock(&robust) == EBUSY, "robust mutex not held");

    zoo_ready();
    zoo_read_line(line, sizeof line);
    if (have_rseq) {
        st_main.probe_errno_after = rseq_probe();
        st_main.cpu_ok = cpu_consistent();
    }

    CHECK(pthread_mutex_trylock(&robust) == EBUSY, "robust mutex not held after restore");
    CHECK(write(wake_pipe[1], "x", 1) == 1, "wake thread");
    CHECK(pthread_join(th, NULL) == 0, "join");
    if (have_rseq) {
        report("main", &st_main);
        report("thread", &st_thread);
    } else {
        printf("rseq not registered by glibc\n");
    }
    int r = pthread_mutex_lock(&robust);
    CHECK(r == EOWNERDEAD, "lock of mutex of dead owner returned %d, not EOWNERDEAD", r);
    printf("robust mutex: EOWNERDEAD\n");
    CHECK(pthread_mutex_consistent(&robust) == 0, "consistent");
    CHECK(pthread_mutex_unlock(&robust) == 0, "unlock");
    CHECK(pthread_mutex_lock(&robust) == 0, "relock");
    CHECK(pthread_mutex_unlock(&robust) == 0, "unlock 2");
    printf("robust mutex recovered\n");
    zoo_done();
}
