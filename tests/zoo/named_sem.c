/* named_sem: a named POSIX semaphore (sem_open), shared by name.  glibc
 * makes it under a temporary name, maps it, links it to its real name and
 * removes the temporary one: the creator's maps show
 * "/dev/shm/sem.XXXXXX (deleted)" for the file that others open by name.
 * A child (as a process pool's worker does) and the process itself map it
 * again by its name.  After the go, each post and wait is seen by all: the
 * creator's mapping is still that file, not a copy of its own. */
#include "zoo.h"

#include <fcntl.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/wait.h>

static sem_t *map_by_name(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/dev/shm/sem.%s", name + 1);
    int fd = open(path, O_RDWR);
    CHECK_SYS(fd >= 0, "open the semaphore's file");
    void *p = mmap(NULL, sizeof(sem_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK_SYS(p != MAP_FAILED, "mmap the semaphore's file");
    close(fd);
    return p;
}

static int value(sem_t *s)
{
    int v = -1;
    CHECK_SYS(sem_getvalue(s, &v) == 0, "sem_getvalue");
    return v;
}

int main(void)
{
    char name[64];
    snprintf(name, sizeof name, "/thaw-zoo-named-sem-%d", (int)getpid());
    sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 3);
    CHECK_SYS(s != SEM_FAILED, "sem_open");
    int ready[2], go[2];
    CHECK_SYS(pipe(ready) == 0 && pipe(go) == 0, "pipe");
    fflush(stdout);
    pid_t kid = fork();
    CHECK_SYS(kid >= 0, "fork");
    if (kid == 0) {
        sem_t *v = map_by_name(name);
        CHECK_SYS(write(ready[1], "k", 1) == 1, "tell ready");
        char c;
        CHECK_SYS(read(go[0], &c, 1) == 1, "wait for go");
        printf("child sees %d\n", value(v));
        CHECK_SYS(sem_wait(v) == 0, "sem_wait");
        fflush(stdout);
        _exit(0);
    }
    char c;
    CHECK_SYS(read(ready[0], &c, 1) == 1, "child ready");
    sem_t *mine = map_by_name(name);

    zoo_wait_go();
    CHECK_SYS(sem_post(s) == 0, "sem_post");
    printf("posted: %d, by name %d\n", value(s), value(mine));
    fflush(stdout);
    CHECK_SYS(write(go[1], "g", 1) == 1, "go child");
    int st;
    CHECK_SYS(waitpid(kid, &st, 0) == kid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    printf("after the child's wait: %d, by name %d\n", value(s), value(mine));
    sem_unlink(name);
    zoo_done();
}
