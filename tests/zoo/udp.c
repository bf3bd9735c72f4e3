/* udp: UDP sockets in every state a program leaves them in — never bound,
 * bound to a port the kernel chose (with options set and a thread blocked in
 * recvfrom), connected (bound by the kernel at connect), IPv6 — and one
 * with a datagram queued, which a restore does not carry (UDP may lose it).
 * After restore: options as set, the connected socket still connected to
 * its peer's address, and the blocked thread receives a datagram sent to
 * its socket's address (the port may have changed where the original still
 * holds it: then the kernel chose another, as it did the first time).
 * Argument: a port for the blocked thread's socket instead of one the kernel
 * chooses. */
#include "zoo.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>

static int server;

static void *receiver(void *arg)
{
    (void)arg;
    char buf[16] = {0};
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    ssize_t n = recvfrom(server, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
    CHECK_SYS(n == 5, "recvfrom in the blocked thread");
    CHECK(memcmp(buf, "hello", 5) == 0, "datagram content: %s", buf);
    CHECK_SYS(sendto(server, "world", 5, 0, (struct sockaddr *)&from, fl) == 5, "reply");
    return NULL;
}

static int opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    CHECK_SYS(getsockopt(fd, level, name, &v, &l) == 0, "getsockopt");
    return v;
}

static struct sockaddr_in local_of(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    CHECK_SYS(getsockname(fd, (struct sockaddr *)&a, &l) == 0, "getsockname");
    return a;
}

