/* pipes: pipes with unread data (small and large, custom pipe size), a FIFO
 * with unread data, and an empty O_NONBLOCK pipe survive checkpoint/restore,
 * each end with exactly its status flags (a pipe has no O_LARGEFILE, which
 * an open() of the FIFO has). */
#include "zoo.h"
#include <fcntl.h>
#include <sys/stat.h>

#define BIG_LEN (100 * 1024)
#define BIG_PIPE_SZ (256 * 1024)

static char dir[4096], fifo_path[4200];
static unsigned char big[BIG_LEN], got[BIG_LEN];

static void read_exact(int fd, void *buf, size_t len, const char *what)
{
    size_t n = 0;
    while (n < len) {
        ssize_t r = read(fd, (char *)buf + n, len - n);
        if (r < 0 && errno == EINTR)
            continue;
        CHECK_SYS(r > 0, what);
        n += r;
    }
}

static void expect_empty(int fd, const char *what)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    char c;
    ssize_t r = read(fd, &c, 1);
    CHECK(r < 0 && errno == EAGAIN, "%s: unexpected extra data", what);
    fcntl(fd, F_SETFL, fl);
}

static void roundtrip(int rfd, int wfd, const char *what)
{
    char buf[16];
    CHECK(write(wfd, "ping", 4) == 4, "%s: write after restore", what);
    read_exact(rfd, buf, 4, what);
    CHECK(memcmp(buf, "ping", 4) == 0, "%s: roundtrip data", what);
}

int main(void)
{
    char line[64], buf[64];
    int p[2], bp[2], np[2];

    /* small unread data */
    CHECK_SYS(pipe(p) == 0, "pipe");
    CHECK(write(p[1], "hello pipe", 10) == 10, "write pipe");

    /* large unread data in an enlarged pipe */
    CHECK_SYS(pipe(bp) == 0, "pipe");
    CHECK_SYS(fcntl(bp[1], F_SETPIPE_SZ, BIG_PIPE_SZ) >= BIG_PIPE_SZ, "F_SETPIPE_SZ");
    zoo_fill(big, BIG_LEN, 70);
    CHECK(write(bp[1], big, BIG_LEN) == BIG_LEN, "write big pipe");

    /* FIFO with unread data */
    zoo_mkdtemp(dir, sizeof dir, "pipes");
    snprintf(fifo_path, sizeof fifo_path, "%s/fifo", dir);
    CHECK_SYS(mkfifo(fifo_path, 0600) == 0, "mkfifo");
    int fr = open(fifo_path, O_RDONLY | O_NONBLOCK);
    CHECK_SYS(fr >= 0, "open fifo read");
    int fw = open(fifo_path, O_WRONLY);
    CHECK_SYS(fw >= 0, "open fifo write");
    CHECK_SYS(fcntl(fr, F_SETFL, 0) == 0, "clear nonblock");
    CHECK(write(fw, "hello fifo", 10) == 10, "write fifo");

    /* empty O_NONBLOCK pipe */
    CHECK_SYS(pipe2(np, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");

    int ends[8] = {p[0], p[1], bp[0], bp[1], np[0], np[1], fr, fw}, flags[8];
    for (int i = 0; i < 8; i++)
        flags[i] = fcntl(ends[i], F_GETFL);

    zoo_ready();
    zoo_read_line(line, sizeof line);

    for (int i = 0; i < 8; i++)
        CHECK(fcntl(ends[i], F_GETFL) == flags[i], "fd %d: status flags %#o, were %#o", ends[i],
              fcntl(ends[i], F_GETFL), flags[i]);

    read_exact(p[0], buf, 10, "read pipe");
    buf[10] = '\0';
    printf("pipe data: %s\n", buf);
    expect_empty(p[0], "pipe");
    roundtrip(p[0], p[1], "pipe");
    printf("pipe ok\n");

    CHECK(fcntl(bp[1], F_GETPIPE_SZ) == BIG_PIPE_SZ, "pipe size changed (%d)",
          fcntl(bp[1], F_GETPIPE_SZ));
    read_exact(bp[0], got, BIG_LEN, "read big pipe");
    CHECK(memcmp(got, big, BIG_LEN) == 0, "big pipe data corrupted");
    expect_empty(bp[0], "big pipe");
    printf("big pipe ok (%d bytes)\n", BIG_LEN);

    struct stat st;
    CHECK_SYS(fstat(fr, &st) == 0 && S_ISFIFO(st.st_mode), "fifo fstat");
    {
        char link[4300], p2[64];
        snprintf(p2, sizeof p2, "/proc/self/fd/%d", fr);
        ssize_t n = readlink(p2, link, sizeof link - 1);
        CHECK(n > 0, "readlink fifo");
        link[n] = '\0';
        CHECK(strcmp(link, fifo_path) == 0, "fifo fd path changed");
    }
    CHECK((fcntl(fr, F_GETFL) & O_ACCMODE) == O_RDONLY &&
          (fcntl(fw, F_GETFL) & O_ACCMODE) == O_WRONLY, "fifo access modes");
    read_exact(fr, buf, 10, "read fifo");
    buf[10] = '\0';
    printf("fifo data: %s\n", buf);
    expect_empty(fr, "fifo");
    roundtrip(fr, fw, "fifo");
    printf("fifo ok\n");

    CHECK((fcntl(np[0], F_GETFL) & O_NONBLOCK) && (fcntl(np[1], F_GETFL) & O_NONBLOCK),
          "O_NONBLOCK lost");
    CHECK(fcntl(np[0], F_GETFD) == FD_CLOEXEC, "FD_CLOEXEC lost");
    CHECK(read(np[0], buf, 1) < 0 && errno == EAGAIN, "nonblocking pipe read");
    roundtrip(np[0], np[1], "nonblock pipe");
    printf("nonblock pipe ok\n");

    /* ends are really connected: closing the write end gives EOF */
    close(p[1]);
    CHECK(read(p[0], buf, 1) == 0, "no EOF after closing write end");
    printf("pipe EOF ok\n");

    unlink(fifo_path);
    rmdir(dir);
    zoo_done();
}
