/* widowed_pipes: pipe ends whose other end nobody holds any more (the
 * writer wrote and closed, the reader closed), in the process and in a child
 * (as a process pool's worker keeps the pipe its parent sent its setup
 * through).  Nothing outside is connected to them: they are restored as
 * they were, unread data and all, the read end reading EOF after it, the
 * write end failing with EPIPE.  The child reports on a pipe of the tree. */
#include "zoo.h"

#include <signal.h>
#include <sys/wait.h>

static const char msg[] = "data the writer left before it closed";

/* A pipe with msg in it and its write end closed: its read end. */
static int widowed_read_end(void)
{
    int p[2];
    CHECK_SYS(pipe(p) == 0, "pipe");
    CHECK_SYS(write(p[1], msg, sizeof msg) == (ssize_t)sizeof msg, "write");
    close(p[1]);
    return p[0];
}

/* A pipe whose read end is closed: its write end. */
static int widowed_write_end(void)
{
    int p[2];
    CHECK_SYS(pipe(p) == 0, "pipe");
    close(p[0]);
    return p[1];
}

static void check_ends(int r, int w, const char *who)
{
    char buf[128];
    ssize_t n = read(r, buf, sizeof buf);
    CHECK(n == (ssize_t)sizeof msg && memcmp(buf, msg, sizeof msg) == 0, "%s: read the left data (%zd)", who, n);
    n = read(r, buf, sizeof buf);
    CHECK(n == 0, "%s: EOF after the data (%zd)", who, n);
    n = write(w, "x", 1);
    CHECK(n < 0 && errno == EPIPE, "%s: write to a pipe nobody reads: %zd, %s", who, n, strerror(errno));
    printf("%s: data, EOF, EPIPE\n", who);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int report[2], go[2];
    CHECK_SYS(pipe(report) == 0 && pipe(go) == 0, "pipe");
    pid_t kid = fork();
    CHECK_SYS(kid >= 0, "fork");
    if (kid == 0) {
        close(report[0]);
        close(go[1]);
        int r = widowed_read_end(), w = widowed_write_end();
        CHECK_SYS(write(report[1], "k", 1) == 1, "tell ready");
        char c;
        CHECK_SYS(read(go[0], &c, 1) == 1, "wait for go");
        CHECK_SYS(dup2(report[1], 1) == 1, "dup2");
        check_ends(r, w, "child");
        fflush(stdout);
        _exit(0);
    }
    close(report[1]);
    close(go[0]);
    char c;
    CHECK_SYS(read(report[0], &c, 1) == 1, "child ready");
    int r = widowed_read_end(), w = widowed_write_end();

    zoo_wait_go();
    check_ends(r, w, "parent");
    fflush(stdout);
    CHECK_SYS(write(go[1], "g", 1) == 1, "go child");
    char buf[256];
    ssize_t n, got = 0;
    while ((n = read(report[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += n;
    buf[got] = '\0';
    fputs(buf, stdout);
    int st;
    CHECK_SYS(waitpid(kid, &st, 0) == kid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    zoo_done();
}
