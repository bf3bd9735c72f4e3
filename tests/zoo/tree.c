/* tree: a process tree whose processes share state.  The parent forks a
 * worker A and a child B, which forks a grandchild C.  Between parent and A:
 * a pipe (requests, with one queued and unread at checkpoint) and a socket
 * pair (replies; a header byte queued for A).  Parent and A share one open
 * file description of a temporary file (its offset moves for both) and a
 * page of shared anonymous memory (A counts its requests there).  An 8 MiB
 * buffer filled before the forks is in every process, copy-on-write: the
 * image stores it once, and a restore shares it again; A changed its copy
 * in places (wrote some, emptied some) and checks it, the parent its own.
 * The same for a file mapped privately, whose written pages the processes
 * share. The parent
 * leads a process group its children are in.  B waits for C and exits with C's status + 1.
 * After the go: A answers requests, C is signalled, every wait gets the
 * status it should, and the shared file holds what both wrote, in order.
 */
#include "zoo.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

static volatile sig_atomic_t usr1;
static void on_usr1(int sig) { (void)sig; usr1 = 1; }

static void read_line_fd(int fd, char *buf, size_t size)
{
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        CHECK_SYS(r >= 0, "read line");
        if (r == 0 || c == '\n')
            break;
        if (n + 1 < size)
            buf[n++] = c;
    }
    buf[n] = '\0';
}

static volatile int *counter;
static uint64_t *big;
/* A file mapped privately, some of its pages written before the forks: the
 * written pages are anonymous copies every process shares, copy-on-write. */
static unsigned char *lib;
#define LIB_PAGES 16

static uint64_t lib_sum(void)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < LIB_PAGES * 4096; i++)
        sum = sum * 131 + lib[i];
    return sum;
}
#define BIG_WORDS (8u << 20) / 8

static uint64_t big_sum(void)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < BIG_WORDS; i++)
        sum = sum * 31 + big[i];
    return sum;
}

/* The name maps gives the mapping at addr ("/dev/zero (deleted)"). */
static const char *mapping_name(const volatile void *addr)
{
    static char line[512];
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK_SYS(f != NULL, "open maps");
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &name_at) >= 2 &&
            (unsigned long)addr >= lo && (unsigned long)addr < hi) {
            fclose(f);
            line[strcspn(line, "\n")] = 0;
            return line + name_at;
        }
    }
    fclose(f);
    return "(none)";
}

static void worker_a(int requests, int replies, int gate, int shared, int changed)
{
    char c, line[32];
    uint64_t parents = big_sum();
    /* Its copy then differs from the parent's in two places: a stretch it
     * wrote, and one it emptied (zeros where the parent has data). */
    for (size_t i = 1000; i < 9000; i++)
        big[i] ^= 0x5555;
    char *empty = (char *)(((uintptr_t)big + (1u << 20) + 4095) & ~(uintptr_t)4095);
    CHECK_SYS(madvise(empty, 256u << 10, MADV_DONTNEED) == 0, "A: madvise");
    /* And its view of the file: one written page its own, one back to the
     * file's (its copy dropped), one of the file's written. */
    lib[2 * 4096 + 7] ^= 0xff;
    CHECK_SYS(madvise(lib + 5 * 4096, 4096, MADV_DONTNEED) == 0, "A: madvise the file's page");
    lib[12 * 4096] = 'A';
    uint64_t mine = big_sum(), mine_lib = lib_sum();
    CHECK_SYS(write(changed, "c", 1) == 1, "A: changed its copy");
    CHECK_SYS(read(gate, &c, 1) == 1, "A: read gate");
    CHECK_SYS(read(replies, &c, 1) == 1 && c == 'x', "A: read header");
    uint64_t want = 0;
    CHECK_SYS(read(replies, &want, sizeof want) == sizeof want, "A: read the buffer's sum");
    CHECK(want == parents, "A: the parent's sum differs from the one it had");
    CHECK(big_sum() == mine, "A: its copy of the buffer differs");
    CHECK(lib_sum() == mine_lib, "A: its view of the privately mapped file differs");
    for (;;) {
        read_line_fd(requests, line, sizeof line);
        int n = atoi(line);
        if (n == 0)
            _exit(0);
        CHECK_SYS(write(shared, "a", 1) == 1, "A: write shared file");
        (*counter)++;
        char out[32];
        int len = snprintf(out, sizeof out, "%d\n", n * 2);
        CHECK_SYS(write(replies, out, (size_t)len) == len, "A: reply");
    }
}

