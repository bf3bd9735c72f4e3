/* eventfd: counter values, EFD_SEMAPHORE and EFD_NONBLOCK survive
 * checkpoint/restore. */
#include "zoo.h"
#include <fcntl.h>
#include <sys/eventfd.h>

int main(void)
{
    char line[64];
    uint64_t v;

    int e1 = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    CHECK_SYS(e1 >= 0, "eventfd");
    v = 40;
    CHECK(write(e1, &v, 8) == 8, "write eventfd");
    v = 2;
    CHECK(write(e1, &v, 8) == 8, "write eventfd");

    int e2 = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    CHECK_SYS(e2 >= 0, "eventfd semaphore");

    int e3 = eventfd(0, 0); /* blocking, counter 0 */
    CHECK_SYS(e3 >= 0, "eventfd blocking");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK(fcntl(e1, F_GETFL) & O_NONBLOCK, "e1 O_NONBLOCK lost");
    CHECK(fcntl(e1, F_GETFD) == FD_CLOEXEC && fcntl(e2, F_GETFD) == 0, "FD_CLOEXEC");
    CHECK(!(fcntl(e3, F_GETFL) & O_NONBLOCK), "e3 O_NONBLOCK appeared");

    CHECK(read(e1, &v, 8) == 8, "read eventfd");
    printf("eventfd counter %llu\n", (unsigned long long)v);
    CHECK(v == 42, "eventfd counter");
    CHECK(read(e1, &v, 8) < 0 && errno == EAGAIN, "eventfd not reset by read");

    for (int i = 0; i < 3; i++) {
        CHECK(read(e2, &v, 8) == 8 && v == 1, "semaphore read %d", i);
    }
    CHECK(read(e2, &v, 8) < 0 && errno == EAGAIN, "semaphore counter too large");
    printf("eventfd semaphore ok\n");

    v = 7;
    CHECK(write(e3, &v, 8) == 8, "write e3");
    CHECK(read(e3, &v, 8) == 8 && v == 7, "read e3");
    printf("eventfd blocking ok\n");
    zoo_done();
}
