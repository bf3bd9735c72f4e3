/* epoll: an epoll instance watching an eventfd and pipes (with per-fd data,
 * level/edge triggered, a disarmed EPOLLONESHOT entry) survives
 * checkpoint/restore; epoll_wait reports the expected fds afterwards. */
#include "zoo.h"
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

static int ep;

static void add(int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl");
}

static int cmp_ev(const void *a, const void *b)
{
    const struct epoll_event *x = a, *y = b;
    return x->data.u64 < y->data.u64 ? -1 : x->data.u64 > y->data.u64;
}

/* epoll_wait, sort by data, format into out, print it if label is set */
static int wait_report(const char *label, int timeout_ms, char *out, size_t outsz)
{
    struct epoll_event evs[16];
    int n;
    do
        n = epoll_wait(ep, evs, 16, timeout_ms);
    while (n < 0 && errno == EINTR);
    CHECK_SYS(n >= 0, "epoll_wait");
    qsort(evs, n, sizeof evs[0], cmp_ev);
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++)
        len += snprintf(out + len, outsz - len, "%s%llx:%s%s", i ? " " : "",
                        (unsigned long long)evs[i].data.u64,
                        evs[i].events & EPOLLIN ? "IN" : "",
                        evs[i].events & EPOLLOUT ? "OUT" : "");
    if (label)
        printf("%s: [%s]\n", label, out);
    return n;
}

int main(void)
{
    char line[64], got[256], c;
    int p1[2], p2[2], p3[2], p4[2];
    uint64_t v = 5;

    ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK_SYS(ep >= 0, "epoll_create1");
    int efd = eventfd(0, EFD_NONBLOCK);
    CHECK_SYS(efd >= 0, "eventfd");
    CHECK(write(efd, &v, 8) == 8, "write eventfd");
    CHECK_SYS(pipe(p1) == 0 && pipe(p2) == 0 && pipe(p3) == 0 && pipe(p4) == 0, "pipe");
    CHECK(write(p1[1], "d", 1) == 1, "write p1");

    add(efd, EPOLLIN, 0x1111);
    add(p1[0], EPOLLIN, 0x2222);
    add(p2[0], EPOLLIN, 0x3333);                 /* empty: not ready */
    add(p3[1], EPOLLOUT | EPOLLONESHOT, 0x4444); /* fires once, then disarmed */
    add(p4[0], EPOLLIN | EPOLLET, 0x6666);       /* edge triggered, empty */

    CHECK(wait_report(NULL, 0, got, sizeof got) == 3, "before: expected 3 events");
    CHECK(strcmp(got, "1111:IN 2222:IN 4444:OUT") == 0, "before: unexpected events");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK(fcntl(ep, F_GETFD) == FD_CLOEXEC, "epoll FD_CLOEXEC lost");
    wait_report("after restore", 1000, got, sizeof got);
    CHECK(strcmp(got, "1111:IN 2222:IN") == 0, "after restore: unexpected events");

    CHECK(write(p2[1], "x", 1) == 1, "write p2");
    CHECK(write(p4[1], "y", 1) == 1, "write p4");
    wait_report("after writes", 1000, got, sizeof got);
    CHECK(strcmp(got, "1111:IN 2222:IN 3333:IN 6666:IN") == 0, "after writes: unexpected events");
    /* edge triggered entry must not be reported again without a new edge */
    wait_report("level only", 0, got, sizeof got);
    CHECK(strcmp(got, "1111:IN 2222:IN 3333:IN") == 0, "edge-triggered entry re-reported");

    CHECK(read(efd, &v, 8) == 8 && v == 5, "eventfd value");
    CHECK(read(p1[0], &c, 1) == 1 && c == 'd', "p1 data");
    CHECK(read(p2[0], &c, 1) == 1 && c == 'x', "p2 data");
    wait_report("drained", 0, got, sizeof got);
    CHECK(got[0] == '\0', "events after draining");

    /* re-arm the oneshot entry */
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLONESHOT, .data.u64 = 0x4444};
    CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_MOD, p3[1], &ev) == 0, "epoll_ctl MOD");
    wait_report("rearmed", 1000, got, sizeof got);
    CHECK(strcmp(got, "4444:OUT") == 0, "oneshot re-arm");
    zoo_done();
}
