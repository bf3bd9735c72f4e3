/* unsupported_io_uring: holds an io_uring instance, with a kernel polling
 * thread (IORING_SETUP_SQPOLL) when given "sqpoll".  thaw does not support
 * io_uring: checkpoint must fail naming it and leave this process running.
 * The polling thread is a thread of this process that ptrace attaches to
 * but never stops: it must not hang the checkpoint. */
#include "zoo.h"
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
    char line[64];
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    if (argc > 1 && strcmp(argv[1], "sqpoll") == 0) {
        p.flags = IORING_SETUP_SQPOLL;
        p.sq_thread_idle = 1000;
    }
    int ring = (int)syscall(__NR_io_uring_setup, 8, &p);
    CHECK_SYS(ring >= 0, "io_uring_setup");

    zoo_ready();
    zoo_read_line(line, sizeof line);
    printf("io_uring fd %d still open\n", fcntl(ring, F_GETFD) >= 0 ? ring : -1);
    zoo_done();
}
