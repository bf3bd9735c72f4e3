/* fpu: extended register state (x87, SSE, AVX, AVX-512 where available, MXCSR
 * and x87 control word) of two threads survives checkpoint/restore.
 *
 * Each thread loads known values into the vector/x87 registers and then, in
 * the same asm statement, issues a raw read(2) syscall that blocks; the
 * checkpoint happens while the values are live in the registers.  After the
 * syscall returns the registers are stored and compared. */
#include "zoo.h"
#include <fenv.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/syscall.h>

#define LD_X(n) "movdqu " #n "*16(%[in]), %%xmm" #n "\n\t"
#define ST_X(n) "movdqu %%xmm" #n ", " #n "*16(%[out])\n\t"
#define LD_Y(n) "vmovdqu " #n "*32(%[in]), %%ymm" #n "\n\t"
#define ST_Y(n) "vmovdqu %%ymm" #n ", " #n "*32(%[out])\n\t"
#define LD_Z(n) "vmovdqu64 " #n "*64(%[in]), %%zmm" #n "\n\t"
#define ST_Z(n) "vmovdqu64 %%zmm" #n ", " #n "*64(%[out])\n\t"
#define LD_K(n) "kmovw " #n "*2(%[kin]), %%k" #n "\n\t"
#define ST_K(n) "kmovw %%k" #n ", " #n "*2(%[kout])\n\t"
#define X16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) \
               M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define X32(M) X16(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) \
               M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)
#define X87_LOAD "fldl 0(%[fin])\n\tfldl 8(%[fin])\n\tfldl 16(%[fin])\n\t"
#define X87_STORE "fstpl 0(%[fout])\n\tfstpl 8(%[fout])\n\tfstpl 16(%[fout])\n\t"
#define XMM_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", \
        "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
#define XMM_HI_CLOBBERS "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", \
        "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", \
        "xmm30", "xmm31"
#define SYSCALL_READ "syscall\n\t"

enum { MODE_SSE, MODE_AVX, MODE_AVX512 };
static const char *mode_name[] = {"sse", "avx", "avx512"};

struct regs {
    unsigned char vec[32 * 64] __attribute__((aligned(64)));
    uint16_t k[8];
    double x87[3];
};

static long blocking_read_sse(int fd, char *buf, const struct regs *in, struct regs *out)
{
    long ret;
    __asm__ volatile(X87_LOAD X16(LD_X) SYSCALL_READ X16(ST_X) X87_STORE
                     : "=a"(ret)
                     : "a"((long)SYS_read), "D"((long)fd), "S"(buf), "d"(1L),
                       [in] "r"(in->vec), [out] "r"(out->vec),
                       [fin] "r"(in->x87), [fout] "r"(out->x87)
                     : "rcx", "r11", "memory", "st", "st(1)", "st(2)", XMM_CLOBBERS);
    return ret;
}

__attribute__((target("avx"))) static long
blocking_read_avx(int fd, char *buf, const struct regs *in, struct regs *out)
{
    long ret;
    __asm__ volatile(X87_LOAD X16(LD_Y) SYSCALL_READ X16(ST_Y) X87_STORE "vzeroupper\n\t"
                     : "=a"(ret)
                     : "a"((long)SYS_read), "D"((long)fd), "S"(buf), "d"(1L),
                       [in] "r"(in->vec), [out] "r"(out->vec),
                       [fin] "r"(in->x87), [fout] "r"(out->x87)
                     : "rcx", "r11", "memory", "st", "st(1)", "st(2)", XMM_CLOBBERS);
    return ret;
}

__attribute__((target("avx512f"))) static long
blocking_read_avx512(int fd, char *buf, const struct regs *in, struct regs *out)
{
    long ret;
    __asm__ volatile(X87_LOAD X32(LD_Z) LD_K(1) LD_K(2) LD_K(3) LD_K(4) LD_K(5)
                     LD_K(6) LD_K(7) SYSCALL_READ X32(ST_Z) ST_K(1) ST_K(2)
                     ST_K(3) ST_K(4) ST_K(5) ST_K(6) ST_K(7) X87_STORE "vzeroupper\n\t"
                     : "=a"(ret)
                     : "a"((long)SYS_read), "D"((long)fd), "S"(buf), "d"(1L),
                       [in] "r"(in->vec), [out] "r"(out->vec),
                       [fin] "r"(in->x87), [fout] "r"(out->x87),
                       [kin] "r"(in->k), [kout] "r"(out->k)
                     : "rcx", "r11", "memory", "st", "st(1)", "st(2)", XMM_CLOBBERS,
                       XMM_HI_CLOBBERS, "k1", "k2", "k3", "k4", "k5", "k6", "k7");
    return ret;
}

