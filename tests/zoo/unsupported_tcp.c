/* unsupported_tcp: holds an established TCP connection (to its own listener
 * on 127.0.0.1).  thaw does not support TCP connections: checkpoint must fail
 * with a message mentioning TCP and leave this process running; it then
 * finishes normally after "go", its connection intact. */
#include "zoo.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

int main(void)
{
    char line[64];
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_SYS(s >= 0, "socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_SYS(bind(s, (struct sockaddr *)&a, sizeof a) == 0, "bind");
    CHECK_SYS(listen(s, 4) == 0, "listen");
    struct sockaddr_in b;
    socklen_t bl = sizeof b;
    CHECK_SYS(getsockname(s, (struct sockaddr *)&b, &bl) == 0, "getsockname");

    int cs = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_SYS(cs >= 0, "socket client");
    CHECK_SYS(connect(cs, (struct sockaddr *)&b, sizeof b) == 0, "connect");
    int as = accept(s, NULL, NULL);
    CHECK_SYS(as >= 0, "accept");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    struct sockaddr_in c;
    socklen_t cl = sizeof c;
    CHECK_SYS(getsockname(s, (struct sockaddr *)&c, &cl) == 0, "getsockname after");
    CHECK(c.sin_port == b.sin_port && c.sin_addr.s_addr == b.sin_addr.s_addr, "address changed");
    printf("listening socket ok\n");

    /* the connection made before the failed checkpoint still works */
    CHECK(write(cs, "hi", 2) == 2, "write tcp");
    char buf[4];
    CHECK(read(as, buf, 2) == 2 && memcmp(buf, "hi", 2) == 0, "read tcp");
    printf("tcp connection ok\n");
    zoo_done();
}
