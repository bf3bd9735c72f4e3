/* tree_shm_file: a parent and its child share a file of /dev/shm that was
 * deleted while both hold it, as Python's multiprocessing heap (Value,
 * Array) does: the fd of it stays open (opened with O_NOFOLLOW, as
 * tempfile.mkstemp does) beside a shared mapping of it.  After the go, the
 * child counts in the mapping and writes through the inherited fd; the
 * parent sees both, and the fd's offset moved for it too.
 */
#include "zoo.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>

int main(void)
{
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/zoo-shm-file-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0600);
    CHECK_SYS(fd >= 0, "create the /dev/shm file");
    CHECK_SYS(ftruncate(fd, 4096) == 0, "ftruncate");
    volatile int *counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK_SYS(counter != MAP_FAILED, "mmap");
    CHECK_SYS(unlink(path) == 0, "unlink");
    counter[0] = 40;
    CHECK_SYS(lseek(fd, 100, SEEK_SET) == 100, "seek");
    int gate[2];
    CHECK_SYS(pipe(gate) == 0, "pipe");

    pid_t kid = fork();
    CHECK_SYS(kid >= 0, "fork");
    if (kid == 0) {
        close(gate[1]);
        char c;
        CHECK_SYS(read(gate[0], &c, 1) == 1, "child: read gate");
        counter[0] += 2;
        CHECK_SYS(write(fd, "child", 5) == 5, "child: write");
        _exit(0);
    }
    close(gate[0]);

    zoo_ready();
    char line[64];
    zoo_read_line(line, sizeof line);

    CHECK_SYS(write(gate[1], "g", 1) == 1, "open the gate");
    int st;
    CHECK_SYS(waitpid(kid, &st, 0) == kid, "waitpid");
    printf("child exited %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    printf("counter %d\n", counter[0]);
    char data[8] = {0};
    CHECK_SYS(pread(fd, data, 5, 100) == 5, "pread");
    printf("file at 100: %s, offset %lld\n", data, (long long)lseek(fd, 0, SEEK_CUR));
    printf("mapping at 100: %.5s\n", (const char *)counter + 100);
    zoo_done();
}
