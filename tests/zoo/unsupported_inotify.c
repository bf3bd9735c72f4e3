/* unsupported_inotify: holds an inotify instance watching a directory.  thaw
 * does not support inotify: checkpoint must fail with a message mentioning
 * inotify and leave this process running; the watch still works after "go". */
#include "zoo.h"
#include <fcntl.h>
#include <sys/inotify.h>

int main(void)
{
    char line[64], dir[4096], path[4200];
    zoo_mkdtemp(dir, sizeof dir, "inotify");
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    CHECK_SYS(in >= 0, "inotify_init1");
    int wd = inotify_add_watch(in, dir, IN_CREATE);
    CHECK_SYS(wd >= 0, "inotify_add_watch");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    /* the checkpoint attempt did not disturb the watch */
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    CHECK(read(in, buf, sizeof buf) < 0 && errno == EAGAIN, "inotify event before any change");
    snprintf(path, sizeof path, "%s/new-file", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    CHECK_SYS(fd >= 0, "create file");
    close(fd);
    ssize_t n = read(in, buf, sizeof buf);
    CHECK_SYS(n > 0, "read inotify");
    struct inotify_event *ev = (struct inotify_event *)buf;
    CHECK(ev->wd == wd && (ev->mask & IN_CREATE) && strcmp(ev->name, "new-file") == 0,
          "unexpected inotify event");
    printf("inotify watch ok\n");
    unlink(path);
    rmdir(dir);
    zoo_done();
}