int main(void)
{
    int requests[2], sv[2], gate[2], cpid_pipe[2], changed[2];
    /* It leads a process group, which its children are in. */
    CHECK_SYS(setpgid(0, 0) == 0, "setpgid");
    CHECK_SYS(pipe(requests) == 0 && pipe(gate) == 0 && pipe(cpid_pipe) == 0 && pipe(changed) == 0, "pipe");
    CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    char path[] = "/tmp/zoo-tree-XXXXXX";
    int shared = mkstemp(path);
    CHECK_SYS(shared >= 0, "mkstemp");
    CHECK_SYS(write(shared, "p", 1) == 1, "write shared file");
    counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK_SYS(counter != MAP_FAILED, "mmap shared");
    *counter = 100;
    big = malloc(BIG_WORDS * 8);
    CHECK(big != NULL, "malloc");
    uint64_t seed = 42;
    for (size_t i = 0; i < BIG_WORDS; i++)
        big[i] = zoo_rand(&seed);
    char lib_path[] = "/tmp/zoo-tree-lib-XXXXXX";
    int lib_fd = mkstemp(lib_path);
    CHECK_SYS(lib_fd >= 0, "mkstemp");
    for (int i = 0; i < LIB_PAGES; i++) {
        char page[4096];
        memset(page, 'a' + i, sizeof page);
        CHECK_SYS(write(lib_fd, page, sizeof page) == sizeof page, "write the mapped file");
    }
    lib = mmap(NULL, LIB_PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, lib_fd, 0);
    CHECK_SYS(lib != MAP_FAILED, "mmap the file");
    close(lib_fd);
    for (int i = 0; i < 8; i++)
        lib[i * 4096 + 100] = (unsigned char)('0' + i);

    pid_t a = fork();
    CHECK_SYS(a >= 0, "fork A");
    if (a == 0) {
        close(requests[1]);
        close(sv[0]);
        close(gate[1]);
        close(changed[0]);
        worker_a(requests[0], sv[1], gate[0], shared, changed[1]);
    }
    /* B and C have the parent's buffer and view of the file, unchanged:
     * they check them when they end (exit statuses 8 and 7 say they were). */
    uint64_t parents = big_sum(), parents_lib = lib_sum();
    pid_t b = fork();
    CHECK_SYS(b >= 0, "fork B");
    if (b == 0) {
        pid_t c = fork();
        CHECK_SYS(c >= 0, "fork C");
        if (c == 0) {
            signal(SIGUSR1, on_usr1);
            pid_t me = getpid();
            CHECK_SYS(write(cpid_pipe[1], &me, sizeof me) == sizeof me, "C: ready");
            while (!usr1)
                pause();
            _exit(big_sum() == parents && lib_sum() == parents_lib ? 7 : 90);
        }
        int st;
        CHECK_SYS(waitpid(c, &st, 0) == c, "B: waitpid C");
        if (big_sum() != parents || lib_sum() != parents_lib)
            _exit(91);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) + 1 : 99);
    }
    close(requests[0]);
    close(sv[1]);
    close(gate[0]);
    pid_t grandchild;
    CHECK_SYS(read(cpid_pipe[0], &grandchild, sizeof grandchild) == sizeof grandchild, "wait for C");
    char c;
    CHECK_SYS(read(changed[0], &c, 1) == 1, "wait for A to change its copy");
    /* Queued at checkpoint: a request A has not read, a header byte. */
    CHECK_SYS(write(requests[1], "10\n", 3) == 3, "queue a request");
    CHECK_SYS(write(sv[0], "x", 1) == 1, "queue the header");
    uint64_t sum = big_sum(), sum_lib = lib_sum();
    CHECK_SYS(write(sv[0], &sum, sizeof sum) == sizeof sum, "queue the buffer's sum");

    zoo_ready();
    char line[64];
    zoo_read_line(line, sizeof line);

    printf("A in its parent's group: %s, B: %s, parent leads it: %s\n", getpgid(a) == getpid() ? "yes" : "no",
           getpgid(b) == getpid() ? "yes" : "no", getpgrp() == getpid() ? "yes" : "no");
    CHECK_SYS(write(gate[1], "g", 1) == 1, "open the gate");
    char reply[32];
    read_line_fd(sv[0], reply, sizeof reply);
    printf("A answered %s\n", reply);
    CHECK_SYS(write(shared, "p", 1) == 1, "write shared file");
    CHECK_SYS(write(requests[1], "21\n0\n", 5) == 5, "request");
    read_line_fd(sv[0], reply, sizeof reply);
    printf("A answered %s\n", reply);
    int st;
    CHECK_SYS(waitpid(a, &st, 0) == a, "waitpid A");
    printf("A exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    printf("A counted to %d in shared memory (%s)\n", *counter, mapping_name(counter));

    /* The pid C had before the checkpoint is its pid after it. */
    CHECK_SYS(kill(grandchild, SIGUSR1) == 0, "signal C");
    CHECK_SYS(waitpid(b, &st, 0) == b, "waitpid B");
    printf("B exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);

    CHECK(big_sum() == sum, "the parent's buffer differs");
    CHECK(lib_sum() == sum_lib, "the parent's view of the privately mapped file differs");
    unlink(lib_path);
    /* One description: the offset counts every write of parent and A. */
    off_t at = lseek(shared, 0, SEEK_CUR);
    char data[16] = {0};
    CHECK_SYS(pread(shared, data, sizeof data - 1, 0) >= 0, "pread");
    printf("shared file: offset %lld, %s\n", (long long)at, data);
    unlink(path);
    zoo_done();
}
