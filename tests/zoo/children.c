/* children: a process with a running child (pausing), which a checkpoint
 * takes along and a restore makes again: after the go, the parent kills it
 * and reaps it by its pid.  argv[1] "zombie" makes the child a zombie with
 * no exit signal (clone with exit signal 0, never waited for): what a
 * killed thaw checkpoint leaves of its copy, which a checkpoint refuses,
 * pointing it out.  argv[1] "shared-files" makes a running child that
 * shares the parent's fd table (clone with CLONE_FILES), which a
 * checkpoint refuses. argv[1] "exited" makes it an
 * ordinary zombie: a child that exited and was not waited for yet, which
 * a checkpoint takes and a restore makes again.
 */
#include "zoo.h"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
    char line[64];
    int zombie = argc > 1 && strcmp(argv[1], "zombie") == 0;
    int exited = argc > 1 && strcmp(argv[1], "exited") == 0;
    int shared_files = argc > 1 && strcmp(argv[1], "shared-files") == 0;
    pid_t child;
    if (shared_files) {
        /* clone(CLONE_FILES | SIGCHLD) with no new stack: the child runs
         * on a copy of this stack (no CLONE_VM) and only pauses. */
        child = (pid_t)syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
        CHECK_SYS(child >= 0, "clone");
        if (child == 0) {
            for (;;)
                pause();
        }
    } else if (zombie) {
        /* clone(flags 0): a copy of this process with no exit signal */
        child = (pid_t)syscall(SYS_clone, 0, 0, 0, 0, 0);
        CHECK_SYS(child >= 0, "clone");
        if (child == 0)
            _exit(0);
    } else {
        child = fork();
        CHECK_SYS(child >= 0, "fork");
        if (child == 0) {
            if (!exited)
                pause();
            _exit(0);
        }
        if (exited) {  /* wait until it is a zombie, without reaping it */
            siginfo_t info;
            CHECK_SYS(waitid(P_PID, (id_t)child, &info, WEXITED | WNOWAIT) == 0, "waitid");
        }
    }

    zoo_ready();
    zoo_read_line(line, sizeof line);

    if (!zombie && !exited)
        kill(child, SIGKILL);
    int status;
    pid_t w = waitpid(child, &status, zombie ? __WCLONE : 0);
    CHECK(w == child, "waitpid gave %d", (int)w);
    printf("child reaped\n");
    zoo_done();
}
