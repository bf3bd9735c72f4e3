/* mmaps: every kind of memory mapping survives checkpoint/restore, at the
 * same address with the same protections (the whole /proc/self/maps is
 * compared, except inode numbers of shmem-backed mappings). */
#include "zoo.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PG 4096UL
#define SPARSE_SIZE (1UL << 30)

static char maps_before[128 * 1024], maps_after[128 * 1024];
static char dir[4096], priv_path[4200], shared_path[4200];

static void read_maps(char *buf, size_t size)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    CHECK_SYS(fd >= 0, "open /proc/self/maps");
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        CHECK_SYS(r >= 0, "read maps");
        if (r == 0)
            break;
        n += r;
        CHECK(n < size - 1, "maps too large");
    }
    buf[n] = '\0';
    close(fd);
}

/* Copy one maps line into out, with the inode replaced by 0 for mappings of
 * shmem objects (memfd, shared anonymous, SysV) which are recreated. */
static void normalize(const char *line, size_t len, char *out, size_t outsz)
{
    char tmp[1024];
    if (len >= sizeof tmp)
        len = sizeof tmp - 1;
    memcpy(tmp, line, len);
    tmp[len] = '\0';
    char range[64], perms[8], off[32], dev[32];
    unsigned long inode;
    int pos = 0;
    if (sscanf(tmp, "%63s %7s %31s %31s %lu %n", range, perms, off, dev, &inode, &pos) < 5) {
        snprintf(out, outsz, "%s", tmp);
        return;
    }
    const char *path = tmp + pos;
    if (strncmp(path, "/memfd:", 7) == 0 || strncmp(path, "/dev/zero", 9) == 0 ||
        strncmp(path, "/SYSV", 5) == 0)
        inode = 0;
    snprintf(out, outsz, "%s %s %s %s %lu %s", range, perms, off, dev, inode, path);
}

static void compare_maps(void)
{
    const char *a = maps_before, *b = maps_after;
    int lineno = 0;
    while (*a || *b) {
        const char *ae = strchrnul(a, '\n'), *be = strchrnul(b, '\n');
        char na[1100], nb[1100];
        lineno++;
        CHECK(*a, "maps: extra mapping after restore: %.*s", (int)(be - b), b);
        CHECK(*b, "maps: mapping missing after restore: %.*s", (int)(ae - a), a);
        normalize(a, ae - a, na, sizeof na);
        normalize(b, be - b, nb, sizeof nb);
        CHECK(strcmp(na, nb) == 0, "maps line %d differs: before '%s' after '%s'",
              lineno, na, nb);
        a = *ae ? ae + 1 : ae;
        b = *be ? be + 1 : be;
    }
    printf("maps identical\n");
}

static void *map(size_t len, int prot, int flags, int fd)
{
    void *p = mmap(NULL, len, prot, flags, fd, 0);
    CHECK_SYS(p != MAP_FAILED, "mmap");
    return p;
}

static int is_zero(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return 0;
    return 1;
}

