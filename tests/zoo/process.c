/* process: per-process attributes survive checkpoint/restore: cwd, umask,
 * rlimits (RLIMIT_NOFILE soft lowered), comm (PR_SET_NAME), personality,
 * /proc/self/cmdline and environ, pid, credentials. */
#include "zoo.h"
#include <fcntl.h>
#include <grp.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#define NOFILE_SOFT 200

static char dir[4096], cwd_before[4200], cwd_after[4200];
static char cmdline_before[8192], cmdline_after[8192];
static char environ_before[65536], environ_after[65536];

static size_t slurp(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK_SYS(fd >= 0, path);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, size - n);
        CHECK_SYS(r >= 0, path);
        if (r == 0)
            break;
        n += r;
        CHECK(n < size, "%s too large", path);
    }
    close(fd);
    return n;
}

int main(int argc, char **argv)
{
    char line[64];
    struct rlimit rl_before[RLIM_NLIMITS];

    zoo_mkdtemp(dir, sizeof dir, "process");
    CHECK_SYS(chdir(dir) == 0, "chdir");
    CHECK(getcwd(cwd_before, sizeof cwd_before) != NULL, "getcwd");
    struct stat dot_before;
    CHECK_SYS(stat(".", &dot_before) == 0, "stat .");

    umask(027);

    struct rlimit rl;
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    CHECK(rl.rlim_max >= NOFILE_SOFT, "hard NOFILE limit too low");
    rl.rlim_cur = NOFILE_SOFT;
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit");
    for (int i = 0; i < RLIM_NLIMITS; i++)
        CHECK_SYS(getrlimit(i, &rl_before[i]) == 0, "getrlimit all");

    CHECK_SYS(prctl(PR_SET_NAME, "zoo-proc-name", 0, 0, 0) == 0, "PR_SET_NAME");
    int pers_before = personality(0xffffffff);
    pid_t pid_before = getpid();
    uid_t uid = getuid(), euid = geteuid();
    gid_t gid = getgid(), egid = getegid();
    gid_t groups_before[64];
    int ngroups_before = getgroups(64, groups_before);
    CHECK_SYS(ngroups_before >= 0, "getgroups");
    size_t cmd_len = slurp("/proc/self/cmdline", cmdline_before, sizeof cmdline_before);
    size_t env_len = slurp("/proc/self/environ", environ_before, sizeof environ_before);

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK(getpid() == pid_before, "pid changed");
    printf("pid ok\n");

    CHECK(getcwd(cwd_after, sizeof cwd_after) != NULL, "getcwd after");
    CHECK(strcmp(cwd_before, cwd_after) == 0, "cwd changed ('%s' -> '%s')", cwd_before, cwd_after);
    struct stat dot;
    CHECK_SYS(stat(".", &dot) == 0, "stat . after");
    CHECK(dot.st_ino == dot_before.st_ino && dot.st_dev == dot_before.st_dev, "cwd inode changed");
    printf("cwd ok\n");

    mode_t m = umask(022);
    printf("umask %04o\n", (unsigned)m);
    CHECK(m == 027, "umask changed");

    for (int i = 0; i < RLIM_NLIMITS; i++) {
        CHECK_SYS(getrlimit(i, &rl) == 0, "getrlimit after");
        CHECK(rl.rlim_cur == rl_before[i].rlim_cur && rl.rlim_max == rl_before[i].rlim_max,
              "rlimit %d changed", i);
    }
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    printf("nofile soft limit %llu\n", (unsigned long long)rl.rlim_cur);
    printf("rlimits ok\n");

    char comm[32] = "";
    CHECK_SYS(prctl(PR_GET_NAME, comm, 0, 0, 0) == 0, "PR_GET_NAME");
    printf("comm %s\n", comm);
    CHECK(strcmp(comm, "zoo-proc-name") == 0, "comm changed");
    {
        char pc[64];
        size_t n = slurp("/proc/self/comm", pc, sizeof pc);
        CHECK(n == 14 && memcmp(pc, "zoo-proc-name\n", 14) == 0, "/proc/self/comm");
    }

    CHECK(personality(0xffffffff) == pers_before, "personality changed");
    printf("personality ok\n");

    size_t n = slurp("/proc/self/cmdline", cmdline_after, sizeof cmdline_after);
    CHECK(n == cmd_len && memcmp(cmdline_before, cmdline_after, n) == 0, "cmdline changed");
    printf("cmdline ok\n");
    n = slurp("/proc/self/environ", environ_after, sizeof environ_after);
    CHECK(n == env_len && memcmp(environ_before, environ_after, n) == 0, "environ changed");
    printf("environ ok\n");
    printf("argc %d\n", argc);
    for (int i = 1; i < argc; i++)
        printf("argv[%d] %s\n", i, argv[i]);

    CHECK(getuid() == uid && geteuid() == euid && getgid() == gid && getegid() == egid,
          "credentials changed");
    gid_t groups[64];
    int ng = getgroups(64, groups);
    CHECK(ng == ngroups_before && memcmp(groups, groups_before, ng * sizeof(gid_t)) == 0,
          "supplementary groups changed");
    printf("credentials ok\n");

    CHECK_SYS(chdir("/") == 0, "chdir /");
    rmdir(dir);
    zoo_done();
}
