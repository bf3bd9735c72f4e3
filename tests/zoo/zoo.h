/* Common helpers for the thaw zoo programs.
 *
 * Protocol: set up state, print "READY\n", block reading one line from
 * stdin (the harness checkpoints/restores the process while it is blocked
 * there), then verify the state, print deterministic result lines, "DONE\n"
 * and exit 0.  Any failed check prints "FAIL: <what>" and exits 1.
 */
#ifndef THAW_ZOO_H
#define THAW_ZOO_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ZOO_UNUSED __attribute__((unused))

static ZOO_UNUSED void zoo_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("FAIL: ", stdout);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    _exit(1);
}

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond))                                                         \
            zoo_fail(__VA_ARGS__);                                           \
    } while (0)

/* Same as CHECK but appends errno text; for syscalls returning -1. */
#define CHECK_SYS(cond, what)                                                \
    do {                                                                     \
        if (!(cond))                                                         \
            zoo_fail("%s: %s", what, strerror(errno));                       \
    } while (0)

static ZOO_UNUSED void zoo_ready(void)
{
    fputs("READY\n", stdout);
    fflush(stdout);
}

/* Read one line from fd 0 with raw read(2) (no stdio buffering, no heap
 * allocation).  Returns the line without the newline in buf.  EOF before any
 * byte is a failure ("no go"). */
static ZOO_UNUSED void zoo_read_line(char *buf, size_t size)
{
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(0, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            zoo_fail("read stdin: %s", strerror(errno));
        if (r == 0) {
            if (n == 0)
                zoo_fail("no go (EOF on stdin)");
            break;
        }
        if (c == '\n')
            break;
        if (n + 1 < size)
            buf[n++] = c;
    }
    buf[n] = '\0';
}

/* Print READY and wait for the go line. */
static ZOO_UNUSED void zoo_wait_go(void)
{
    char line[64];
    zoo_ready();
    zoo_read_line(line, sizeof line);
}

static ZOO_UNUSED void zoo_done(void)
{
    fputs("DONE\n", stdout);
    fflush(stdout);
    exit(0);
}

/* Deterministic pattern generator (xorshift64*). */
static ZOO_UNUSED uint64_t zoo_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Fill buf with a pattern depending on seed. */
static ZOO_UNUSED void zoo_fill(void *buf, size_t len, uint64_t seed)
{
    unsigned char *p = buf;
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v = zoo_rand(&s);
        memcpy(p + i, &v, 8);
    }
    if (i < len) {
        uint64_t v = zoo_rand(&s);
        memcpy(p + i, &v, len - i);
    }
}

/* Returns 1 if buf holds exactly the pattern zoo_fill(seed) wrote. */
static ZOO_UNUSED int zoo_check_fill(const void *buf, size_t len, uint64_t seed)
{
    const unsigned char *p = buf;
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v = zoo_rand(&s);
        if (memcmp(p + i, &v, 8) != 0)
            return 0;
    }
    if (i < len) {
        uint64_t v = zoo_rand(&s);
        if (memcmp(p + i, &v, len - i) != 0)
            return 0;
    }
    return 1;
}

/* FNV-1a 64-bit checksum. */
static ZOO_UNUSED uint64_t zoo_fnv(const void *buf, size_t len, uint64_t h)
{
    const unsigned char *p = buf;
    if (h == 0)
        h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Directory for temporary files: $THAW_TEST_TMP or /tmp. */
static ZOO_UNUSED const char *zoo_tmpdir(void)
{
    const char *d = getenv("THAW_TEST_TMP");
    return (d && *d) ? d : "/tmp";
}

/* Create a fresh private directory under zoo_tmpdir(); path written to out. */
/* *a set to the unix socket address of path; its length, NUL included. */
static ZOO_UNUSED socklen_t zoo_unix_addr(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    CHECK(strlen(path) < sizeof a->sun_path, "path too long: %s", path);
    strcpy(a->sun_path, path);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

static ZOO_UNUSED void zoo_mkdtemp(char *out, size_t size, const char *tag)
{
    int n = snprintf(out, size, "%s/thaw-zoo-%s-XXXXXX", zoo_tmpdir(), tag);
    CHECK(n > 0 && (size_t)n < size, "tmp path too long");
    CHECK_SYS(mkdtemp(out) != NULL, "mkdtemp");
}

#endif
