/* tree_groups: what a process tree leaves beside its parent/child links.
 * G leads a process group of its own, and its child H is a member of it
 * (a shell's pipeline, a supervisor's workers); after the go the parent
 * checks that H is still in G's group and ends both with one killpg.
 * O is a child the parent leaves running when it exits (a daemon, a
 * `cmd &` a script does not wait for): it outlives its parent, then
 * writes "outlived its parent" to $THAW_TEST_TMP/orphan (its stdout is
 * /dev/null, so that whoever reads the program's output is not held).
 */
#include "zoo.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

int main(void)
{
    int ready[2];
    CHECK_SYS(pipe(ready) == 0, "pipe");
    pid_t g = fork();
    CHECK_SYS(g >= 0, "fork G");
    if (g == 0) {
        CHECK_SYS(setpgid(0, 0) == 0, "G: setpgid");
        pid_t h = fork();
        CHECK_SYS(h >= 0, "fork H");
        if (h == 0) {
            /* Gone with G even if the killpg missed it (it would hold the
             * program's stdout). */
            CHECK_SYS(prctl(PR_SET_PDEATHSIG, SIGKILL) == 0, "H: prctl");
            CHECK_SYS(write(ready[1], &h, 1) == 1, "H: ready");
            for (;;)
                pause();
        }
        for (;;)
            pause();
    }
    setpgid(g, g); /* as shells do: whichever of the two runs first */
    char c;
    CHECK_SYS(read(ready[0], &c, 1) == 1, "wait for H");
    pid_t h = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)g, (int)g);
    FILE *f = fopen(path, "r");
    CHECK_SYS(f && fscanf(f, "%d", &h) == 1, "read G's children");
    fclose(f);

    char orphan_file[512];
    snprintf(orphan_file, sizeof orphan_file, "%s/orphan", zoo_tmpdir());
    pid_t parent = getpid();
    pid_t o = fork();
    CHECK_SYS(o >= 0, "fork O");
    if (o == 0) {
        int null = open("/dev/null", O_RDWR);
        CHECK_SYS(null >= 0, "O: open /dev/null");
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        while (getppid() == parent)
            usleep(10000);
        int fd = open(orphan_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            ssize_t n = write(fd, "outlived its parent\n", 20);
            (void)n;
        }
        _exit(0);
    }

    zoo_ready();
    char line[64];
    zoo_read_line(line, sizeof line);

    printf("G leads its group: %s\n", getpgid(g) == g ? "yes" : "no");
    printf("H is in G's group: %s\n", getpgid(h) == g ? "yes" : "no");
    CHECK_SYS(killpg(g, SIGTERM) == 0, "killpg G");
    int st;
    CHECK_SYS(waitpid(g, &st, 0) == g, "waitpid G");
    printf("G: %s\n", WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM ? "terminated" : "not terminated");
    zoo_done();
}
