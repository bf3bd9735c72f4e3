/* unix_bound: unix sockets bound to abstract names, as the CUDA driver keeps
 * one (@cuda-uvmfd-<pidns>-<pid>): a listening stream socket and a bound
 * datagram socket. After restore both have their names again, the listener
 * still listens and accepts, and a datagram sent to the name arrives.
 * The names carry the pid, so runs side by side do not collide.
 * Also checks that /proc matches the process's own pid namespace: after a
 * restore into a new one, /proc/<getpid()> must be this process. */
#include "zoo.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static socklen_t abstract_addr(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + 1, name, n); /* sun_path[0] == 0: abstract */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static void expect_name(int fd, const struct sockaddr_un *want, socklen_t want_len, const char *what)
{
    struct sockaddr_un got;
    socklen_t l = sizeof got;
    CHECK_SYS(getsockname(fd, (struct sockaddr *)&got, &l) == 0, "getsockname");
    CHECK(l == want_len && memcmp(&got, want, l) == 0, "%s: bound name changed", what);
}

static void expect_proc_is_self(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)getpid());
    FILE *f = fopen(path, "r");
    CHECK_SYS(f != NULL, path);
    int pid = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Pid: %d", &pid) == 1)
            break;
    fclose(f);
    CHECK(pid == (int)getpid(), "%s shows pid %d, not this process (%d)", path, pid, (int)getpid());
}

int main(void)
{
    char line[64], lname[64], dname[64], buf[32];
    snprintf(lname, sizeof lname, "thaw-zoo-listen-%d", (int)getpid());
    snprintf(dname, sizeof dname, "thaw-zoo-dgram-%d", (int)getpid());
    struct sockaddr_un la, da;
    socklen_t ll = abstract_addr(&la, lname), dl = abstract_addr(&da, dname);

    int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_SYS(listener >= 0, "socket");
    CHECK_SYS(bind(listener, (struct sockaddr *)&la, ll) == 0, "bind listener");
    CHECK_SYS(listen(listener, 4) == 0, "listen");
    int dgram = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(dgram >= 0, "socket dgram");
    CHECK_SYS(bind(dgram, (struct sockaddr *)&da, dl) == 0, "bind dgram");
    expect_proc_is_self();

    zoo_ready();
    zoo_read_line(line, sizeof line);

    expect_proc_is_self();
    printf("/proc shows this process ok\n");
    expect_name(listener, &la, ll, "listener");
    expect_name(dgram, &da, dl, "dgram");
    int v = 0;
    socklen_t vl = sizeof v;
    CHECK_SYS(getsockopt(listener, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v == 1, "still listening");
    printf("bound names ok\n");

    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_SYS(c >= 0, "socket client");
    CHECK_SYS(connect(c, (struct sockaddr *)&la, ll) == 0, "connect to the listener's name");
    int a = accept(listener, NULL, NULL);
    CHECK_SYS(a >= 0, "accept");
    CHECK(write(c, "hello", 5) == 5, "write");
    CHECK(read(a, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0, "read accepted");
    printf("listener accepts ok\n");

    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK_SYS(s >= 0, "socket sender");
    CHECK_SYS(sendto(s, "ping", 4, 0, (struct sockaddr *)&da, dl) == 4, "sendto the dgram name");
    ssize_t r = recv(dgram, buf, sizeof buf, 0);
    CHECK(r == 4 && memcmp(buf, "ping", 4) == 0, "dgram recv");
    printf("dgram name receives ok\n");
    zoo_done();
}
