/* unsupported_restrictions MODE: holds something an image does not hold
 * and a restore would change in silence, so checkpoint must refuse it and
 * leave this process as it was:
 *   flock   an exclusive flock() on a file      posix  an fcntl() write lock
 *   caps    CAP_SYS_ADMIN dropped from its bounding set
 *   nnp     no_new_privs set                     netns  its own network namespace
 * After "go" it checks that it still has what it had. */
#include "zoo.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <linux/capability.h>

/* Whether another process can take the lock on path right now. */
static int lock_is_free(const char *path, int posix)
{
    pid_t kid = fork();
    CHECK_SYS(kid >= 0, "fork");
    if (kid == 0) {
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) _exit(2);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        int r = posix ? fcntl(fd, F_SETLK, &fl) : flock(fd, LOCK_EX | LOCK_NB);
        _exit(r == 0 ? 0 : 1);
    }
    int st;
    CHECK_SYS(waitpid(kid, &st, 0) == kid, "waitpid");
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static char *status_line(const char *key, char *out, size_t size)
{
    FILE *f = fopen("/proc/self/status", "r");
    CHECK_SYS(f != NULL, "open status");
    char line[256];
    out[0] = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0)
            snprintf(out, size, "%s", line);
    fclose(f);
    return out;
}

int main(int argc, char **argv)
{
    CHECK(argc == 2, "usage: unsupported_restrictions flock|posix|caps|nnp|netns");
    const char *mode = argv[1];
    char dir[4096], path[4200], before[256], after[256], line[64];
    const char *key = "CapBnd:";
    zoo_mkdtemp(dir, sizeof dir, "restrictions");
    snprintf(path, sizeof path, "%s/lockfile", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    CHECK_SYS(fd >= 0, "create lock file");
    if (strcmp(mode, "flock") == 0) {
        CHECK_SYS(flock(fd, LOCK_EX) == 0, "flock");
    } else if (strcmp(mode, "posix") == 0) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        CHECK_SYS(fcntl(fd, F_SETLK, &fl) == 0, "fcntl lock");
    } else if (strcmp(mode, "caps") == 0) {
        CHECK_SYS(prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) == 0, "drop CAP_SYS_ADMIN");
    } else if (strcmp(mode, "nnp") == 0) {
        key = "NoNewPrivs:";
        CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "set no_new_privs");
    } else if (strcmp(mode, "netns") == 0) {
        CHECK_SYS(unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET)");
    } else {
        zoo_fail("unknown mode %s", mode);
    }
    char ns_before[128] = {0}, ns_after[128] = {0};
    CHECK_SYS(readlink("/proc/self/ns/net", ns_before, sizeof ns_before - 1) > 0, "readlink ns");
    status_line(key, before, sizeof before);

    zoo_ready();
    zoo_read_line(line, sizeof line);

    if (strcmp(mode, "flock") == 0 || strcmp(mode, "posix") == 0)
        CHECK(!lock_is_free(path, mode[0] == 'p'), "another process took the lock this one holds");
    status_line(key, after, sizeof after);
    CHECK(strcmp(before, after) == 0, "%s changed: %s -> %s", key, before, after);
    CHECK_SYS(readlink("/proc/self/ns/net", ns_after, sizeof ns_after - 1) > 0, "readlink ns");
    CHECK(strcmp(ns_before, ns_after) == 0, "network namespace changed");
    printf("%s still held\n", mode);
    unlink(path);
    rmdir(dir);
    zoo_done();
}
