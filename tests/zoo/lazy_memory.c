/* lazy_memory: what a process does to its memory right after a restore,
 * while thaw's pager may still be filling it (thaw restore without --eager):
 * reads it from several threads at once, forks a child that reads it, moves
 * a region with mremap, discards part of one with MADV_DONTNEED (must read
 * as zero, never as the image's data), unmaps part of one and maps fresh
 * memory there (zero too), and reads a sparse region. Every region holds
 * pseudo-random data with no zero page; the output is its checksums. */
#include "zoo.h"
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define MIB (1UL << 20)
#define PG 4096UL
#define NTHREADS 4

static uint64_t fill_seed = 0x9e3779b97f4a7c15ULL;

static void fill(unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = zoo_rand(&fill_seed) | 0x0101010101010101ULL;
        memcpy(p + i, &v, 8);
    }
}

static uint64_t sum(const unsigned char *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        h = (h ^ v) * 1099511628211ULL;
    }
    return h;
}

static int all_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}

static unsigned char *region(size_t len)
{
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK_SYS(p != MAP_FAILED, "mmap");
    return p;
}

struct part {
    unsigned char *p;
    size_t len;
    uint64_t want;
    int ok;
};

static void *check_part(void *arg)
{
    struct part *pt = arg;
    pt->ok = sum(pt->p, pt->len) == pt->want;
    return NULL;
}

int main(void)
{
    char line[64];
    /* Separate mappings, in the order they are checked. */
    unsigned char *shared_read = region(NTHREADS * 2 * MIB);
    unsigned char *forked = region(8 * MIB);
    unsigned char *moved = region(4 * MIB);
    unsigned char *discarded = region(2 * MIB);
    unsigned char *holed = region(2 * MIB);
    unsigned char *sparse = region(16 * MIB);
    unsigned char *target = region(8 * MIB); /* where `moved` goes */
    CHECK_SYS(munmap(target, 8 * MIB) == 0, "munmap target");

    fill(shared_read, NTHREADS * 2 * MIB);
    fill(forked, 8 * MIB);
    fill(moved, 4 * MIB);
    fill(discarded, 2 * MIB);
    fill(holed, 2 * MIB);
    for (size_t off = 0; off < 16 * MIB; off += 64 * 1024)
        fill(sparse + off, PG);
    uint64_t want_forked = sum(forked, 8 * MIB), want_moved = sum(moved, 4 * MIB);
    uint64_t want_kept = sum(discarded + MIB, MIB), want_hole_edges = sum(holed, 512 * 1024) ^ sum(holed + 1536 * 1024, 512 * 1024);
    uint64_t want_sparse = 0;
    for (size_t off = 0; off < 16 * MIB; off += 64 * 1024)
        want_sparse ^= sum(sparse + off, PG);
    struct part parts[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        parts[i].p = shared_read + i * 2 * MIB;
        parts[i].len = 2 * MIB;
        parts[i].want = sum(parts[i].p, parts[i].len);
    }

    zoo_ready();
    zoo_read_line(line, sizeof line);

    /* A child first, before the parent touches anything. */
    pid_t child = fork();
    CHECK_SYS(child >= 0, "fork");
    if (child == 0)
        _exit(sum(forked, 8 * MIB) == want_forked ? 0 : 3);

    unsigned char *m = mremap(moved, 4 * MIB, 4 * MIB, MREMAP_MAYMOVE | MREMAP_FIXED, target);
    CHECK_SYS(m == target, "mremap");

    CHECK_SYS(madvise(discarded, MIB, MADV_DONTNEED) == 0, "madvise");

    CHECK_SYS(munmap(holed + 512 * 1024, MIB) == 0, "munmap hole");
    unsigned char *fresh = mmap(holed + 512 * 1024, MIB, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK_SYS(fresh == holed + 512 * 1024, "mmap into the hole");

    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_create(&th[i], NULL, check_part, &parts[i]) == 0, "pthread_create");
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NTHREADS; i++)
        CHECK(parts[i].ok, "thread %d read wrong data", i);

    CHECK(sum(target, 4 * MIB) == want_moved, "moved region has wrong data");
    CHECK(all_zero(discarded, MIB), "discarded half does not read as zero");
    CHECK(sum(discarded + MIB, MIB) == want_kept, "kept half of the discarded region changed");
    CHECK(all_zero(fresh, MIB), "memory mapped into the hole does not read as zero");
    CHECK((sum(holed, 512 * 1024) ^ sum(holed + 1536 * 1024, 512 * 1024)) == want_hole_edges,
          "edges around the hole changed");
    uint64_t got_sparse = 0;
    for (size_t off = 0; off < 16 * MIB; off += 64 * 1024) {
        got_sparse ^= sum(sparse + off, PG);
        CHECK(all_zero(sparse + off + PG, 64 * 1024 - PG), "sparse region: zero page not zero");
    }
    CHECK(got_sparse == want_sparse, "sparse region has wrong data");

    int status;
    CHECK_SYS(waitpid(child, &status, 0) == child, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child read wrong data (status %d)", status);

    printf("regions %016llx %016llx %016llx\n", (unsigned long long)want_forked,
           (unsigned long long)want_moved, (unsigned long long)want_sparse);
    zoo_done();
}
