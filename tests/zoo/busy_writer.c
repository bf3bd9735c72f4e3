/* busy_writer: a thread rewrites a 64 MiB buffer over and over, generation
 * after generation, while thaw checkpoints the process without stopping it
 * for long (copy-on-write fork).  The image must hold the buffer as it was
 * at one instant: the first k words of generation g+1, the rest of g.
 * Pages read at different moments would show more than one boundary.
 *
 * Also checks what the original must never see of a checkpoint: no SIGCHLD,
 * and no child left behind (not even a zombie, which wait with __WALL
 * would find).  argv[1] "seccomp" installs an allow-all seccomp filter
 * first, "mlock" locks some memory (thaw then reads the pages with the
 * process held).
 */
#include "zoo.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define WORDS ((size_t)8 << 20) /* 64 MiB of 8-byte words */

static uint64_t *buf;
static volatile int stop;
static volatile sig_atomic_t sigchld;
static char locked[1 << 16] __attribute__((aligned(4096)));

static void on_sigchld(int sig)
{
    (void)sig;
    sigchld++;
}

static void *writer(void *arg)
{
    (void)arg;
    for (uint64_t g = 1; !stop; g++)
        for (size_t i = 0; i < WORDS && !stop; i++)
            __atomic_store_n(&buf[i], g, __ATOMIC_RELAXED);
    return NULL;
}

int main(int argc, char **argv)
{
    char line[64];
    if (argc > 1 && strcmp(argv[1], "seccomp") == 0) {
        struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        struct sock_fprog prog = {1, &allow};
        CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
        CHECK_SYS(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0, "seccomp");
    }
    if (argc > 1 && strcmp(argv[1], "mlock") == 0)
        CHECK_SYS(mlock(locked, sizeof locked) == 0, "mlock");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    CHECK_SYS(sigaction(SIGCHLD, &sa, NULL) == 0, "sigaction");
    buf = calloc(WORDS, sizeof *buf);
    CHECK(buf != NULL, "calloc");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, writer, NULL) == 0, "pthread_create");
    while (__atomic_load_n(&buf[WORDS - 1], __ATOMIC_RELAXED) == 0)
        ; /* one whole generation written */

    zoo_ready();
    zoo_read_line(line, sizeof line);

    stop = 1;
    pthread_join(t, NULL);
    size_t boundaries = 0;
    for (size_t i = 1; i < WORDS; i++)
        if (buf[i] != buf[i - 1]) {
            CHECK(buf[i] + 1 == buf[i - 1], "word %zu is generation %llu after %llu", i,
                  (unsigned long long)buf[i], (unsigned long long)buf[i - 1]);
            boundaries++;
        }
    CHECK(boundaries <= 1, "%zu generation boundaries: not one instant", boundaries);
    printf("one instant\n");
    CHECK(sigchld == 0, "%d SIGCHLD received", (int)sigchld);
    int status;
    pid_t w = waitpid(-1, &status, WNOHANG | __WALL);
    CHECK(w == -1 && errno == ECHILD, "a child is left (waitpid gives %d)", (int)w);
    printf("no children\n");
    zoo_done();
}
