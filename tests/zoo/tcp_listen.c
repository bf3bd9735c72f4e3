/* tcp_listen: a listening TCP socket on 127.0.0.1 with a thread blocked in
 * accept() at checkpoint time; after restore the same address accepts, and
 * the thread that was inside accept() gets the connection. */
#include "zoo.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

static int listener;

static void *acceptor(void *arg)
{
    (void)arg;
    int c = accept(listener, NULL, NULL);
    CHECK_SYS(c >= 0, "accept");
    char buf[8] = {0};
    CHECK(read(c, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0, "read from accepted connection");
    CHECK(write(c, "world", 5) == 5, "write to accepted connection");
    close(c);
    return NULL;
}

int main(void)
{
    char line[64];
    listener = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_SYS(listener >= 0, "socket");
    int one = 1;
    CHECK_SYS(setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_SYS(bind(listener, (struct sockaddr *)&a, sizeof a) == 0, "bind");
    CHECK_SYS(listen(listener, 8) == 0, "listen");
    struct sockaddr_in b;
    socklen_t bl = sizeof b;
    CHECK_SYS(getsockname(listener, (struct sockaddr *)&b, &bl) == 0, "getsockname");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, acceptor, NULL) == 0, "pthread_create");
    usleep(20000); /* let it block in accept() */

    zoo_ready();
    zoo_read_line(line, sizeof line);

    struct sockaddr_in c;
    socklen_t cl = sizeof c;
    CHECK_SYS(getsockname(listener, (struct sockaddr *)&c, &cl) == 0, "getsockname after");
    CHECK(c.sin_port == b.sin_port && c.sin_addr.s_addr == b.sin_addr.s_addr, "address changed");
    int v = 0;
    socklen_t vl = sizeof v;
    CHECK_SYS(getsockopt(listener, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v == 1, "still listening");
    printf("listening socket ok\n");
    int cs = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_SYS(cs >= 0, "socket client");
    CHECK_SYS(connect(cs, (struct sockaddr *)&c, sizeof c) == 0, "connect");
    CHECK(write(cs, "hello", 5) == 5, "write");
    char buf[8] = {0};
    CHECK(read(cs, buf, 5) == 5 && memcmp(buf, "world", 5) == 0, "answer from the accept thread");
    CHECK(pthread_join(t, NULL) == 0, "join");
    printf("accept in a restored thread ok\n");
    zoo_done();
}
