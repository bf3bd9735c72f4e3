/* unix_path: unix sockets bound to filesystem paths, as servers, Python's
 * multiprocessing (pymp-* / listener-*) and zmq ipc:// endpoints make them:
 * a listening stream socket and a bound datagram socket in a directory of
 * their own (mkdtemp, 0700), their files given modes of their own.
 * After restore both have their names and their files again (mode, a
 * directory made anew if it was removed), the listener still listens and
 * accepts, a datagram sent to the path arrives.
 * With "serve" as the go line, the listener then answers one client from
 * outside: it reads a line and writes back "pong <line>".
 * At the end it removes its files and directory, as a server that shuts
 * down does. */
#include "zoo.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static void expect_name(int fd, const struct sockaddr_un *want, socklen_t want_len, const char *what)
{
    struct sockaddr_un got;
    socklen_t l = sizeof got;
    CHECK_SYS(getsockname(fd, (struct sockaddr *)&got, &l) == 0, "getsockname");
    CHECK(l == want_len && memcmp(&got, want, l) == 0, "%s: bound name changed", what);
}

static void expect_file(const char *path, mode_t type, mode_t mode, const char *what)
{
    struct stat st;
    CHECK_SYS(lstat(path, &st) == 0, what);
    CHECK((st.st_mode & S_IFMT) == type, "%s: not of its type (mode %o)", what, st.st_mode);
    CHECK((st.st_mode & 07777) == mode, "%s: mode %o, not %o", what, st.st_mode & 07777, mode);
}

int main(void)
{
    char dir[256], lpath[300], dpath[300], line[64], buf[128];
    zoo_mkdtemp(dir, sizeof dir, "unixpath");
    snprintf(lpath, sizeof lpath, "%s/listen", dir);
    snprintf(dpath, sizeof dpath, "%s/dgram", dir);
    struct sockaddr_un la, da;
    socklen_t ll = zoo_unix_addr(&la, lpath), dl = zoo_unix_addr(&da, dpath);

    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(listener >= 0, "socket");
    CHECK_SYS(bind(listener, (struct sockaddr *)&la, ll) == 0, "bind listener");
    CHECK_SYS(listen(listener, 4) == 0, "listen");
    CHECK_SYS(chmod(lpath, 0660) == 0, "chmod listener");
    int dgram = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(dgram >= 0, "socket dgram");
    CHECK_SYS(bind(dgram, (struct sockaddr *)&da, dl) == 0, "bind dgram");
    CHECK_SYS(chmod(dpath, 0620) == 0, "chmod dgram");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    expect_name(listener, &la, ll, "listener");
    expect_name(dgram, &da, dl, "dgram");
    int v = 0;
    socklen_t vl = sizeof v;
    CHECK_SYS(getsockopt(listener, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v == 1, "still listening");
    expect_file(dir, S_IFDIR, 0700, "directory");
    expect_file(lpath, S_IFSOCK, 0660, "listener's file");
    expect_file(dpath, S_IFSOCK, 0620, "dgram's file");
    printf("bound paths and their files ok\n");
    fflush(stdout);

    if (strcmp(line, "serve") == 0) {
        printf("serving\n");
        fflush(stdout);
        int a = accept(listener, NULL, NULL);
        CHECK_SYS(a >= 0, "accept");
        ssize_t n = read(a, buf, sizeof buf - 1);
        CHECK_SYS(n > 0, "read from the client");
        buf[n] = 0;
        char reply[160];
        int rl = snprintf(reply, sizeof reply, "pong %s", buf);
        CHECK(write(a, reply, rl) == rl, "write the answer");
        close(a);
        printf("served %s", buf);
    } else {
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        CHECK_SYS(c >= 0, "socket client");
        CHECK_SYS(connect(c, (struct sockaddr *)&la, ll) == 0, "connect to the listener's path");
        int a = accept(listener, NULL, NULL);
        CHECK_SYS(a >= 0, "accept");
        CHECK(write(c, "hello", 5) == 5, "write");
        CHECK(read(a, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0, "read accepted");
        close(a);
        close(c);
        printf("listener accepts ok\n");
        int s = socket(AF_UNIX, SOCK_DGRAM, 0);
        CHECK_SYS(s >= 0, "socket sender");
        CHECK_SYS(sendto(s, "ping", 4, 0, (struct sockaddr *)&da, dl) == 4, "sendto the dgram path");
        ssize_t r = recv(dgram, buf, sizeof buf, 0);
        CHECK(r == 4 && memcmp(buf, "ping", 4) == 0, "dgram recv");
        close(s);
        printf("dgram path receives ok\n");
    }
    CHECK_SYS(unlink(lpath) == 0 && unlink(dpath) == 0 && rmdir(dir) == 0, "remove the files");
    zoo_done();
}
