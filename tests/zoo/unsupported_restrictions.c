/* unsupported_restrictions MODE: holds something an image does not hold
 * and a restore would change in silence, so checkpoint must refuse it and
 * leave this process as it was:
 *   lease   a write lease on a file (F_SETLEASE) sockflock  a flock() on a socket
 *   caps    CAP_SYS_ADMIN dropped from its bounding set
 *   nnp     no_new_privs set                     netns  its own network namespace
 * After "go" it checks that it still has what it had. */
#include "zoo.h"
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <linux/capability.h>

/* Whether fdinfo lists a lock for fd. */
static int fd_has_lock(int fd)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    CHECK_SYS(f != NULL, "open fdinfo");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, "lock:") != NULL;
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
    CHECK(argc == 2, "usage: unsupported_restrictions lease|sockflock|caps|nnp|netns");
    const char *mode = argv[1];
    char dir[4096], path[4200], before[256], after[256], line[64];
    const char *key = "CapBnd:";
    zoo_mkdtemp(dir, sizeof dir, "restrictions");
    snprintf(path, sizeof path, "%s/lockfile", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    CHECK_SYS(fd >= 0, "create lock file");
    int sv[2] = {-1, -1};
    if (strcmp(mode, "lease") == 0) {
        CHECK_SYS(fcntl(fd, F_SETLEASE, F_WRLCK) == 0, "F_SETLEASE");
    } else if (strcmp(mode, "sockflock") == 0) {
        CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        CHECK_SYS(flock(sv[0], LOCK_EX) == 0, "flock a socket");
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

    if (strcmp(mode, "lease") == 0)
        CHECK(fcntl(fd, F_GETLEASE) == F_WRLCK, "the lease is gone");
    if (strcmp(mode, "sockflock") == 0)
        CHECK(fd_has_lock(sv[0]), "the socket's lock is gone");
    status_line(key, after, sizeof after);
    CHECK(strcmp(before, after) == 0, "%s changed: %s -> %s", key, before, after);
    CHECK_SYS(readlink("/proc/self/ns/net", ns_after, sizeof ns_after - 1) > 0, "readlink ns");
    CHECK(strcmp(ns_before, ns_after) == 0, "network namespace changed");
    printf("%s still held\n", mode);
    unlink(path);
    rmdir(dir);
    zoo_done();
}