static int mode;
static int thread_pipe[2];
static sem_t thread_loaded;

struct check {
    const char *who;
    int seed;
    int round; /* FE_* rounding mode set by this thread */
    int fd;
    int ok_vec, ok_x87, ok_round;
};

static void run_check(struct check *c, char *buf)
{
    static __thread struct regs in, out;
    zoo_fill(in.vec, sizeof in.vec, c->seed);
    for (int i = 0; i < 8; i++)
        in.k[i] = (uint16_t)(0x1111 * (i + 1) + c->seed);
    in.x87[0] = 3.25 * c->seed;
    in.x87[1] = -1.0 / 3.0 + c->seed;
    in.x87[2] = 1e300 / c->seed;
    memset(&out, 0, sizeof out);
    CHECK(fesetround(c->round) == 0, "fesetround");

    long r;
    if (c->fd != 0)
        sem_post(&thread_loaded); /* just before loading: the thread is "ready" */
    else
        zoo_ready();
    do {
        if (mode == MODE_AVX512)
            r = blocking_read_avx512(c->fd, buf, &in, &out);
        else if (mode == MODE_AVX)
            r = blocking_read_avx(c->fd, buf, &in, &out);
        else
            r = blocking_read_sse(c->fd, buf, &in, &out);
    } while (r == -EINTR);
    CHECK(r == 1, "%s: raw read returned %ld", c->who, r);

    c->ok_round = fegetround() == c->round;
    fesetround(FE_TONEAREST);
    size_t vlen = mode == MODE_AVX512 ? 32 * 64 : mode == MODE_AVX ? 16 * 32 : 16 * 16;
    c->ok_vec = memcmp(in.vec, out.vec, vlen) == 0;
    if (mode == MODE_AVX512)
        c->ok_vec = c->ok_vec && memcmp(&in.k[1], &out.k[1], 7 * sizeof in.k[0]) == 0;
    /* fstp pops in reverse order of the loads */
    c->ok_x87 = out.x87[0] == in.x87[2] && out.x87[1] == in.x87[1] &&
                out.x87[2] == in.x87[0];
}

static struct check tcheck = {"thread", 7, FE_UPWARD, 0, 0, 0, 0};

static void *thread_fn(void *arg)
{
    (void)arg;
    char buf[4];
    tcheck.fd = thread_pipe[0];
    run_check(&tcheck, buf);
    return NULL;
}

static void report(const struct check *c)
{
    CHECK(c->ok_vec, "%s: %s registers corrupted", c->who, mode_name[mode]);
    printf("%s: %s registers ok\n", c->who, mode_name[mode]);
    CHECK(c->ok_x87, "%s: x87 registers corrupted", c->who);
    printf("%s: x87 registers ok\n", c->who);
    CHECK(c->ok_round, "%s: rounding mode (mxcsr/fpu cw) lost", c->who);
    printf("%s: rounding mode ok\n", c->who);
}

int main(void)
{
    pthread_t th;
    char buf[4], line[64];

    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        mode = MODE_AVX512;
    else if (__builtin_cpu_supports("avx"))
        mode = MODE_AVX;
    else
        mode = MODE_SSE;

    CHECK_SYS(pipe(thread_pipe) == 0, "pipe");
    CHECK_SYS(sem_init(&thread_loaded, 0, 0) == 0, "sem_init");
    CHECK(pthread_create(&th, NULL, thread_fn, NULL) == 0, "pthread_create");
    while (sem_wait(&thread_loaded) != 0)
        ;
    usleep(20000); /* let the thread reach its syscall */

    struct check mcheck = {"main", 3, FE_TOWARDZERO, 0, 0, 0, 0};
    run_check(&mcheck, buf); /* prints READY, blocks reading 1 byte of stdin */
    zoo_read_line(line, sizeof line); /* rest of the go line */

    CHECK(write(thread_pipe[1], "x", 1) == 1, "write thread pipe");
    CHECK(pthread_join(th, NULL) == 0, "pthread_join");
    report(&mcheck);
    report(&tcheck);
    zoo_done();
}
