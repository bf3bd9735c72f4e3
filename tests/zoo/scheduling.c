/* scheduling: how the process is scheduled survives checkpoint/restore.
 * It leads a session of its own (setsid) and has an oom_score_adj of 345;
 * its main thread runs at nice 7, on the last CPU only when there are
 * several, at I/O priority best-effort 6; a second thread is SCHED_BATCH at
 * nice 3 and I/O class idle; a third is SCHED_RR priority 3 with
 * reset-on-fork (SCHED_IDLE where real-time is not allowed). After restore
 * each thread checks its own attributes against what it set. */
#include "zoo.h"
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>

struct attr { /* the kernel's struct sched_attr */
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
    uint32_t util_min, util_max;
};

struct want {
    const char *name;
    uint32_t policy;
    uint64_t flags;
    uint32_t priority;
    int nice;
    int ioprio;
    cpu_set_t cpus;
};

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }
static int ioprio(int class, int level) { return class << 13 | level; }

static pthread_barrier_t set_up, go;

static void apply(struct want *w)
{
    pid_t tid = gettid_();
    CHECK_SYS(setpriority(PRIO_PROCESS, tid, w->nice) == 0, "setpriority");
    CHECK_SYS(syscall(SYS_ioprio_set, 1, tid, w->ioprio) == 0, "ioprio_set");
    CHECK_SYS(sched_setaffinity(0, sizeof w->cpus, &w->cpus) == 0, "sched_setaffinity");
    if (w->policy != SCHED_OTHER) {
        struct attr a = {.size = sizeof a, .policy = w->policy, .flags = w->flags, .nice = w->nice,
                         .priority = w->priority};
        if (syscall(SYS_sched_setattr, 0, &a, 0) != 0) {
            CHECK(errno == EPERM && w->policy == SCHED_RR, "sched_setattr %s: %s", w->name, strerror(errno));
            /* no real-time here (a container's cgroup): another policy */
            w->policy = SCHED_IDLE;
            w->flags = SCHED_FLAG_RESET_ON_FORK;
            w->priority = 0;
            a.policy = SCHED_IDLE;
            a.flags = w->flags;
            a.priority = 0;
            CHECK_SYS(syscall(SYS_sched_setattr, 0, &a, 0) == 0, "sched_setattr SCHED_IDLE");
        }
    }
}

static void verify(const struct want *w)
{
    pid_t tid = gettid_();
    struct attr a = {0};
    CHECK_SYS(syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) == 0, "sched_getattr");
    CHECK(a.policy == w->policy, "%s: policy %u, want %u", w->name, a.policy, w->policy);
    CHECK((a.flags & SCHED_FLAG_RESET_ON_FORK) == w->flags, "%s: flags %llx, want %llx", w->name,
          (unsigned long long)a.flags, (unsigned long long)w->flags);
    CHECK(a.priority == w->priority, "%s: priority %u, want %u", w->name, a.priority, w->priority);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, tid);
    CHECK(errno == 0 && nice == w->nice, "%s: nice %d, want %d", w->name, nice, w->nice);
    long io = syscall(SYS_ioprio_get, 1, tid);
    CHECK(io == w->ioprio, "%s: ioprio %ld, want %d", w->name, io, w->ioprio);
    cpu_set_t cpus;
    CHECK_SYS(sched_getaffinity(0, sizeof cpus, &cpus) == 0, "sched_getaffinity");
    CHECK(CPU_EQUAL(&cpus, &w->cpus), "%s: CPU affinity changed (%d CPUs, want %d)", w->name, CPU_COUNT(&cpus),
          CPU_COUNT(&w->cpus));
}

static struct want wants[3];

static void *thread_main(void *arg)
{
    struct want *w = arg;
    apply(w);
    pthread_barrier_wait(&set_up);
    pthread_barrier_wait(&go);
    verify(w);
    return NULL;
}

static int read_oom(void)
{
    char buf[32] = "";
    int fd = open("/proc/self/oom_score_adj", O_RDONLY);
    CHECK_SYS(fd >= 0, "open oom_score_adj");
    CHECK_SYS(read(fd, buf, sizeof buf - 1) > 0, "read oom_score_adj");
    close(fd);
    return atoi(buf);
}

int main(void)
{
    if (getpgrp() != getpid())
        CHECK_SYS(setsid() >= 0, "setsid");
    CHECK(getsid(0) == getpid(), "not a session leader (started as a group leader of another session)");
    int fd = open("/proc/self/oom_score_adj", O_WRONLY);
    CHECK_SYS(fd >= 0 && write(fd, "345\n", 4) == 4, "write oom_score_adj");
    close(fd);

    cpu_set_t all;
    CHECK_SYS(sched_getaffinity(0, sizeof all, &all) == 0, "sched_getaffinity");
    int last = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &all))
            last = i;
    wants[0] = (struct want){"main", SCHED_OTHER, 0, 0, 7, ioprio(2, 6), all};
    if (CPU_COUNT(&all) > 1) {
        CPU_ZERO(&wants[0].cpus);
        CPU_SET(last, &wants[0].cpus);
    }
    wants[1] = (struct want){"batch", SCHED_BATCH, 0, 0, 3, ioprio(3, 0), all};
    wants[2] = (struct want){"realtime", SCHED_RR, SCHED_FLAG_RESET_ON_FORK, 3, 0, ioprio(2, 1), all};

    pthread_barrier_init(&set_up, NULL, 3);
    pthread_barrier_init(&go, NULL, 3);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, thread_main, &wants[i + 1]) == 0, "pthread_create");
    pthread_barrier_wait(&set_up);
    apply(&wants[0]);

    zoo_wait_go();

    verify(&wants[0]);
    pthread_barrier_wait(&go);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) /* a failed check exited already */
        printf("%s: scheduling ok\n", wants[i].name);
    CHECK(getsid(0) == getpid() && getpgrp() == getpid(), "no longer leads its session (sid %d, pgid %d, pid %d)",
          getsid(0), getpgrp(), getpid());
    printf("session ok\n");
    int oom = read_oom();
    CHECK(oom == 345, "oom_score_adj %d, want 345", oom);
    printf("oom_score_adj ok\n");
    zoo_done();
}
