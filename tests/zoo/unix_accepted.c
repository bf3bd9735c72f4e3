/* unix_accepted: connections a unix listener bound to a path accepted, both
 * ends held by the program, as Python's multiprocessing.Manager and local
 * servers with their clients hold them. In the parent: a stream connection
 * with data queued both ways, a seqpacket one with messages queued, one
 * whose client bound a path of its own, one whose client has closed after
 * sending. Across processes: a child serves a connection whose client end
 * the parent holds, blocked reading it during the checkpoint.
 * After restore every end has its names again (getsockname/getpeername),
 * the queued data arrives, the ends talk, and the listeners still accept.
 */
#include "zoo.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static int listen_at(int type, const char *path)
{
    struct sockaddr_un a;
    socklen_t l = zoo_unix_addr(&a, path);
    int s = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    CHECK_SYS(s >= 0, "socket");
    CHECK_SYS(bind(s, (struct sockaddr *)&a, l) == 0, "bind listener");
    CHECK_SYS(listen(s, 4) == 0, "listen");
    return s;
}

/* A client connected to `path` (bound to `own` first, if given) and the
 * connection the listener accepted for it. */
static void connect_pair(int listener, int type, const char *path, const char *own, int *client, int *accepted)
{
    struct sockaddr_un a, o;
    socklen_t l = zoo_unix_addr(&a, path);
    *client = socket(AF_UNIX, type, 0);
    CHECK_SYS(*client >= 0, "socket client");
    if (own) {
        socklen_t ol = zoo_unix_addr(&o, own);
        CHECK_SYS(bind(*client, (struct sockaddr *)&o, ol) == 0, "bind client");
    }
    CHECK_SYS(connect(*client, (struct sockaddr *)&a, l) == 0, "connect");
    *accepted = accept(listener, NULL, NULL);
    CHECK_SYS(*accepted >= 0, "accept");
}

/* The path a socket's name (or its peer's) is, "" when unnamed. */
static void name_of(int fd, int peer, char *out, size_t size)
{
    struct sockaddr_un a;
    socklen_t l = sizeof a;
    memset(&a, 0, sizeof a);
    CHECK_SYS((peer ? getpeername(fd, (struct sockaddr *)&a, &l) : getsockname(fd, (struct sockaddr *)&a, &l)) == 0,
              peer ? "getpeername" : "getsockname");
    size_t n = l > offsetof(struct sockaddr_un, sun_path) ? l - offsetof(struct sockaddr_un, sun_path) : 0;
    CHECK(n < size, "name too long");
    memcpy(out, a.sun_path, n);
    out[n] = '\0';
}

static void expect_names(int fd, const char *own, const char *peer, const char *what)
{
    char got[128];
    name_of(fd, 0, got, sizeof got);
    CHECK(strcmp(got, own) == 0, "%s: its name is '%s', not '%s'", what, got, own);
    name_of(fd, 1, got, sizeof got);
    CHECK(strcmp(got, peer) == 0, "%s: its peer's name is '%s', not '%s'", what, got, peer);
}

static void expect_recv(int fd, const char *want, const char *what)
{
    char buf[128];
    size_t len = strlen(want), n = 0;
    while (n < len) {
        ssize_t r = recv(fd, buf + n, len - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        CHECK_SYS(r > 0, what);
        n += (size_t)r;
    }
    CHECK(memcmp(buf, want, len) == 0, "%s: got '%.*s', not '%s'", what, (int)len, buf, want);
}

int main(void)
{
    char dir[256], spath[300], qpath[300], cpath[300], line[64], buf[128];
    zoo_mkdtemp(dir, sizeof dir, "acc"); /* short: sun_path holds 108 bytes */
    snprintf(spath, sizeof spath, "%s/s", dir);
    snprintf(qpath, sizeof qpath, "%s/q", dir);
    snprintf(cpath, sizeof cpath, "%s/c", dir);
    int ls = listen_at(SOCK_STREAM, spath), lq = listen_at(SOCK_SEQPACKET, qpath);

    int c1, a1, c2, a2, c3, a3, c4, a4, c5, a5;
    connect_pair(ls, SOCK_STREAM, spath, NULL, &c1, &a1);
    CHECK(send(c1, "request one", 11, 0) == 11 && send(a1, "answer one", 10, 0) == 10, "send 1");
    connect_pair(lq, SOCK_SEQPACKET, qpath, NULL, &c2, &a2);
    CHECK(send(c2, "msg a", 5, 0) == 5 && send(c2, "msg bb", 6, 0) == 6, "send 2");
    connect_pair(ls, SOCK_STREAM, spath, cpath, &c3, &a3);
    connect_pair(ls, SOCK_STREAM, spath, NULL, &c4, &a4);
    CHECK(send(c4, "last words", 10, 0) == 10, "send 4");
    close(c4);
    connect_pair(ls, SOCK_STREAM, spath, NULL, &c5, &a5);
    pid_t kid = fork();
    CHECK_SYS(kid >= 0, "fork");
    if (kid == 0) { /* the server of one connection */
        close(c5);
        ssize_t n = recv(a5, buf, sizeof buf, 0);
        CHECK_SYS(n > 0, "child: recv");
        expect_names(a5, spath, "", "child's accepted end");
        char reply[160];
        int rl = snprintf(reply, sizeof reply, "child got %.*s", (int)n, buf);
        CHECK(send(a5, reply, rl, 0) == rl, "child: send");
        _exit(0);
    }
    close(a5);

    zoo_ready();
    zoo_read_line(line, sizeof line);

    expect_names(a1, spath, "", "accepted stream end");
    expect_names(c1, "", spath, "stream client");
    expect_names(a2, qpath, "", "accepted seqpacket end");
    expect_names(c2, "", qpath, "seqpacket client");
    expect_names(a3, spath, cpath, "end accepted from a bound client");
    expect_names(c3, cpath, spath, "bound client");
    expect_names(a4, spath, "", "end whose client closed");
    expect_names(c5, "", spath, "the child's client");
    printf("names ok\n");

    expect_recv(a1, "request one", "stream: the queued request");
    expect_recv(c1, "answer one", "stream: the queued answer");
    CHECK(send(c1, "more", 4, 0) == 4, "stream: send after restore");
    expect_recv(a1, "more", "stream: more");
    CHECK(recv(a2, buf, sizeof buf, 0) == 5 && memcmp(buf, "msg a", 5) == 0, "seqpacket: first message");
    CHECK(recv(a2, buf, sizeof buf, 0) == 6 && memcmp(buf, "msg bb", 6) == 0, "seqpacket: second message");
    CHECK(send(a3, "to the bound client", 19, 0) == 19, "bound: send");
    expect_recv(c3, "to the bound client", "bound client: recv");
    expect_recv(a4, "last words", "closed client: its last words");
    CHECK(recv(a4, buf, 1, 0) == 0, "closed client: EOF after its words");
    printf("queues ok\n");

    CHECK(send(c5, "hello", 5, 0) == 5, "send to the child");
    expect_recv(c5, "child got hello", "the child's answer");
    int status;
    CHECK_SYS(waitpid(kid, &status, 0) == kid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    printf("child answered\n");

    int c6, a6;
    connect_pair(ls, SOCK_STREAM, spath, NULL, &c6, &a6);
    expect_names(a6, spath, "", "a new connection");
    printf("listener accepts ok\n");
    CHECK_SYS(unlink(spath) == 0 && unlink(qpath) == 0 && unlink(cpath) == 0 && rmdir(dir) == 0,
              "remove the files");
    zoo_done();
}
