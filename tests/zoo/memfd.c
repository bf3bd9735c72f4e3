/* memfd: a memfd with content, size, F_SEAL_SHRINK seal and a shared mapping
 * survives checkpoint/restore (mapping and fd still refer to one object). */
#include "zoo.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define SIZE 12345
#define MAPLEN 16384

int main(void)
{
    char line[64];
    static unsigned char buf[SIZE];

    int fd = memfd_create("zoo-memfd", MFD_ALLOW_SEALING);
    CHECK_SYS(fd >= 0, "memfd_create");
    zoo_fill(buf, SIZE, 80);
    CHECK(write(fd, buf, SIZE) == SIZE, "write memfd");
    CHECK(lseek(fd, 1000, SEEK_SET) == 1000, "lseek memfd");
    unsigned char *map = mmap(NULL, MAPLEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK_SYS(map != MAP_FAILED, "mmap memfd");
    map[100] = 0xee; /* write through the mapping */
    CHECK_SYS(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "F_ADD_SEALS");

    /* a second memfd, not sealed, no mapping, empty */
    int fd2 = memfd_create("zoo-memfd-empty", MFD_CLOEXEC);
    CHECK_SYS(fd2 >= 0, "memfd_create 2");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    char link[256], p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, link, sizeof link - 1);
    CHECK(n > 0, "readlink memfd");
    link[n] = '\0';
    printf("memfd link: %s\n", link);
    CHECK(strcmp(link, "/memfd:zoo-memfd (deleted)") == 0, "memfd name");

    int seals = fcntl(fd, F_GET_SEALS);
    CHECK(seals == F_SEAL_SHRINK, "seals changed (%#x)", seals);
    printf("seals ok\n");
    struct stat st;
    CHECK_SYS(fstat(fd, &st) == 0, "fstat memfd");
    CHECK(st.st_size == SIZE, "memfd size %ld", (long)st.st_size);
    CHECK(lseek(fd, 0, SEEK_CUR) == 1000, "memfd offset");
    printf("size and offset ok\n");

    static unsigned char got[SIZE];
    CHECK(pread(fd, got, SIZE, 0) == SIZE, "pread memfd");
    buf[100] = 0xee;
    CHECK(memcmp(got, buf, SIZE) == 0, "memfd content");
    CHECK(memcmp(map, buf, SIZE) == 0, "memfd mapping content");
    for (int i = SIZE; i < MAPLEN; i++) /* tail of the last page reads as zero */
        CHECK(map[i] == 0, "memfd mapping tail not zero");
    printf("content ok\n");

    map[200] = 0x11;
    unsigned char c;
    CHECK(pread(fd, &c, 1, 200) == 1 && c == 0x11, "mapping write not visible via fd");
    c = 0x22;
    CHECK(pwrite(fd, &c, 1, 300) == 1 && map[300] == 0x22, "fd write not visible in mapping");
    printf("mapping shared with fd\n");

    CHECK(ftruncate(fd, 100) < 0 && errno == EPERM, "shrink allowed despite F_SEAL_SHRINK");
    CHECK_SYS(ftruncate(fd, 16384) == 0, "grow");
    printf("seal enforced\n");

    CHECK(fcntl(fd2, F_GET_SEALS) == F_SEAL_SEAL, "memfd without sealing: seals");
    CHECK(fcntl(fd2, F_GETFD) == FD_CLOEXEC && fcntl(fd, F_GETFD) == 0, "FD_CLOEXEC");
    CHECK_SYS(fstat(fd2, &st) == 0 && st.st_size == 0, "empty memfd size");
    printf("second memfd ok\n");
    zoo_done();
}
