/* tree_mappings: mappings a parent and its child share by fork, of kinds
 * whose restore moves them (the tree's fork-shared memory) and must keep
 * what they are: an executable one holding code (rwx), two side by side
 * that the process kept apart (two lines in maps), and a 1 TiB MAP_NORESERVE
 * reservation with a little written in it. After the go, each process runs
 * the code, counts the mappings of the pair, and checks the data.
 */
#include "zoo.h"

#include <sys/mman.h>
#include <sys/wait.h>

#define PAIR (1u << 20)
#define HUGE_RESERVE (1ull << 40)

static int (*code)(void);
static unsigned char *pair, *reserve;

static int pair_mappings(void)
{
    char line[512];
    int n = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK_SYS(f != NULL, "open maps");
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo < (unsigned long)pair + 2 * PAIR &&
            hi > (unsigned long)pair)
            n++;
    }
    fclose(f);
    return n;
}

static uint64_t data_sum(void)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < 2 * PAIR; i += 512)
        sum = sum * 31 + pair[i];
    for (size_t i = 0; i < (64u << 10); i += 64)
        sum = sum * 31 + reserve[(1ull << 39) + i];
    return sum;
}

static void report(const char *who)
{
    printf("%s: code says %d, the pair is %d mappings, data %s\n", who, code(), pair_mappings(),
           data_sum() == 0 ? "zero" : "there");
    fflush(stdout);
}

int main(void)
{
    static const unsigned char ret42[] = {0xb8, 0x2a, 0, 0, 0, 0xc3}; /* mov eax, 42; ret */
    void *x = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK_SYS(x != MAP_FAILED, "mmap rwx");
    memcpy(x, ret42, sizeof ret42);
    code = (int (*)(void))x;

    /* Two mappings side by side, apart: the second made elsewhere, written
     * (so it has its own anon_vma) and moved next to the first. */
    pair = mmap(NULL, 2 * PAIR, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK_SYS(pair != MAP_FAILED, "mmap pair");
    unsigned char *second = mmap(NULL, PAIR, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK_SYS(second != MAP_FAILED, "mmap second");
    CHECK_SYS(munmap(pair + PAIR, PAIR) == 0, "munmap");
    memset(pair, 1, PAIR);
    memset(second, 2, PAIR);
    CHECK_SYS(mremap(second, PAIR, PAIR, MREMAP_MAYMOVE | MREMAP_FIXED, pair + PAIR) == pair + PAIR, "mremap");

    reserve = mmap(NULL, HUGE_RESERVE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK_SYS(reserve != MAP_FAILED, "mmap a reservation");
    memset(reserve + (1ull << 39), 3, 64u << 10);

    int gate[2], done[2];
    CHECK_SYS(pipe(gate) == 0 && pipe(done) == 0, "pipe");
    pid_t kid = fork();
    CHECK_SYS(kid >= 0, "fork");
    if (kid == 0) {
        char c;
        CHECK_SYS(read(gate[0], &c, 1) == 1, "child: gate");
        report("child");
        CHECK_SYS(write(done[1], "d", 1) == 1, "child: done");
        _exit(0);
    }

    zoo_ready();
    char line[64];
    zoo_read_line(line, sizeof line);

    report("parent");
    CHECK_SYS(write(gate[1], "g", 1) == 1, "open the gate");
    char c;
    CHECK_SYS(read(done[0], &c, 1) == 1, "wait for the child");
    int st;
    CHECK_SYS(waitpid(kid, &st, 0) == kid, "waitpid");
    printf("child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    zoo_done();
}