int main(int argc, char **argv)
{
    char line[64];
    int one = 1, tos = 0x10, ttl = 7, rcvbuf = 65536, priority = 2;
    struct timeval tv = {.tv_sec = 42, .tv_usec = 5000};

    int unbound = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_SYS(unbound >= 0, "socket");

    server = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_SYS(server >= 0, "socket");
    CHECK_SYS(setsockopt(server, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) == 0, "SO_BROADCAST");
    CHECK_SYS(setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
    CHECK_SYS(setsockopt(server, IPPROTO_IP, IP_TOS, &tos, sizeof tos) == 0, "IP_TOS");
    /* after IP_TOS, which sets the priority too */
    CHECK_SYS(setsockopt(server, SOL_SOCKET, SO_PRIORITY, &priority, sizeof priority) == 0, "SO_PRIORITY");
    CHECK_SYS(setsockopt(server, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl) == 0, "IP_TTL");
    CHECK_SYS(setsockopt(server, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0, "IP_PKTINFO");
    CHECK_SYS(setsockopt(server, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0, "SO_RCVBUF");
    CHECK_SYS(setsockopt(server, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0, "SO_SNDTIMEO");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_in fixed = a;
    if (argc > 1) /* a port of the program's choosing */
        fixed.sin_port = htons((uint16_t)atoi(argv[1]));
    CHECK_SYS(bind(server, (struct sockaddr *)&fixed, sizeof fixed) == 0, "bind");
    struct sockaddr_in server_addr = local_of(server);
    int rcvbuf_reported = opt(server, SOL_SOCKET, SO_RCVBUF);

    int connected = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_SYS(connected >= 0, "socket");
    CHECK_SYS(connect(connected, (struct sockaddr *)&server_addr, sizeof server_addr) == 0, "connect");

    int queued = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK_SYS(queued >= 0, "socket");
    CHECK_SYS(bind(queued, (struct sockaddr *)&a, sizeof a) == 0, "bind queued");
    struct sockaddr_in queued_addr = local_of(queued);
    int sender = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_SYS(sender >= 0, "socket");
    CHECK_SYS(sendto(sender, "lost?", 5, 0, (struct sockaddr *)&queued_addr, sizeof queued_addr) == 5,
              "send to the queued socket");
    close(sender);

    int v6 = socket(AF_INET6, SOCK_DGRAM, 0);
    CHECK_SYS(v6 >= 0, "socket v6");
    CHECK_SYS(setsockopt(v6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) == 0, "IPV6_V6ONLY");
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = 0, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int v6_bound = bind(v6, (struct sockaddr *)&a6, sizeof a6) == 0; /* no IPv6 loopback: stays unbound */

    pthread_t t;
    CHECK(pthread_create(&t, NULL, receiver, NULL) == 0, "pthread_create");
    usleep(20000); /* let it block in recvfrom() */

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK(opt(server, SOL_SOCKET, SO_BROADCAST) == 1, "SO_BROADCAST lost");
    CHECK(opt(server, SOL_SOCKET, SO_REUSEADDR) == 1, "SO_REUSEADDR lost");
    CHECK(opt(server, SOL_SOCKET, SO_PRIORITY) == priority, "SO_PRIORITY is %d", opt(server, SOL_SOCKET, SO_PRIORITY));
    CHECK(opt(server, IPPROTO_IP, IP_TOS) == tos, "IP_TOS is %d", opt(server, IPPROTO_IP, IP_TOS));
    CHECK(opt(server, IPPROTO_IP, IP_TTL) == ttl, "IP_TTL is %d", opt(server, IPPROTO_IP, IP_TTL));
    CHECK(opt(server, IPPROTO_IP, IP_PKTINFO) == 1, "IP_PKTINFO lost");
    CHECK(opt(server, SOL_SOCKET, SO_RCVBUF) == rcvbuf_reported, "SO_RCVBUF is %d, was %d",
          opt(server, SOL_SOCKET, SO_RCVBUF), rcvbuf_reported);
    CHECK(opt(unbound, IPPROTO_IP, IP_TTL) == opt(socket(AF_INET, SOCK_DGRAM, 0), IPPROTO_IP, IP_TTL),
          "an unset option changed");
    struct timeval got;
    socklen_t gl = sizeof got;
    CHECK_SYS(getsockopt(server, SOL_SOCKET, SO_SNDTIMEO, &got, &gl) == 0, "SO_SNDTIMEO");
    CHECK(got.tv_sec == 42 && got.tv_usec >= 4000 && got.tv_usec <= 8000, "SO_SNDTIMEO is %ld.%06ld",
          (long)got.tv_sec, (long)got.tv_usec);
    CHECK(local_of(unbound).sin_port == 0, "the unbound socket got a port");
    CHECK(opt(v6, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "IPV6_V6ONLY lost");
    if (v6_bound) {
        struct sockaddr_in6 b6;
        socklen_t bl = sizeof b6;
        CHECK_SYS(getsockname(v6, (struct sockaddr *)&b6, &bl) == 0 && b6.sin6_port != 0, "v6 port lost");
    }
    printf("options ok\n");

    /* The connected socket's peer is the server's address at checkpoint. */
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    CHECK_SYS(getpeername(connected, (struct sockaddr *)&peer, &pl) == 0, "getpeername");
    CHECK(peer.sin_port == server_addr.sin_port && peer.sin_addr.s_addr == server_addr.sin_addr.s_addr,
          "connected to another address");
    CHECK(local_of(connected).sin_port != 0, "the connected socket has no port");
    printf("connected socket ok\n");

    /* Whatever was queued is read or gone; never garbage. */
    char qb[16];
    ssize_t qn = recv(queued, qb, sizeof qb, 0);
    CHECK(qn == 5 || (qn < 0 && errno == EAGAIN), "queued socket: %zd (%s)", qn, strerror(errno));
    CHECK(qn < 0 || memcmp(qb, "lost?", 5) == 0, "queued datagram changed");

    /* A datagram to the server's address now wakes the blocked thread. */
    struct sockaddr_in now = local_of(server);
    int client = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK_SYS(client >= 0, "socket client");
    struct timeval wait = {.tv_sec = 20};
    CHECK_SYS(setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait) == 0, "SO_RCVTIMEO");
    CHECK_SYS(sendto(client, "hello", 5, 0, (struct sockaddr *)&now, sizeof now) == 5, "sendto server");
    char buf[8] = {0};
    CHECK_SYS(recv(client, buf, 5, 0) == 5, "answer from the blocked thread");
    CHECK(memcmp(buf, "world", 5) == 0, "answer content");
    CHECK(pthread_join(t, NULL) == 0, "join");
    printf("recvfrom in a restored thread ok\n");
    zoo_done();
}
