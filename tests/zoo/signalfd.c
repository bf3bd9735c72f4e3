/* signalfd: a signalfd for a blocked signal that is pending at checkpoint
 * time (queued with a value) delivers it after restore; its signal mask and
 * flags survive. */
#include "zoo.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>

static int read_sfd(int fd, struct signalfd_siginfo *si)
{
    ssize_t r = read(fd, si, sizeof *si);
    if (r < 0)
        return -errno;
    CHECK(r == sizeof *si, "short signalfd read");
    return 0;
}

int main(void)
{
    char line[64];
    sigset_t mask, want;
    struct signalfd_siginfo si;

    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigaddset(&mask, SIGRTMIN + 3);
    CHECK_SYS(sigprocmask(SIG_BLOCK, &mask, NULL) == 0, "sigprocmask");

    sigemptyset(&want);
    sigaddset(&want, SIGUSR1);
    sigaddset(&want, SIGRTMIN + 3);
    int sfd = signalfd(-1, &want, SFD_NONBLOCK | SFD_CLOEXEC);
    CHECK_SYS(sfd >= 0, "signalfd");

    CHECK_SYS(sigqueue(getpid(), SIGUSR1, (union sigval){.sival_int = 77}) == 0, "sigqueue");
    CHECK_SYS(sigqueue(getpid(), SIGRTMIN + 3, (union sigval){.sival_int = 5}) == 0, "sigqueue");
    CHECK_SYS(sigqueue(getpid(), SIGRTMIN + 3, (union sigval){.sival_int = 6}) == 0, "sigqueue");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK(fcntl(sfd, F_GETFD) == FD_CLOEXEC && (fcntl(sfd, F_GETFL) & O_NONBLOCK),
          "signalfd flags");
    CHECK(read_sfd(sfd, &si) == 0, "pending SIGUSR1 not readable");
    CHECK(si.ssi_signo == (uint32_t)SIGUSR1 && si.ssi_code == SI_QUEUE && si.ssi_int == 77 &&
          si.ssi_pid == (uint32_t)getpid(), "SIGUSR1 siginfo");
    printf("signalfd got SIGUSR1 value %d\n", si.ssi_int);
    for (int v = 5; v <= 6; v++) {
        CHECK(read_sfd(sfd, &si) == 0, "pending RT signal not readable");
        CHECK(si.ssi_signo == (uint32_t)(SIGRTMIN + 3) && si.ssi_int == v, "RT siginfo");
        printf("signalfd got SIGRTMIN+3 value %d\n", si.ssi_int);
    }
    CHECK(read_sfd(sfd, &si) == -EAGAIN, "unexpected extra signal");

    /* SIGUSR2 is blocked but not in the signalfd mask */
    raise(SIGUSR2);
    CHECK(read_sfd(sfd, &si) == -EAGAIN, "signalfd mask widened (SIGUSR2 read)");
    sigset_t pend;
    sigpending(&pend);
    CHECK(sigismember(&pend, SIGUSR2), "SIGUSR2 not pending");
    printf("signalfd mask ok\n");

    raise(SIGUSR1);
    CHECK(read_sfd(sfd, &si) == 0 && si.ssi_signo == (uint32_t)SIGUSR1 &&
          si.ssi_code == SI_TKILL, "new SIGUSR1");
    printf("signalfd still works\n");
    zoo_done();
}
