/* signals: handlers (flags, masks), SIG_IGN, blocked mask with pending
 * signals (thread- and process-directed, realtime queue with values),
 * sigaltstack and ITIMER_REAL survive checkpoint/restore. */
#include "zoo.h"
#include <signal.h>
#include <sys/time.h>

#define SIG_RT (SIGRTMIN + 2)
#define ITIMER_SEC 1000

static char altstack[64 * 1024] __attribute__((aligned(16)));

static volatile sig_atomic_t usr1_ran, usr1_on_altstack, usr1_mask_ok;
static volatile sig_atomic_t usr2_ran, usr2_code, usr2_value, usr2_pid_ok;
static volatile sig_atomic_t winch_ran;
static volatile sig_atomic_t alrm_ran;
/* delivery log of the pending signals */
static volatile sig_atomic_t log_sig[8], log_val[8], log_code[8], log_n;

static void h_usr1(int sig)
{
    (void)sig;
    char local;
    sigset_t cur;
    usr1_ran++;
    usr1_on_altstack = &local >= altstack && &local < altstack + sizeof altstack;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    usr1_mask_ok = sigismember(&cur, SIGUSR2) && sigismember(&cur, SIGUSR1) &&
                   sigismember(&cur, SIGCHLD);
}

static void h_usr2(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    usr2_ran++;
    usr2_code = si->si_code;
    usr2_value = si->si_value.sival_int;
    usr2_pid_ok = si->si_pid == getpid();
}

static void h_winch(int sig) { (void)sig; winch_ran++; }
static void h_alrm(int sig) { (void)sig; alrm_ran++; }

static void h_log(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int n = log_n;
    if (n < 8) {
        log_sig[n] = sig;
        log_val[n] = si->si_code == SI_QUEUE ? si->si_value.sival_int : -1;
        log_code[n] = si->si_code;
        log_n = n + 1;
    }
}

static const int sigs[] = {SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH, SIGTERM, SIGALRM, 0};
static struct sigaction saved[8];

static void install(int sig, void *handler, int flags, const int *mask)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (flags & SA_SIGINFO)
        sa.sa_sigaction = handler;
    else
        sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    for (; mask && *mask; mask++)
        sigaddset(&sa.sa_mask, *mask);
    CHECK_SYS(sigaction(sig, &sa, NULL) == 0, "sigaction");
}

static int same_set(const sigset_t *a, const sigset_t *b)
{
    for (int s = 1; s < NSIG; s++)
        if (sigismember(a, s) != sigismember(b, s))
            return 0;
    return 1;
}

static const char *signame(int sig)
{
    return sig == SIGHUP ? "HUP" : sig == SIG_RT ? "RTMIN+2" : sig == SIGINT ? "INT" : "?";
}

