/* pidfds: pidfds of the tree's processes name the same processes after a
 * restore. The root holds one of itself, one of a running child A
 * (PIDFD_NONBLOCK), one of a child Z that has exited and waits to be
 * reaped, and one of A's child G, which another branch of the tree makes;
 * A holds one of its parent, and the root's of Z is inherited by A (one
 * description in two processes). After the go: a signal sent through the
 * root's own pidfd arrives, Z is reaped through its pidfd with its status,
 * A answers a signal sent through its pidfd by signalling the root through
 * its pidfd of its parent, G's end shows on its pidfd, and A is reaped
 * through its pidfd. */
#include "zoo.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags) { return (int)syscall(SYS_pidfd_open, pid, flags); }

static int pidfd_send_signal(int fd, int sig) { return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0); }

static int readable(int fd, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static void child_a(int report, int zfd)
{
    (void)zfd; /* inherited: held across the checkpoint */
    int parent = pidfd_open(getppid(), 0);
    CHECK_SYS(parent >= 0, "A: pidfd_open(parent)");
    int gate[2];
    CHECK_SYS(pipe(gate) == 0, "A: pipe");
    pid_t g = fork();
    CHECK_SYS(g >= 0, "A: fork");
    if (g == 0) {
        char c;
        close(gate[1]);
        CHECK_SYS(read(gate[0], &c, 1) == 1, "G: gate");
        _exit(0);
    }
    close(gate[0]);
    CHECK_SYS(write(report, &g, sizeof g) == sizeof g, "A: report G");
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    int sig = 0;
    CHECK(sigwait(&usr1, &sig) == 0 && sig == SIGUSR1, "A: sigwait");
    CHECK_SYS(pidfd_send_signal(parent, SIGUSR2) == 0, "A: pidfd_send_signal(parent)");
    CHECK_SYS(write(gate[1], "g", 1) == 1, "A: let G go");
    int st;
    CHECK_SYS(waitpid(g, &st, 0) == g, "A: waitpid(G)");
    _exit(7);
}

int main(void)
{
    char line[64];
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGUSR2);
    CHECK_SYS(sigprocmask(SIG_BLOCK, &sigs, NULL) == 0, "sigprocmask");

    pid_t z = fork();
    CHECK_SYS(z >= 0, "fork Z");
    if (z == 0) _exit(5);
    int zfd = pidfd_open(z, 0);
    CHECK_SYS(zfd >= 0, "pidfd_open(Z)");
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK_SYS(waitid(P_PID, z, &si, WEXITED | WNOWAIT) == 0, "wait for Z to end, unreaped");

    int report[2];
    CHECK_SYS(pipe(report) == 0, "pipe");
    pid_t a = fork();
    CHECK_SYS(a >= 0, "fork A");
    if (a == 0) child_a(report[1], zfd);
    pid_t g;
    CHECK_SYS(read(report[0], &g, sizeof g) == sizeof g, "read G's pid");
    int afd = pidfd_open(a, PIDFD_NONBLOCK);
    CHECK_SYS(afd >= 0, "pidfd_open(A)");
    int gfd = pidfd_open(g, 0);
    CHECK_SYS(gfd >= 0, "pidfd_open(G)");
    int self = pidfd_open(getpid(), 0);
    CHECK_SYS(self >= 0, "pidfd_open(self)");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK((fcntl(afd, F_GETFL) & O_NONBLOCK) && !(fcntl(gfd, F_GETFL) & O_NONBLOCK), "PIDFD_NONBLOCK");
    CHECK(fcntl(self, F_GETFD) == FD_CLOEXEC, "close-on-exec");
    CHECK_SYS(pidfd_send_signal(self, SIGUSR1) == 0, "pidfd_send_signal(self)");
    int sig = 0;
    CHECK(sigwait(&sigs, &sig) == 0 && sig == SIGUSR1, "own signal");
    printf("signal through its own pidfd arrived\n");

    CHECK(readable(zfd, 0), "Z's pidfd does not show its end");
    memset(&si, 0, sizeof si);
    CHECK_SYS(waitid(P_PIDFD, (id_t)zfd, &si, WEXITED) == 0, "waitid(Z's pidfd)");
    printf("Z reaped through its pidfd: pid %s, exit %d\n", si.si_pid == z ? "same" : "other", si.si_status);

    CHECK(!readable(gfd, 0), "G's pidfd shows an end while it runs");
    CHECK_SYS(pidfd_send_signal(afd, SIGUSR1) == 0, "pidfd_send_signal(A)");
    siginfo_t got;
    CHECK(sigwaitinfo(&sigs, &got) == SIGUSR2, "A's answer");
    printf("A answered through its pidfd of its parent: from %s\n", got.si_pid == a ? "A" : "another process");
    CHECK(readable(gfd, 10000), "G's end never showed on its pidfd");
    printf("G's end showed on its pidfd\n");
    CHECK(readable(afd, 10000), "A's end never showed on its pidfd");
    memset(&si, 0, sizeof si);
    CHECK_SYS(waitid(P_PIDFD, (id_t)afd, &si, WEXITED) == 0, "waitid(A's pidfd)");
    printf("A reaped through its pidfd: pid %s, exit %d\n", si.si_pid == a ? "same" : "other", si.si_status);
    zoo_done();
}
