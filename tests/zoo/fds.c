/* fds: regular files (offset, O_APPEND), directory fd, /dev/null,
 * /dev/urandom, dup'ed fds sharing one open file description, fd numbers,
 * FD_CLOEXEC and O_NONBLOCK flags survive checkpoint/restore. */
#include "zoo.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define HIGH_FD 100

static char dir[4096], data_path[4200], append_path[4200];

struct fdinfo {
    const char *name;
    int fd;
    int fl;    /* F_GETFL */
    int fdfl;  /* F_GETFD */
    char link[4200];
};

static void record(struct fdinfo *f, const char *name, int fd)
{
    char p[64];
    f->name = name;
    f->fd = fd;
    f->fl = fcntl(fd, F_GETFL);
    f->fdfl = fcntl(fd, F_GETFD);
    CHECK_SYS(f->fl >= 0 && f->fdfl >= 0, "fcntl");
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, f->link, sizeof f->link - 1);
    CHECK_SYS(n > 0, "readlink");
    f->link[n] = '\0';
}

static void verify(const struct fdinfo *f)
{
    struct fdinfo now;
    record(&now, f->name, f->fd);
    CHECK(now.fl == f->fl, "%s: file status flags changed (%#o -> %#o)", f->name, f->fl, now.fl);
    CHECK(now.fdfl == f->fdfl, "%s: fd flags changed", f->name);
    CHECK(strcmp(now.link, f->link) == 0, "%s: path changed ('%s' -> '%s')", f->name,
          f->link, now.link);
}