int main(void)
{
    char line[64];

    install(SIGUSR1, h_usr1, SA_RESTART | SA_ONSTACK, (int[]){SIGUSR2, SIGCHLD, 0});
    install(SIGUSR2, h_usr2, SA_SIGINFO | SA_RESTART, NULL);
    install(SIGHUP, h_log, SA_SIGINFO, (int[]){SIGINT, 0});
    install(SIG_RT, h_log, SA_SIGINFO | SA_RESTART, NULL);
    install(SIGWINCH, h_winch, SA_RESETHAND | SA_NODEFER, NULL);
    install(SIGALRM, h_alrm, 0, NULL);
    CHECK(signal(SIGTERM, SIG_IGN) != SIG_ERR, "SIG_IGN");
    for (int i = 0; sigs[i]; i++)
        sigaction(sigs[i], NULL, &saved[i]);
    struct sigaction saved_rt;
    sigaction(SIG_RT, NULL, &saved_rt);

    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    CHECK_SYS(sigaltstack(&ss, NULL) == 0, "sigaltstack");

    struct itimerval itv = {{ITIMER_SEC, 0}, {ITIMER_SEC, 0}};
    CHECK_SYS(setitimer(ITIMER_REAL, &itv, NULL) == 0, "setitimer");

    sigset_t block, pend_want, block_saved;
    sigemptyset(&block);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIG_RT);
    sigaddset(&block, SIGINT);
    CHECK_SYS(sigprocmask(SIG_BLOCK, &block, NULL) == 0, "sigprocmask");
    sigprocmask(SIG_BLOCK, NULL, &block_saved);
    raise(SIGHUP); /* thread-directed */
    CHECK_SYS(sigqueue(getpid(), SIG_RT, (union sigval){.sival_int = 1111}) == 0, "sigqueue");
    CHECK_SYS(sigqueue(getpid(), SIG_RT, (union sigval){.sival_int = 2222}) == 0, "sigqueue");
    sigemptyset(&pend_want);
    sigaddset(&pend_want, SIGHUP);
    sigaddset(&pend_want, SIG_RT);

    zoo_ready();
    zoo_read_line(line, sizeof line);

    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    CHECK(same_set(&cur, &block_saved), "blocked mask changed");
    printf("blocked mask ok\n");
    sigpending(&cur);
    CHECK(same_set(&cur, &pend_want), "pending set changed");
    printf("pending set ok\n");

    for (int i = 0; sigs[i]; i++) {
        struct sigaction now;
        sigaction(sigs[i], NULL, &now);
        CHECK(now.sa_handler == saved[i].sa_handler, "signal %d handler changed", sigs[i]);
        CHECK(now.sa_flags == saved[i].sa_flags, "signal %d flags changed (%#x -> %#x)",
              sigs[i], saved[i].sa_flags, now.sa_flags);
        CHECK(same_set(&now.sa_mask, &saved[i].sa_mask), "signal %d sa_mask changed", sigs[i]);
    }
    {
        struct sigaction now;
        sigaction(SIG_RT, NULL, &now);
        CHECK(now.sa_sigaction == saved_rt.sa_sigaction && now.sa_flags == saved_rt.sa_flags,
              "realtime signal action changed");
    }
    printf("sigactions ok\n");

    stack_t now_ss;
    CHECK_SYS(sigaltstack(NULL, &now_ss) == 0, "sigaltstack query");
    CHECK(now_ss.ss_sp == altstack && now_ss.ss_size == sizeof altstack &&
          now_ss.ss_flags == 0, "sigaltstack changed");
    printf("sigaltstack ok\n");

    struct itimerval now_itv;
    CHECK_SYS(getitimer(ITIMER_REAL, &now_itv) == 0, "getitimer");
    CHECK(now_itv.it_interval.tv_sec == ITIMER_SEC && now_itv.it_interval.tv_usec == 0,
          "itimer interval changed");
    CHECK(now_itv.it_value.tv_sec > ITIMER_SEC - 100 &&
          (now_itv.it_value.tv_sec < ITIMER_SEC ||
           (now_itv.it_value.tv_sec == ITIMER_SEC && now_itv.it_value.tv_usec == 0)),
          "itimer value implausible (%ld s)", (long)now_itv.it_value.tv_sec);
    CHECK(alrm_ran == 0, "SIGALRM fired early");
    printf("itimer ok\n");

    raise(SIGTERM);
    printf("SIG_IGN ok\n");

    raise(SIGUSR1);
    CHECK(usr1_ran == 1, "SIGUSR1 handler did not run");
    CHECK(usr1_on_altstack, "SIGUSR1 handler not on the alternate stack");
    CHECK(usr1_mask_ok, "SIGUSR1 handler mask wrong");
    printf("SIGUSR1 handler ok (altstack, mask)\n");

    CHECK_SYS(sigqueue(getpid(), SIGUSR2, (union sigval){.sival_int = 42}) == 0, "sigqueue");
    CHECK(usr2_ran == 1 && usr2_code == SI_QUEUE && usr2_value == 42 && usr2_pid_ok,
          "SIGUSR2 SA_SIGINFO handler info");
    printf("SIGUSR2 siginfo handler ok\n");

    raise(SIGWINCH);
    CHECK(winch_ran == 1, "SIGWINCH handler did not run");
    {
        struct sigaction now;
        sigaction(SIGWINCH, NULL, &now);
        CHECK(now.sa_handler == SIG_DFL, "SA_RESETHAND not honoured");
    }
    printf("SA_RESETHAND ok\n");

    sigprocmask(SIG_UNBLOCK, &block, NULL);
    for (int i = 0; i < log_n; i++)
        printf("delivered %s code=%s value=%d\n", signame(log_sig[i]),
               log_code[i] == SI_QUEUE ? "SI_QUEUE" : log_code[i] == SI_TKILL ? "SI_TKILL"
                                                                            : "other",
               (int)log_val[i]);
    CHECK(log_n == 3, "expected 3 pending signals delivered, got %d", (int)log_n);
    sigpending(&cur);
    sigemptyset(&pend_want);
    CHECK(same_set(&cur, &pend_want), "signals still pending");
    printf("pending signals delivered\n");
    zoo_done();
}
