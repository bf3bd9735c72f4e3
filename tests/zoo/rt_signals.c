/* rt_signals: counts a real-time signal sigqueue()d to it with increasing
 * values, and another sent with kill() (the test sends them while thaw
 * checkpoints it). After "go" it prints how many came, and how many had
 * the wrong si_code or came out of order or twice, or (kill's) did not
 * come from its parent: a checkpoint that holds the process must hand
 * signals that arrive meanwhile back with their siginfo. */
#include "zoo.h"
#include <pthread.h>
#include <signal.h>

#define SIG (SIGRTMIN + 5)
#define SIG_KILL (SIGRTMIN + 6)

static volatile long n, last, wrong_code, disorder, n_kill, wrong_sender;
static pid_t parent;

static void handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    long v = si->si_value.sival_int;
    n++;
    if (si->si_code != SI_QUEUE)
        wrong_code++;
    if (v <= last)
        disorder++;
    last = v;
}

static void kill_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    n_kill++;
    if (si->si_code != SI_USER || si->si_pid != parent)
        wrong_sender++;
}

static void *idle(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

int main(void)
{
    char line[64];
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIG);
    sigaddset(&m, SIG_KILL);
    parent = getppid();
    /* Threads that block it, so that every one goes to the main thread. */
    CHECK_SYS(pthread_sigmask(SIG_BLOCK, &m, NULL) == 0, "block");
    for (int i = 0; i < 32; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, idle, NULL) == 0, "pthread_create");
    }
    CHECK_SYS(pthread_sigmask(SIG_UNBLOCK, &m, NULL) == 0, "unblock");
    struct sigaction sa = {0};
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    CHECK_SYS(sigaction(SIG, &sa, NULL) == 0, "sigaction");
    sa.sa_sigaction = kill_handler;
    CHECK_SYS(sigaction(SIG_KILL, &sa, NULL) == 0, "sigaction");

    zoo_ready();
    zoo_read_line(line, sizeof line);
    CHECK_SYS(pthread_sigmask(SIG_BLOCK, &m, NULL) == 0, "block");
    printf("received %ld, last %ld, wrong si_code %ld, out of order %ld\n", n, last, wrong_code, disorder);
    printf("kill: received %ld, not from its parent %ld\n", n_kill, wrong_sender);
    zoo_done();
}
