/* unix: socketpair(SOCK_STREAM) and socketpair(SOCK_DGRAM) with queued unread
 * data in both directions survive checkpoint/restore (datagram boundaries
 * included). */
#include "zoo.h"
#include <fcntl.h>
#include <sys/socket.h>

static void recv_exact(int fd, char *buf, size_t len, const char *what)
{
    size_t n = 0;
    while (n < len) {
        ssize_t r = recv(fd, buf + n, len - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        CHECK_SYS(r > 0, what);
        n += r;
    }
    buf[len] = '\0';
}

static void expect_empty(int fd, const char *what)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    CHECK(r < 0 && errno == EAGAIN, "%s: unexpected extra data", what);
}

static int sotype(int fd)
{
    int t = -1;
    socklen_t l = sizeof t;
    CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l) == 0, "SO_TYPE");
    return t;
}

static void recv_dgram(int fd, const char *want, const char *what)
{
    char buf[256];
    ssize_t r = recv(fd, buf, sizeof buf - 1, 0);
    CHECK_SYS(r >= 0, what);
    buf[r] = '\0';
    CHECK(strcmp(buf, want) == 0, "%s: got '%s' want '%s'", what, buf, want);
    printf("%s: %s\n", what, buf);
}

int main(void)
{
    char line[64], buf[256];
    int s[2], d[2];

    CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0, "socketpair stream");
    CHECK_SYS(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, d) == 0, "socketpair dgram");

    CHECK(send(s[0], "stream a->b part1 ", 18, 0) == 18, "send");
    CHECK(send(s[0], "part2", 5, 0) == 5, "send");
    CHECK(send(s[1], "stream b->a", 11, 0) == 11, "send");
    CHECK(send(d[0], "dgram a->b #1", 13, 0) == 13, "send");
    CHECK(send(d[0], "dgram a->b #2 longer", 20, 0) == 20, "send");
    CHECK(send(d[1], "dgram b->a", 10, 0) == 10, "send");
    CHECK(send(d[1], "", 0, 0) == 0, "send empty dgram");
    CHECK_SYS(shutdown(s[1], SHUT_WR) == 0, "shutdown"); /* a will see EOF */

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK(sotype(s[0]) == SOCK_STREAM && sotype(s[1]) == SOCK_STREAM, "stream SO_TYPE");
    CHECK(sotype(d[0]) == SOCK_DGRAM && sotype(d[1]) == SOCK_DGRAM, "dgram SO_TYPE");
    CHECK(fcntl(d[0], F_GETFD) == FD_CLOEXEC && fcntl(s[0], F_GETFD) == 0, "FD_CLOEXEC");

    recv_exact(s[1], buf, 23, "stream recv b");
    printf("stream b got: %s\n", buf);
    expect_empty(s[1], "stream b");
    recv_exact(s[0], buf, 11, "stream recv a");
    printf("stream a got: %s\n", buf);
    /* b shut down its write side before the checkpoint: a sees EOF */
    CHECK(recv(s[0], buf, 1, MSG_DONTWAIT) == 0, "stream a: no EOF after peer SHUT_WR");
    printf("stream shutdown state ok\n");
    CHECK(send(s[0], "more", 4, 0) == 4, "stream send after restore");
    recv_exact(s[1], buf, 4, "stream recv more");
    CHECK(strcmp(buf, "more") == 0, "stream more");
    printf("stream ok\n");

    recv_dgram(d[1], "dgram a->b #1", "dgram b got");
    recv_dgram(d[1], "dgram a->b #2 longer", "dgram b got");
    expect_empty(d[1], "dgram b");
    recv_dgram(d[0], "dgram b->a", "dgram a got");
    recv_dgram(d[0], "", "dgram a got (empty)");
    expect_empty(d[0], "dgram a");
    CHECK(send(d[1], "again", 5, 0) == 5, "dgram send after restore");
    recv_dgram(d[0], "again", "dgram a got");
    printf("dgram ok\n");

    close(s[0]);
    CHECK(recv(s[1], buf, 1, 0) == 0, "stream b: no EOF after peer close");
    printf("stream peer close ok\n");
    zoo_done();
}