int main(void)
{
    char line[64], buf[256];
    struct fdinfo info[16];
    int ninfo = 0;

    zoo_mkdtemp(dir, sizeof dir, "fds");
    snprintf(data_path, sizeof data_path, "%s/data.txt", dir);
    snprintf(append_path, sizeof append_path, "%s/append.log", dir);

    /* data file: 4096 bytes of a known pattern */
    {
        char content[4096];
        for (int i = 0; i < 4096; i++)
            content[i] = 'a' + (i * 7 + i / 26) % 26;
        int w = open(data_path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        CHECK_SYS(w >= 0, "create data file");
        CHECK(write(w, content, sizeof content) == (ssize_t)sizeof content, "write data");
        close(w);
    }

    int rd = open(data_path, O_RDONLY);
    CHECK_SYS(rd >= 0, "open data file");
    CHECK(lseek(rd, 1000, SEEK_SET) == 1000, "lseek");
    record(&info[ninfo++], "read fd", rd);

    int ap = open(append_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    CHECK_SYS(ap >= 0, "open append file");
    CHECK(write(ap, "first line\n", 11) == 11, "write append");
    record(&info[ninfo++], "append fd", ap);

    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK_SYS(dfd >= 0, "open dir");
    struct stat dst;
    CHECK_SYS(fstat(dfd, &dst) == 0, "fstat dir");
    record(&info[ninfo++], "dir fd", dfd);

    int nul = open("/dev/null", O_RDWR);
    CHECK_SYS(nul >= 0, "open /dev/null");
    record(&info[ninfo++], "/dev/null fd", nul);

    int urnd = open("/dev/urandom", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    CHECK_SYS(urnd >= 0, "open /dev/urandom");
    record(&info[ninfo++], "/dev/urandom fd", urnd);

    /* dup'ed pair sharing one offset, plus a dup at a high fd number */
    int d1 = open(data_path, O_RDWR);
    CHECK_SYS(d1 >= 0, "open dup file");
    int d2 = dup(d1);
    CHECK_SYS(d2 >= 0, "dup");
    CHECK_SYS(dup2(d1, HIGH_FD) == HIGH_FD, "dup2");
    CHECK_SYS(fcntl(HIGH_FD, F_SETFD, FD_CLOEXEC) == 0, "F_SETFD");
    CHECK(lseek(d1, 123, SEEK_SET) == 123, "lseek dup");
    record(&info[ninfo++], "dup fd 1", d1);
    record(&info[ninfo++], "dup fd 2", d2);
    record(&info[ninfo++], "dup2 high fd", HIGH_FD);

    /* a hole in the fd table: open and close one fd */
    int hole = open("/dev/null", O_RDONLY);
    CHECK_SYS(hole >= 0, "open hole");
    close(hole);

    zoo_ready();
    zoo_read_line(line, sizeof line);

    for (int i = 0; i < ninfo; i++)
        verify(&info[i]);
    printf("fd numbers, paths and flags ok\n");
    CHECK(fcntl(hole, F_GETFD) == -1 && errno == EBADF, "closed fd %d reappeared", hole);
    printf("closed fd stays closed\n");
    CHECK(fcntl(ap, F_GETFD) == FD_CLOEXEC && fcntl(rd, F_GETFD) == 0, "FD_CLOEXEC");
    CHECK(fcntl(HIGH_FD, F_GETFD) == FD_CLOEXEC && fcntl(d1, F_GETFD) == 0, "FD_CLOEXEC dup");
    printf("cloexec ok\n");
    CHECK(fcntl(urnd, F_GETFL) & O_NONBLOCK, "O_NONBLOCK lost");
    CHECK(!(fcntl(rd, F_GETFL) & O_NONBLOCK), "O_NONBLOCK appeared");
    printf("nonblock ok\n");

    /* read fd: offset and content */
    CHECK(lseek(rd, 0, SEEK_CUR) == 1000, "read offset %ld", (long)lseek(rd, 0, SEEK_CUR));
    CHECK(read(rd, buf, 20) == 20, "read data");
    buf[20] = '\0';
    printf("read at 1000: %s\n", buf);
    CHECK(lseek(rd, 0, SEEK_CUR) == 1020, "offset after read");

    /* append fd */
    CHECK(fcntl(ap, F_GETFL) & O_APPEND, "O_APPEND lost");
    CHECK((fcntl(ap, F_GETFL) & O_ACCMODE) == O_WRONLY, "append access mode");
    CHECK(lseek(ap, 0, SEEK_SET) == 0, "lseek append");
    CHECK(write(ap, "second line\n", 12) == 12, "write append 2");
    {
        int r = open(append_path, O_RDONLY);
        CHECK_SYS(r >= 0, "reopen append file");
        ssize_t n = read(r, buf, sizeof buf - 1);
        CHECK(n >= 0, "read append file");
        buf[n] = '\0';
        close(r);
        CHECK(strcmp(buf, "first line\nsecond line\n") == 0, "append file content '%s'", buf);
    }
    printf("append ok\n");

    /* directory fd */
    {
        struct stat st;
        CHECK_SYS(fstat(dfd, &st) == 0, "fstat dir");
        CHECK(S_ISDIR(st.st_mode) && st.st_ino == dst.st_ino && st.st_dev == dst.st_dev,
              "dir fd refers to another inode");
        int f = openat(dfd, "data.txt", O_RDONLY);
        CHECK_SYS(f >= 0, "openat via dir fd");
        close(f);
    }
    printf("dir fd ok\n");

    /* devices */
    {
        struct stat st;
        CHECK_SYS(fstat(nul, &st) == 0, "fstat null");
        CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "/dev/null rdev");
        CHECK(write(nul, "x", 1) == 1 && read(nul, buf, 1) == 0, "/dev/null io");
        CHECK_SYS(fstat(urnd, &st) == 0, "fstat urandom");
        CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 9), "/dev/urandom rdev");
        CHECK(read(urnd, buf, 16) == 16, "/dev/urandom read");
    }
    printf("devices ok\n");

    /* shared offset between dups */
    CHECK(lseek(d2, 0, SEEK_CUR) == 123, "dup offset %ld", (long)lseek(d2, 0, SEEK_CUR));
    CHECK(lseek(HIGH_FD, 0, SEEK_CUR) == 123, "dup2 offset");
    CHECK(lseek(d1, 456, SEEK_SET) == 456, "lseek d1");
    CHECK(lseek(d2, 0, SEEK_CUR) == 456 && lseek(HIGH_FD, 0, SEEK_CUR) == 456,
          "dups no longer share the offset");
    CHECK((fcntl(d1, F_GETFL) & O_ACCMODE) == O_RDWR, "dup access mode");
    printf("dup shared offset ok\n");

    unlink(data_path);
    unlink(append_path);
    rmdir(dir);
    zoo_done();
}
