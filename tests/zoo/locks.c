/* locks: file locks of every kind the kernel keeps for a process.
 *   flock: an exclusive one on file "f" (fd ff).
 *   OFD:   a write lock on bytes 0-99 and a read lock from 200 to EOF of
 *          file "o", taken through fd fo.
 *   POSIX: a read lock on bytes 10-19 and a write lock from 100 to EOF of
 *          file "p", through fd fp (dup'd to fp2); the file is also mapped
 *          shared and open a second time (fp_other), so that a restore that
 *          opened and closed it after taking the locks would drop them.
 * After the go, a child process (which holds none of them) probes each:
 * every conflicting request must be refused, every compatible one allowed,
 * and the lock owner it sees is the program. */
#include "zoo.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/wait.h>

static int open_file(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    CHECK_SYS(fd >= 0, "open");
    CHECK_SYS(ftruncate(fd, 4096) == 0, "ftruncate");
    return fd;
}

static void set_lock(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    CHECK_SYS(fcntl(fd, cmd, &fl) == 0, "set a lock");
}

/* "held by parent", "held by another", or "free" for a request. */
static const char *probe(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    CHECK_SYS(fcntl(fd, cmd, &fl) == 0, "probe a lock");
    if (fl.l_type == F_UNLCK)
        return "free";
    /* An OFD lock has no owning process: F_OFD_GETLK reports -1. */
    if (fl.l_pid == getppid() || fl.l_pid == -1)
        return "held";
    return "held by another";
}

int main(void)
{
    char line[64], dir[4096];
    zoo_mkdtemp(dir, sizeof dir, "locks");
    int ff = open_file(dir, "f");
    int fo = open_file(dir, "o");
    int fp = open_file(dir, "p");
    int fp2 = dup(fp);
    int fp_other = open_file(dir, "p");
    CHECK_SYS(fp2 >= 0, "dup");
    CHECK_SYS(flock(ff, LOCK_EX | LOCK_NB) == 0, "flock");
    set_lock(fo, F_OFD_SETLK, F_WRLCK, 0, 100);
    set_lock(fo, F_OFD_SETLK, F_RDLCK, 200, 0);
    set_lock(fp, F_SETLK, F_RDLCK, 10, 10);
    set_lock(fp, F_SETLK, F_WRLCK, 100, 0);
    char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fp_other, 0);
    CHECK_SYS(map != MAP_FAILED, "mmap");
    map[0] = 'p';

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK(map[0] == 'p', "the shared mapping lost its byte");
    fflush(stdout);
    pid_t kid = fork();
    CHECK_SYS(kid >= 0, "fork");
    if (kid == 0) {
        int f = open_file(dir, "f"), o = open_file(dir, "o"), p = open_file(dir, "p");
        printf("flock exclusive: %s\n", flock(f, LOCK_EX | LOCK_NB) == 0 ? "free" : "held");
        printf("flock shared: %s\n", flock(f, LOCK_SH | LOCK_NB) == 0 ? "free" : "held");
        printf("ofd read 0-99: %s\n", probe(o, F_OFD_GETLK, F_RDLCK, 0, 100));
        printf("ofd write 100-199: %s\n", probe(o, F_OFD_GETLK, F_WRLCK, 100, 100));
        printf("ofd read 300: %s\n", probe(o, F_OFD_GETLK, F_RDLCK, 300, 1));
        printf("ofd write 5000: %s\n", probe(o, F_OFD_GETLK, F_WRLCK, 5000, 1));
        printf("posix read 10-19: %s\n", probe(p, F_GETLK, F_RDLCK, 10, 10));
        printf("posix write 15: %s\n", probe(p, F_GETLK, F_WRLCK, 15, 1));
        printf("posix write 20-99: %s\n", probe(p, F_GETLK, F_WRLCK, 20, 80));
        printf("posix read 1000000: %s\n", probe(p, F_GETLK, F_RDLCK, 1000000, 1));
        fflush(stdout);
        _exit(0);
    }
    int st;
    CHECK_SYS(waitpid(kid, &st, 0) == kid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the probing child failed");
    /* The program's own locks are still its to change. */
    set_lock(fp2, F_SETLK, F_UNLCK, 0, 0);
    set_lock(fo, F_OFD_SETLK, F_UNLCK, 0, 0);
    CHECK_SYS(flock(ff, LOCK_UN) == 0, "unlock flock");
    close(fp_other);
    munmap(map, 4096);
    char path[4200];
    const char *names[] = {"f", "o", "p"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    zoo_done();
}
