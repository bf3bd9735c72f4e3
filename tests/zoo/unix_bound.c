/* unix_bound: unix sockets bound to abstract names, as the CUDA driver keeps
 * one (@cuda-uvmfd-<pidns>-<pid>): a listening stream socket and a bound
 * datagram socket. After restore both have their names again, the listener
 * still listens and accepts, and a datagram sent to the name arrives.
 * The names carry the pid, so runs side by side do not collide.
 * Also checks that /proc matches the process's own pid namespace: after a
 * restore into a new one, /proc/<getpid()> must be this process.
 * With the argument "cuda", also a listener named as the CUDA driver names
 * its own (cuda-uvmfd-<pid ns inode>-<pid>); after a restore it must be
 * bound to that name or, when another restore holds it, to the one the
 * driver would use in this pid namespace, so two restores can coexist. */
#include "zoo.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

static unsigned long pidns_inode(void)
{
    struct stat st;
    CHECK_SYS(stat("/proc/self/ns/pid", &st) == 0, "stat /proc/self/ns/pid");
    return (unsigned long)st.st_ino;
}

static void expect_cuda_name(int fd, const char *original)
{
    struct sockaddr_un got;
    socklen_t l = sizeof got;
    CHECK_SYS(getsockname(fd, (struct sockaddr *)&got, &l) == 0, "getsockname cuda");
    char here[64];
    snprintf(here, sizeof here, "cuda-uvmfd-%lu-%d", pidns_inode(), (int)getpid());
    size_t n = l - offsetof(struct sockaddr_un, sun_path);
    CHECK(n > 1 && got.sun_path[0] == 0, "cuda socket lost its abstract name");
    int is_original = n - 1 == strlen(original) && memcmp(got.sun_path + 1, original, n - 1) == 0;
    int is_here = n - 1 == strlen(here) && memcmp(got.sun_path + 1, here, n - 1) == 0;
    CHECK(is_original || is_here, "cuda socket bound to '%.*s'", (int)(n - 1), got.sun_path + 1);
    int v = 0;
    socklen_t vl = sizeof v;
    CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v == 1, "cuda socket listening");
}

/* The CUDA-named listener alone: restores of one image can run side by side. */
static void run_cuda(void)
{
    char line[64], cname[64];
    struct sockaddr_un ca;
    snprintf(cname, sizeof cname, "cuda-uvmfd-%lu-%d", pidns_inode(), (int)getpid());
    socklen_t cl = abstract_addr(&ca, cname);
    int cuda = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_SYS(cuda >= 0, "socket cuda");
    CHECK_SYS(bind(cuda, (struct sockaddr *)&ca, cl) == 0, "bind cuda");
    CHECK_SYS(listen(cuda, 8) == 0, "listen cuda");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    expect_proc_is_self();
    expect_cuda_name(cuda, cname);
    printf("cuda-named listener ok\n");
    zoo_done();
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) {
        run_cuda();
        return 0;
    }
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
