/* shm_named: named files of /dev/shm, which live in memory only: a shared
 * memory object (shm_open) of 1 MiB and a page, mapped shared, mode 0640;
 * a second one held only by an fd at an offset; a named semaphore
 * (sem_open) of value 1.  After the go the program takes the semaphore
 * (sem_trywait: a restore sharing it with another that took it first would
 * find it taken), checks the objects' content, writes in them, then waits
 * for a second line (or EOF) before it gives the semaphore back and removes
 * the names, as a program does at its end.  The names carry the pid, which
 * a restore keeps. */
#include "zoo.h"

#include <fcntl.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define BIG (1024 * 1024 + 4096)

int main(void)
{
    char big_name[64], small_name[64], sem_name[64];
    int pid = (int)getpid();
    snprintf(big_name, sizeof big_name, "/thaw-zoo-shm-big-%d", pid);
    snprintf(small_name, sizeof small_name, "/thaw-zoo-shm-small-%d", pid);
    snprintf(sem_name, sizeof sem_name, "/thaw-zoo-shm-sem-%d", pid);

    int fd = shm_open(big_name, O_RDWR | O_CREAT | O_EXCL, 0640);
    CHECK_SYS(fd >= 0, "shm_open big");
    CHECK_SYS(fchmod(fd, 0640) == 0, "fchmod big");  /* whatever the umask */
    CHECK_SYS(ftruncate(fd, BIG) == 0, "ftruncate big");
    unsigned char *big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK_SYS(big != MAP_FAILED, "mmap big");
    close(fd);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (unsigned char)(i * 7 + 1);

    int small = shm_open(small_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK_SYS(small >= 0, "shm_open small");
    const char text[] = "hello named shm";
    CHECK_SYS(write(small, text, sizeof text - 1) == (ssize_t)(sizeof text - 1), "write small");
    CHECK_SYS(lseek(small, 6, SEEK_SET) == 6, "seek small");

    sem_t *s = sem_open(sem_name, O_CREAT | O_EXCL, 0600, 1);
    CHECK_SYS(s != SEM_FAILED, "sem_open");

    zoo_wait_go();
    printf("semaphore: %s\n", sem_trywait(s) == 0 ? "taken" : "busy (shared with another)");
    fflush(stdout);
    unsigned long sum = 0;
    for (size_t i = 0; i < BIG; i++)
        sum += big[i] == (unsigned char)(i * 7 + 1);
    printf("big: %lu of %d bytes as written\n", sum, BIG);
    struct stat st;
    char path[96];
    snprintf(path, sizeof path, "/dev/shm%s", big_name);
    CHECK_SYS(stat(path, &st) == 0, "stat big by name");
    printf("big by name: mode %o, %lld bytes\n", (unsigned)(st.st_mode & 07777), (long long)st.st_size);
    char got[32] = {0};
    CHECK_SYS(read(small, got, sizeof got - 1) == 9, "read small");
    printf("small from offset 6: %s\n", got);
    big[0] = 0;
    fflush(stdout);

    /* A second line, or EOF: hold the semaphore until then. */
    char c;
    while (read(0, &c, 1) == 1 && c != '\n') {
    }
    CHECK_SYS(sem_post(s) == 0, "sem_post");
    CHECK_SYS(shm_unlink(big_name) == 0, "shm_unlink big");
    CHECK_SYS(shm_unlink(small_name) == 0, "shm_unlink small");
    CHECK_SYS(sem_unlink(sem_name) == 0, "sem_unlink");
    printf("names removed\n");
    zoo_done();
}
