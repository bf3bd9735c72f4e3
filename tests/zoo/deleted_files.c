/* deleted_files: files of a disk filesystem deleted while in use, as an
 * anonymous temporary file (tempfile.TemporaryFile) is.
 *   fd t:  open, 3 pages written, offset at 5, deleted; a dup of it (t2)
 *          shares the offset.
 *   fd s:  open and mapped shared (one object through both), deleted.
 *   map p: mapped privately, one page changed in the mapping only, deleted
 *          and its fd closed: the mapping alone holds it.
 *   fd o:  an O_PATH fd (no file position) of a file deleted since, the
 *          only hold on it.
 * After the go, each must be the same file as before: its content, offset,
 * size, no link, and the shared mapping and its fd one object. Their
 * directory stays until the end (a restore makes them there again). */
#include "zoo.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096

static int make(const char *dir, const char *name, char fill, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    CHECK_SYS(fd >= 0, "open");
    char page[PAGE];
    for (int i = 0; i < 3; i++) {
        memset(page, fill + i, sizeof page);
        CHECK_SYS(write(fd, page, sizeof page) == PAGE, "write");
    }
    return fd;
}

int main(void)
{
    char line[64], dir[4096], tp[4200], sp[4200], pp[4200], op[4200];
    zoo_mkdtemp(dir, sizeof dir, "deleted");
    int t = make(dir, "temp", 'a', tp, sizeof tp);
    CHECK_SYS(lseek(t, 5, SEEK_SET) == 5, "lseek");
    int t2 = dup(t);
    int s = make(dir, "shared", 'k', sp, sizeof sp);
    char *sm = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
    CHECK_SYS(sm != MAP_FAILED, "mmap shared");
    sm[PAGE] = 'S';
    int pf = make(dir, "private", 'p', pp, sizeof pp);
    char *pm = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, pf, 0);
    CHECK_SYS(pm != MAP_FAILED, "mmap private");
    pm[2 * PAGE + 7] = 'P';
    close(pf);
    close(make(dir, "path", 'o', op, sizeof op));
    int o = open(op, O_PATH | O_CLOEXEC);
    CHECK_SYS(o >= 0, "open O_PATH");
    CHECK_SYS(unlink(tp) == 0 && unlink(sp) == 0 && unlink(pp) == 0 && unlink(op) == 0, "unlink");

    zoo_ready();
    zoo_read_line(line, sizeof line);

    struct stat st;
    CHECK_SYS(fstat(t, &st) == 0, "fstat");
    printf("temp: %lld bytes, %d links, at %lld\n", (long long)st.st_size, (int)st.st_nlink,
           (long long)lseek(t2, 0, SEEK_CUR));
    char buf[8] = {0};
    CHECK_SYS(read(t, buf, 3) == 3, "read temp");
    printf("temp reads '%s', then at %lld through its dup\n", buf, (long long)lseek(t2, 0, SEEK_CUR));
    CHECK_SYS(pwrite(t, "zz", 2, 3 * PAGE) == 2, "append to temp");
    CHECK_SYS(fstat(t2, &st) == 0, "fstat dup");
    printf("temp grows to %lld bytes\n", (long long)st.st_size);

    CHECK_SYS(pread(s, buf, 1, PAGE) == 1, "pread shared");
    printf("shared: fd reads '%c' (written through the mapping)\n", buf[0]);
    CHECK_SYS(pwrite(s, "W", 1, 2 * PAGE) == 1, "pwrite shared");
    printf("shared: mapping reads '%c' (written through the fd), '%c' '%c'\n", sm[2 * PAGE], sm[0], sm[PAGE + 1]);

    printf("private: '%c' '%c' '%c' '%c'\n", pm[0], pm[PAGE], pm[2 * PAGE], pm[2 * PAGE + 7]);

    CHECK_SYS(fstat(o, &st) == 0, "fstat O_PATH");
    char via[64];
    snprintf(via, sizeof via, "/proc/self/fd/%d", o);
    int r = open(via, O_RDONLY | O_CLOEXEC);
    CHECK_SYS(r >= 0 && pread(r, buf, 1, PAGE) == 1, "read through the O_PATH fd");
    printf("path: %lld bytes, %d links, reads '%c'\n", (long long)st.st_size, (int)st.st_nlink, buf[0]);
    rmdir(dir); /* gone already where a test removed it */
    zoo_done();
}
