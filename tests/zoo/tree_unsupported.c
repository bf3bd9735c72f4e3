/* tree_unsupported: a process whose grandchild holds what a checkpoint
 * refuses, argv[1] "io_uring" (an fd: refused with the files) or "sysv"
 * (an attached System V segment: refused with the memory, the last
 * step). The checkpoint must fail naming the grandchild, and leave all
 * three processes running: after the go each answers through a pipe.
 */
#include "zoo.h"

#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <sys/shm.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    int sysv = argc > 1 && strcmp(argv[1], "sysv") == 0;
    int gate[2], answers[2];
    CHECK_SYS(pipe(gate) == 0 && pipe(answers) == 0, "pipe");
    pid_t kid = fork();
    CHECK_SYS(kid >= 0, "fork");
    if (kid == 0) {
        pid_t grandchild = fork();
        CHECK_SYS(grandchild >= 0, "fork grandchild");
        if (grandchild == 0) {
            volatile int *seg = NULL;
            if (sysv) {
                int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
                CHECK_SYS(id >= 0, "shmget");
                seg = shmat(id, NULL, 0);
                CHECK_SYS(seg != (void *)-1, "shmat");
                shmctl(id, IPC_RMID, NULL);
                *seg = 7;
            } else {
                struct io_uring_params p;
                memset(&p, 0, sizeof p);
                CHECK_SYS(syscall(__NR_io_uring_setup, 8, &p) >= 0, "io_uring_setup");
            }
            char c;
            CHECK_SYS(read(gate[0], &c, 1) == 1, "grandchild: gate");
            CHECK_SYS(write(answers[1], sysv && *seg == 7 ? "G" : "g", 1) == 1, "grandchild: answer");
            _exit(0);
        }
        char c;
        CHECK_SYS(read(gate[0], &c, 1) == 1, "child: gate");
        CHECK_SYS(write(answers[1], "c", 1) == 1, "child: answer");
        int st;
        CHECK_SYS(waitpid(grandchild, &st, 0) == grandchild, "child: waitpid");
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) + 3 : 99);
    }
    close(answers[1]);

    zoo_ready();
    char line[64];
    zoo_read_line(line, sizeof line);

    CHECK_SYS(write(gate[1], "gg", 2) == 2, "open the gate");
    int st;
    CHECK_SYS(waitpid(kid, &st, 0) == kid, "waitpid");
    char got[4] = {0};
    CHECK_SYS(read(answers[0], got, 1) == 1 && read(answers[0], got + 1, 1) == 1, "read answers");
    if (got[0] > got[1]) { char t = got[0]; got[0] = got[1]; got[1] = t; }
    printf("answers %s, child exited %d\n", got, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    zoo_done();
}
