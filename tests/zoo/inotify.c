/* inotify: an instance watching a directory and two files in it, the watch
 * on the first file removed again (so the watch numbers have a gap),
 * nonblocking, nothing queued.  After the go: events carry the old watch
 * numbers, the removed watch stays removed, and a new watch gets the number
 * after the last one given, as it would have without the checkpoint. */
#include "zoo.h"
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>

static void touch(const char *path, const char *data)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0600);
    CHECK_SYS(fd >= 0, "open");
    CHECK_SYS(write(fd, data, strlen(data)) == (ssize_t)strlen(data), "write");
    close(fd);
}

int main(void)
{
    char line[64], dir[4096], a[4200], b[4200], created[4200];
    zoo_mkdtemp(dir, sizeof dir, "inotify");
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(created, sizeof created, "%s/new-file", dir);
    touch(a, "a");
    touch(b, "b");
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    CHECK_SYS(in >= 0, "inotify_init1");
    int wd_dir = inotify_add_watch(in, dir, IN_CREATE | IN_DELETE);
    int wd_a = inotify_add_watch(in, a, IN_MODIFY);
    int wd_b = inotify_add_watch(in, b, IN_MODIFY | IN_CLOSE_WRITE);
    CHECK_SYS(wd_dir >= 0 && wd_a >= 0 && wd_b >= 0, "inotify_add_watch");
    CHECK_SYS(inotify_rm_watch(in, wd_a) == 0, "inotify_rm_watch");
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (read(in, buf, sizeof buf) > 0) /* the removal's IN_IGNORED */
        ;

    zoo_ready();
    zoo_read_line(line, sizeof line);

    CHECK(read(in, buf, sizeof buf) < 0 && errno == EAGAIN, "an inotify event before any change");
    touch(created, "new");
    touch(b, "more");
    touch(a, "not watched any more");
    int wd_new = inotify_add_watch(in, created, IN_ATTRIB);
    CHECK_SYS(wd_new >= 0, "inotify_add_watch after the go");
    printf("watches %d %d (removed %d), new one %d\n", wd_dir, wd_b, wd_a, wd_new);
    CHECK_SYS(chmod(created, 0640) == 0, "chmod");
    ssize_t n = read(in, buf, sizeof buf);
    CHECK_SYS(n > 0, "read inotify");
    for (char *p = buf; p < buf + n;) {
        struct inotify_event *ev = (struct inotify_event *)p;
        printf("event wd %d mask 0x%x name '%s'\n", ev->wd, ev->mask, ev->len ? ev->name : "");
        p += sizeof *ev + ev->len;
    }
    unlink(created);
    unlink(a);
    unlink(b);
    rmdir(dir);
    zoo_done();
}