static void make_file(char *path, size_t pathsz, const char *name, size_t len, uint64_t seed)
{
    snprintf(path, pathsz, "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    CHECK_SYS(fd >= 0, "create temp file");
    if (seed) {
        static unsigned char buf[64 * 1024];
        CHECK(len <= sizeof buf, "file too big");
        zoo_fill(buf, len, seed);
        CHECK(write(fd, buf, len) == (ssize_t)len, "write temp file");
    } else {
        CHECK_SYS(ftruncate(fd, len) == 0, "ftruncate");
    }
    close(fd);
}

int main(void)
{
    char line[64];

    /* no heap allocation may happen between the two /proc/self/maps reads */
    static char stdout_buf[BUFSIZ];
    setvbuf(stdout, stdout_buf, _IOFBF, sizeof stdout_buf);
    zoo_mkdtemp(dir, sizeof dir, "mmaps");

    /* 1. private anonymous, touched and untouched */
    unsigned char *anon = map(16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    zoo_fill(anon, 16 * PG, 10);
    unsigned char *untouched = map(16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);

    /* 2. read-only private anonymous with data */
    unsigned char *ro = map(2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    zoo_fill(ro, 2 * PG, 12);
    CHECK_SYS(mprotect(ro, 2 * PG, PROT_READ) == 0, "mprotect ro");

    /* 3. PROT_NONE reservation with pages made RW, written, then PROT_NONE again */
    unsigned char *resv = map(64 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
    CHECK_SYS(mprotect(resv + 10 * PG, 3 * PG, PROT_READ | PROT_WRITE) == 0, "mprotect rw");
    zoo_fill(resv + 10 * PG, 3 * PG, 11);
    CHECK_SYS(mprotect(resv + 10 * PG, 3 * PG, PROT_NONE) == 0, "mprotect none");
    /* and a part that stays RW inside the reservation */
    CHECK_SYS(mprotect(resv + 40 * PG, 2 * PG, PROT_READ | PROT_WRITE) == 0, "mprotect rw2");
    zoo_fill(resv + 40 * PG, 2 * PG, 13);

    /* 4. MAP_GROWSDOWN */
    unsigned char *gd = map(16 * PG, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1);
    zoo_fill(gd + 12 * PG, 4 * PG, 14);

    /* 5. private file mapping with dirtied pages */
    make_file(priv_path, sizeof priv_path, "private.dat", 8 * PG, 20);
    int fd = open(priv_path, O_RDWR | O_CLOEXEC);
    CHECK_SYS(fd >= 0, "open private file");
    unsigned char *pfile = map(8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd);
    close(fd);
    zoo_fill(pfile + 2 * PG, PG, 21);
    zoo_fill(pfile + 5 * PG + 100, 200, 22);

    /* 6. shared file mapping, written through the mapping */
    make_file(shared_path, sizeof shared_path, "shared.dat", 4 * PG, 0);
    fd = open(shared_path, O_RDWR | O_CLOEXEC);
    CHECK_SYS(fd >= 0, "open shared file");
    unsigned char *sfile = map(4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
    close(fd);
    zoo_fill(sfile, 4 * PG, 30);

    /* 7. MAP_SHARED | MAP_ANONYMOUS */
    unsigned char *shanon = map(4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
    zoo_fill(shanon, 4 * PG, 40);

    /* 8. memfd mapped shared twice (RW and RO view) */
    int mfd = memfd_create("zoo-mmaps", MFD_CLOEXEC);
    CHECK_SYS(mfd >= 0, "memfd_create");
    CHECK_SYS(ftruncate(mfd, 4 * PG) == 0, "ftruncate memfd");
    unsigned char *mA = map(4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd);
    unsigned char *mB = map(4 * PG, PROT_READ, MAP_SHARED, mfd);
    zoo_fill(mA, 4 * PG, 50);

    /* 9. big sparse region with a few pages */
    unsigned char *sparse = map(SPARSE_SIZE, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1);
    for (int k = 0; k < 5; k++)
        zoo_fill(sparse + k * (200UL << 20) + 3 * PG, PG, 60 + k);

    read_maps(maps_before, sizeof maps_before);
    zoo_ready();
    zoo_read_line(line, sizeof line);
    read_maps(maps_after, sizeof maps_after);
    compare_maps();

    /* residency of the sparse region must stay small (check before reading
     * untouched pages, which would map the zero page) */
    static unsigned char vec[SPARSE_SIZE / PG];
    CHECK_SYS(mincore(sparse, SPARSE_SIZE, vec) == 0, "mincore");
    size_t resident = 0;
    for (size_t i = 0; i < sizeof vec; i++)
        resident += vec[i] & 1;
    CHECK(resident < (SPARSE_SIZE / PG) / 16, "sparse region got populated (%zu pages)", resident);

    CHECK(zoo_check_fill(anon, 16 * PG, 10), "private anon content");
    printf("private anon ok\n");
    CHECK(is_zero(untouched, 16 * PG), "untouched anon not zero");
    printf("untouched anon ok\n");
    CHECK(zoo_check_fill(ro, 2 * PG, 12), "read-only anon content");
    printf("read-only anon ok\n");

    CHECK_SYS(mprotect(resv + 10 * PG, 3 * PG, PROT_READ) == 0, "mprotect read");
    CHECK(zoo_check_fill(resv + 10 * PG, 3 * PG, 11), "PROT_NONE pages content");
    CHECK_SYS(mprotect(resv + 10 * PG, 3 * PG, PROT_NONE) == 0, "mprotect none");
    CHECK(zoo_check_fill(resv + 40 * PG, 2 * PG, 13), "reservation rw pages content");
    printf("prot_none reservation ok\n");

    CHECK(zoo_check_fill(gd + 12 * PG, 4 * PG, 14), "growsdown content");
    CHECK(is_zero(gd, 12 * PG), "growsdown untouched part not zero");
    printf("growsdown ok\n");

    {
        static unsigned char want[8 * PG], disk[8 * PG];
        zoo_fill(want, 8 * PG, 20);
        fd = open(priv_path, O_RDONLY | O_CLOEXEC);
        CHECK_SYS(fd >= 0, "reopen private file");
        CHECK(pread(fd, disk, sizeof disk, 0) == (ssize_t)sizeof disk, "pread private file");
        close(fd);
        CHECK(memcmp(disk, want, sizeof want) == 0, "private file changed on disk");
        printf("private file on disk unchanged\n");
        zoo_fill(want + 2 * PG, PG, 21);
        zoo_fill(want + 5 * PG + 100, 200, 22);
        CHECK(memcmp(pfile, want, sizeof want) == 0, "private file mapping content");
        printf("private file mapping ok\n");
    }

    {
        static unsigned char disk[4 * PG];
        CHECK(zoo_check_fill(sfile, 4 * PG, 30), "shared file mapping content");
        fd = open(shared_path, O_RDWR | O_CLOEXEC);
        CHECK_SYS(fd >= 0, "reopen shared file");
        CHECK(pread(fd, disk, sizeof disk, 0) == (ssize_t)sizeof disk, "pread shared file");
        CHECK(zoo_check_fill(disk, 4 * PG, 30), "shared file content on disk");
        sfile[100] ^= 0xff;
        CHECK(pread(fd, disk, 1, 100) == 1 && disk[0] == sfile[100],
              "write through shared mapping not visible in file");
        unsigned char c = 0xa5;
        CHECK(pwrite(fd, &c, 1, 200) == 1, "pwrite shared file");
        CHECK(sfile[200] == 0xa5, "file write not visible in shared mapping");
        close(fd);
        printf("shared file mapping ok\n");
    }

    CHECK(zoo_check_fill(shanon, 4 * PG, 40), "shared anon content");
    CHECK(zoo_check_fill(mA, 4 * PG, 50), "memfd mapping content");
    CHECK(memcmp(mA, mB, 4 * PG) == 0, "memfd second mapping content");
    mA[5000] ^= 0x5a;
    CHECK(mB[5000] == mA[5000], "memfd mappings not shared");
    {
        unsigned char c = 0x3c, d = 0;
        CHECK(pwrite(mfd, &c, 1, 7000) == 1, "pwrite memfd");
        CHECK(mA[7000] == 0x3c && mB[7000] == 0x3c, "memfd write not visible in mapping");
        mA[9000] = 0x77;
        CHECK(pread(mfd, &d, 1, 9000) == 1 && d == 0x77, "memfd mapping write not in file");
    }
    printf("memfd mappings ok\n");

    /* sharing semantics across fork: shared mappings shared, private ones not */
    fflush(stdout);
    pid_t child = fork();
    CHECK_SYS(child >= 0, "fork");
    if (child == 0) {
        shanon[0] = 0x42;
        anon[0] ^= 0xff;
        _exit(0);
    }
    int st;
    CHECK_SYS(waitpid(child, &st, 0) == child, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed");
    CHECK(shanon[0] == 0x42, "MAP_SHARED|MAP_ANONYMOUS not shared with child");
    CHECK(zoo_check_fill(anon, 16 * PG, 10), "private anon modified by child");
    printf("shared anon ok\n");

    for (int k = 0; k < 5; k++) {
        unsigned char *p = sparse + k * (200UL << 20);
        CHECK(zoo_check_fill(p + 3 * PG, PG, 60 + k), "sparse page %d", k);
        CHECK(is_zero(p, 3 * PG), "sparse zero page %d", k);
    }
    CHECK(is_zero(sparse + SPARSE_SIZE - PG, PG), "sparse last page");
    printf("sparse ok\n");

    unlink(priv_path);
    unlink(shared_path);
    rmdir(dir);
    zoo_done();
}
