/* prctl_settings: prctl settings survive checkpoint/restore. The process
 * makes itself non-dumpable (so that other processes of its user cannot
 * read its memory), turns transparent huge pages off and becomes a child
 * subreaper; its main thread sets a timer slack of its own, keeps its
 * capabilities across a uid change and asks for SIGUSR1 when its parent
 * dies; a second thread sets another slack, no keep-capabilities and
 * SIGUSR2. After restore each thread checks its own, the main thread the
 * process's. */
#include "zoo.h"
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>

#ifndef PR_THP_DISABLE_EXCEPT_ADVISED
#define PR_THP_DISABLE_EXCEPT_ADVISED (1 << 1)
#endif

struct want {
    const char *name;
    unsigned long slack;
    int keep_caps, death_signal;
};

static pthread_barrier_t set_up, go;

static void apply(const struct want *w)
{
    CHECK_SYS(prctl(PR_SET_TIMERSLACK, w->slack, 0, 0, 0) == 0, "PR_SET_TIMERSLACK");
    CHECK_SYS(prctl(PR_SET_KEEPCAPS, w->keep_caps, 0, 0, 0) == 0, "PR_SET_KEEPCAPS");
    CHECK_SYS(prctl(PR_SET_PDEATHSIG, w->death_signal, 0, 0, 0) == 0, "PR_SET_PDEATHSIG");
}

static void verify(const struct want *w)
{
    long slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    CHECK(slack == (long)w->slack, "%s: timer slack %ld ns, want %lu", w->name, slack, w->slack);
    int keep = prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0);
    CHECK(keep == w->keep_caps, "%s: keep-capabilities %d, want %d", w->name, keep, w->keep_caps);
    int sig = -1;
    CHECK_SYS(prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) == 0, "PR_GET_PDEATHSIG");
    CHECK(sig == w->death_signal, "%s: parent-death signal %d, want %d", w->name, sig, w->death_signal);
}

static const struct want wants[2] = {{"main", 123456, 1, SIGUSR1}, {"second", 654321, 0, SIGUSR2}};

static void *thread_main(void *arg)
{
    (void)arg;
    apply(&wants[1]);
    pthread_barrier_wait(&set_up);
    pthread_barrier_wait(&go);
    verify(&wants[1]);
    return NULL;
}

int main(void)
{
    /* Whoever ends up the parent may go first: the signals only count. */
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    CHECK_SYS(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0, "PR_SET_DUMPABLE");
    /* With the flag where the kernel has it (6.18): it must come back too. */
    if (prctl(PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0) != 0)
        CHECK_SYS(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0, "PR_SET_THP_DISABLE");
    int thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
    CHECK_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, "PR_SET_CHILD_SUBREAPER");

    pthread_barrier_init(&set_up, NULL, 2);
    pthread_barrier_init(&go, NULL, 2);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, thread_main, NULL) == 0, "pthread_create");
    apply(&wants[0]);
    pthread_barrier_wait(&set_up);

    zoo_wait_go();

    verify(&wants[0]);
    pthread_barrier_wait(&go);
    pthread_join(th, NULL);
    printf("threads: prctl ok\n");
    int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
    CHECK(dumpable == 0, "dumpable %d, want 0", dumpable);
    int thp_now = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
    CHECK(thp_now == thp, "THP disable %d, want %d", thp_now, thp);
    int subreaper = -1;
    CHECK_SYS(prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0) == 0, "PR_GET_CHILD_SUBREAPER");
    CHECK(subreaper == 1, "child subreaper %d, want 1", subreaper);
    printf("process: prctl ok\n");
    zoo_done();
}
