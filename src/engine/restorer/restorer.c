/* The restorer: runs inside the process being restored, after thaw has set
 * up fds and process attributes, and turns thaw's address space into the
 * image's. It is freestanding (no libc: libc is what it unmaps), and ends
 * with every thread parked in a futex wait for thaw to load its registers
 * through ptrace and unmap this code. */
#include <asm/unistd.h>
#include <linux/futex.h>
#include <linux/mman.h>
#include <linux/prctl.h>
#include <linux/sched.h>
#include <stddef.h>
#include <stdint.h>

#include "common/xxh3.h"
#include "engine/restorer/restorer.h"

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
#ifndef MADV_DONTFORK
#define MADV_DONTFORK 10
#define MADV_DONTDUMP 16
#define MADV_HUGEPAGE 14
#define MADV_NOHUGEPAGE 15
#define MADV_WIPEONFORK 18
#define MADV_MERGEABLE 12
#endif

static long sys6(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  long ret;
  register long r10 __asm__("r10") = a4;
  register long r8 __asm__("r8") = a5;
  register long r9 __asm__("r9") = a6;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#define sys1(n, a) sys6(n, (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6(n, (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e) sys6(n, (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* clone3 for a thread on its own stack: the child cannot return through the
 * parent's frames, so it calls fn(arg) and exits right here. */
long rst_clone_thread(struct clone_args* ca, uint64_t size, void (*fn)(void*), void* arg);
__asm__(
    ".text\n"
    ".globl rst_clone_thread\n"
    ".type rst_clone_thread,@function\n"
    "rst_clone_thread:\n"
    "  mov %rdx, %r8\n"
    "  mov %rcx, %r9\n"
    "  mov $435, %eax\n"
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jnz 1f\n"
    "  xor %ebp, %ebp\n"
    "  and $-16, %rsp\n"
    "  mov %r9, %rdi\n"
    "  call *%r8\n"
    "  mov $60, %eax\n"
    "  xor %edi, %edi\n"
    "  syscall\n"
    "  ud2\n"
    "1: ret\n");

/* The compiler may emit calls to these for struct copies and zeroing. */
void* memset(void* d, int c, size_t n) {
  unsigned char* p = (unsigned char*)d;
  while (n--) *p++ = (unsigned char)c;
  return d;
}
void* memcpy(void* d, const void* s, size_t n) {
  unsigned char* p = (unsigned char*)d;
  const unsigned char* q = (const unsigned char*)s;
  while (n--) *p++ = *q++;
  return d;
}

static char* put_str(char* p, const char* s) {
  while (*s) *p++ = *s++;
  return p;
}

static char* put_hex(char* p, uint64_t v) {
  char tmp[16];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  *p++ = '0';
  *p++ = 'x';
  while (n) *p++ = tmp[--n];
  return p;
}

static char* put_dec(char* p, long v) {
  char tmp[24];
  int n = 0;
  if (v < 0) {
    *p++ = '-';
    v = -v;
  }
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

/* Tells thaw what went wrong, then exits: by now thaw's own code is gone,
 * so there is nothing to fall back to inside this process. */
static __attribute__((noreturn)) void die(struct rst_args* a, const char* what, uint64_t addr, long err) {
  char buf[256];
  char* p = put_str(buf, "E");
  p = put_str(p, what);
  p = put_str(p, " at ");
  p = put_hex(p, addr);
  if (err) {
    p = put_str(p, " (errno ");
    p = put_dec(p, -err);
    p = put_str(p, ")");
  }
  *p++ = '\n';
  sys3(__NR_write, a->status_fd, buf, p - buf);
  for (;;) sys1(__NR_exit_group, 70);
}

#define ARR(a, type, off) ((type*)((char*)(a) + (a)->off))

/* The kernel's struct flock on x86-64. */
struct rst_flock {
  int16_t l_type, l_whence;
  int64_t l_start, l_len;
  int32_t l_pid, pad;
};
#define RST_F_SETLK 6

static void take_posix_locks(struct rst_args* a) {
  struct rst_lock* locks = ARR(a, struct rst_lock, locks_off);
  for (uint32_t i = 0; i < a->nr_locks; i++) {
    struct rst_flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = locks[i].type;
    fl.l_start = locks[i].start;
    fl.l_len = locks[i].len;
    long r = sys3(__NR_fcntl, locks[i].fd, RST_F_SETLK, &fl);
    if (r) die(a, "take a POSIX lock again (a process took a conflicting one since thaw checked): fd", (uint64_t)locks[i].fd, r);
  }
}

/* Reads a segment in chunks of a few hash blocks and checks each chunk
 * while it is still in the cache: hashing the whole segment after reading
 * it would read it back from memory (a sixth of an eager restore). */
#define RST_FILL_CHUNK (4 * RST_HASH_BLOCK)
static void fill_segment(struct rst_args* a, const struct rst_seg* s) {
  const uint64_t* hashes = ARR(a, uint64_t, hashes_off) + s->first_hash;
  for (uint64_t at = 0; at < s->len; at += RST_FILL_CHUNK) {
    uint64_t len = s->len - at < RST_FILL_CHUNK ? s->len - at : RST_FILL_CHUNK;
    uint64_t done = 0;
    while (done < len) {
      long n = sys4(__NR_pread64, a->pages_fd, s->addr + at + done, len - done, s->off + at + done);
      if (n == -4 /* EINTR */) continue;
      if (n <= 0) die(a, "read page data", s->addr + at + done, n < 0 ? n : -5);
      done += (uint64_t)n;
    }
    for (uint64_t b = at; b < at + len; b += RST_HASH_BLOCK) {
      uint64_t n = s->len - b < RST_HASH_BLOCK ? s->len - b : RST_HASH_BLOCK;
      uint64_t h = a->hash_avx2 ? thaw_xxh3_avx2((const void*)(s->addr + b), n) : thaw_xxh3((const void*)(s->addr + b), n);
      if (h != hashes[b / RST_HASH_BLOCK])
        die(a, "page data checksum mismatch (corrupt image)", s->addr + b, 0);
    }
  }
}

/* Gives an anonymous mapping an anon_vma of its own: the kernel never
 * merges two mappings with different ones. The page touched is dropped
 * again, so it reads as zero like any untouched page. */
static void own_anon_vma(struct rst_args* a, uint64_t addr) {
  *(volatile char*)addr = 0;
  long r = sys3(__NR_madvise, addr, 4096, 4 /* MADV_DONTNEED */);
  if (r) die(a, "madvise(MADV_DONTNEED)", addr, r);
}

static void map_vma(struct rst_args* a, const struct rst_vma* v, const struct rst_vma* below) {
  uint64_t len = v->end - v->start;
  if (v->inherit_from) {
    /* Moved, not copied: the pages stay shared with the tree's other
     * processes, as a fork had left them. */
    long r = sys5(__NR_mremap, v->inherit_from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, v->start);
    if (r != (long)v->start) die(a, "mremap (memory shared with the tree)", v->start, r);
    struct rst_range* zeros = ARR(a, struct rst_range, zeros_off) + v->first_zero;
    for (uint32_t i = 0; i < v->nr_zeros; i++) {
      r = sys3(__NR_madvise, zeros[i].addr, zeros[i].len, 4 /* MADV_DONTNEED */);
      if (r) die(a, "madvise(MADV_DONTNEED) (memory shared with the tree)", zeros[i].addr, r);
    }
    return;
  }
  int prot = v->prot;
  if (v->nr_segs || v->separate) prot |= PROT_READ | PROT_WRITE;
  if (v->separate) {
    /* Two neighbours the process kept apart (each had its own anon_vma)
     * would be merged into one mapping if created in place: create this one
     * elsewhere with its own anon_vma and move it next to the other. */
    if (below->nr_segs == 0 && !below->inherit_from && (below->prot & PROT_WRITE)) own_anon_vma(a, below->start);
    long tmp = sys6(__NR_mmap, 0, len, prot, v->flags, -1, 0);
    if (tmp < 0) die(a, "mmap (to keep mappings apart)", v->start, tmp);
    own_anon_vma(a, (uint64_t)tmp);
    long r = sys5(__NR_mremap, tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, v->start);
    if (r != (long)v->start) die(a, "mremap (to keep mappings apart)", v->start, r);
  } else {
    long addr = sys6(__NR_mmap, v->start, len, prot, v->flags | MAP_FIXED, v->fd, v->pgoff);
    if (addr != (long)v->start) die(a, "mmap", v->start, addr < 0 ? addr : -22);
  }
  /* In this VM, getting fresh memory from the host dominates a restore:
   * huge pages cut the number of faults 512-fold. */
  if (v->fill_huge) sys3(__NR_madvise, v->start, len, MADV_HUGEPAGE);
}

static void finish_vma(struct rst_args* a, const struct rst_vma* v) {
  /* A moved mapping has the staging area's protection, read-write only. */
  int was = v->inherit_from ? PROT_READ | PROT_WRITE : (v->nr_segs || v->separate) ? v->prot | PROT_READ | PROT_WRITE : v->prot;
  if (was != v->prot) {
    long r = sys3(__NR_mprotect, v->start, v->end - v->start, v->prot);
    if (r) die(a, "mprotect", v->start, r);
  }
  static const struct {
    uint32_t bit;
    int advice;
  } madv[] = {{1, MADV_DONTFORK}, {2, MADV_DONTDUMP}, {4, MADV_HUGEPAGE},
              {8, MADV_NOHUGEPAGE}, {16, MADV_WIPEONFORK}, {32, MADV_MERGEABLE}};
  for (unsigned i = 0; i < sizeof madv / sizeof madv[0]; i++)
    if (v->madv & madv[i].bit) sys3(__NR_madvise, v->start, v->end - v->start, madv[i].advice);
  if (v->anon_name[0])
    sys5(__NR_prctl, PR_SET_VMA, PR_SET_VMA_ANON_NAME, v->start, v->end - v->start, v->anon_name);
  if (v->madv & 64 /* image::kLocked */) {
    long r = sys2(__NR_mlock, v->start, v->end - v->start);
    if (r) die(a, "mlock", v->start, r);
  }
}

/* Every filling thread takes the next segment until none is left. */
static void fill_worker(struct rst_args* a) {
  const struct rst_seg* segs = ARR(a, struct rst_seg, segs_off);
  for (;;) {
    uint32_t i = __atomic_fetch_add(&a->next_seg, 1, __ATOMIC_RELAXED);
    if (i >= a->nr_segs) return;
    fill_segment(a, &segs[i]);
  }
}

static void filler_main(void* arg) { fill_worker((struct rst_args*)arg); }

static void fill_memory(struct rst_args* a) {
  for (uint32_t k = 0; k < a->nr_fillers; k++) {
    int64_t tid = a->filler_tids[k];
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
               CLONE_CHILD_CLEARTID;
    ca.child_tid = (uint64_t)&a->filler_alive[k];
    ca.stack = a->filler_stack_tops[k] - RST_STACK_BYTES;
    ca.stack_size = RST_STACK_BYTES - 64;
    ca.set_tid = (uint64_t)&tid;
    ca.set_tid_size = 1;
    a->filler_alive[k] = 1;
    if (rst_clone_thread(&ca, sizeof ca, filler_main, a) < 0) a->filler_alive[k] = 0; /* fill with fewer */
  }
  fill_worker(a);
  /* The kernel clears filler_alive[k] and wakes us when filler k is gone. */
  for (uint32_t k = 0; k < a->nr_fillers; k++)
    while (__atomic_load_n(&a->filler_alive[k], __ATOMIC_SEQ_CST))
      sys6(__NR_futex, (long)&a->filler_alive[k], FUTEX_WAIT, 1, 0, 0, 0);
}

struct kernel_stack {
  uint64_t ss_sp;
  int32_t ss_flags;
  int32_t pad;
  uint64_t ss_size;
};

static void restore_thread_state(struct rst_args* a, const struct rst_thread* t) {
  if (t->robust_head) sys2(__NR_set_robust_list, t->robust_head, t->robust_len);
  sys1(__NR_set_tid_address, t->clear_tid);
  if (t->altstack_sp || t->altstack_flags) {
    struct kernel_stack ss = {t->altstack_sp, t->altstack_flags & ~1 /* SS_ONSTACK is a state */, 0,
                              t->altstack_size};
    long r = sys2(__NR_sigaltstack, &ss, 0);
    if (r) die(a, "sigaltstack", t->altstack_sp, r);
  }
  if (t->rseq_ptr) {
    long r = sys4(__NR_rseq, t->rseq_ptr, t->rseq_len, 0, t->rseq_sig);
    if (r) die(a, "rseq registration", t->rseq_ptr, r);
  }
  if (t->comm[0]) sys2(__NR_prctl, PR_SET_NAME, t->comm);
  if (a->set_creds) {
    /* Credentials are per thread in the kernel: each thread sets its own. */
    long r = sys2(__NR_setgroups, a->nr_groups, a->groups);
    if (!r) r = sys3(__NR_setresgid, a->gids[0], a->gids[1], a->gids[2]);
    if (!r) r = sys3(__NR_setresuid, a->uids[0], a->uids[1], a->uids[2]);
    if (r) die(a, "set credentials", 0, r);
    sys1(__NR_setfsgid, a->gids[3]);
    sys1(__NR_setfsuid, a->uids[3]);
  }
  /* After the credentials: a change of them clears the death signal. */
  if (t->timer_slack_ns) {
    long r = sys2(__NR_prctl, PR_SET_TIMERSLACK, t->timer_slack_ns);
    if (r) die(a, "prctl(PR_SET_TIMERSLACK)", t->timer_slack_ns, r);
  }
  if (t->keep_caps) {
    long r = sys2(__NR_prctl, PR_SET_KEEPCAPS, 1);
    if (r) die(a, "prctl(PR_SET_KEEPCAPS)", 1, r);
  }
  if (t->pdeath_signal) {
    long r = sys2(__NR_prctl, PR_SET_PDEATHSIG, t->pdeath_signal);
    if (r) die(a, "prctl(PR_SET_PDEATHSIG)", (uint64_t)t->pdeath_signal, r);
  }
  /* Signals pending for this thread alone. The kernel lets only the thread
   * itself queue one with a kill-like si_code (tgkill, pthread_kill) for a
   * thread (rt_tgsigqueueinfo: EPERM from any other), so each queues its
   * own; every signal is blocked until thaw sets the real masks. */
  struct rst_siginfo* sigs = ARR(a, struct rst_siginfo, sigs_off);
  int32_t tgid = ARR(a, struct rst_thread, threads_off)[0].tid;
  for (uint32_t i = 0; i < a->nr_sigs; i++) {
    if (sigs[i].tid != t->tid) continue;
    long q = sys4(__NR_rt_tgsigqueueinfo, tgid, t->tid, sigs[i].signo, sigs[i].info);
    if (q) die(a, "queue a signal pending for thread (signal number, error)", (uint64_t)sigs[i].signo, q);
  }
}

static void restore_posix_timers(struct rst_args* a) {
  if (!a->nr_timers) return;
  struct rst_timer* timers = ARR(a, struct rst_timer, timers_off);
  /* PR_TIMER_CREATE_RESTORE_IDS: timer_create takes the id it is given. */
  long r = sys2(__NR_prctl, 77, 1);
  if (r) die(a, "prctl(PR_TIMER_CREATE_RESTORE_IDS) (kernel too old for POSIX timers)", 0, r);
  for (uint32_t i = 0; i < a->nr_timers; i++) {
    struct rst_timer* t = &timers[i];
    struct {
      uint64_t value;
      int32_t signo, notify, tid;
      int32_t pad[11];
    } ev;
    memset(&ev, 0, sizeof ev);
    ev.value = t->sigval;
    ev.signo = t->signo;
    ev.notify = t->notify;
    ev.tid = t->tid;
    int32_t id = t->id;
    r = sys3(__NR_timer_create, t->clock, &ev, &id);
    if (r || id != t->id) die(a, "timer_create with id", (uint64_t)t->id, r ? r : -17);
    struct {
      int64_t isec, insec, vsec, vnsec;
    } spec = {t->interval_ns / 1000000000, t->interval_ns % 1000000000, t->value_ns / 1000000000,
              t->value_ns % 1000000000};
    if (spec.vsec || spec.vnsec) {
      r = sys4(__NR_timer_settime, id, 0, &spec, 0);
      if (r) die(a, "timer_settime", (uint64_t)id, r);
    }
  }
  sys2(__NR_prctl, 77, 0);
}

static __attribute__((noreturn)) void park(struct rst_args* a) {
  /* thaw takes the thread over from here with PTRACE_INTERRUPT. */
  for (;;) sys6(__NR_futex, (long)&a->park, FUTEX_WAIT, 0, 0, 0, 0);
}

static void thread_main(void* arg) {
  struct rst_thread* t = (struct rst_thread*)arg;
  /* The parent left the args pointer at the top of this thread's stack. */
  struct rst_args* a = *(struct rst_args**)(t->stack_top - 16);
  restore_thread_state(a, t);
  __atomic_add_fetch(&a->threads_ready, 1, __ATOMIC_SEQ_CST);
  sys6(__NR_futex, (long)&a->threads_ready, FUTEX_WAKE, 1, 0, 0, 0);
  park(a);
}

static uint64_t now_ns(void) {
  struct {
    int64_t sec, nsec;
  } ts;
  sys2(__NR_clock_gettime, 1 /* CLOCK_MONOTONIC */, &ts);
  return (uint64_t)ts.sec * 1000000000ull + (uint64_t)ts.nsec;
}

void restorer_main(struct rst_args* a) {
  if (a->magic != RST_MAGIC) sys1(__NR_exit_group, 71);
  uint64_t t_start = now_ns();
  struct rst_remap* remaps = ARR(a, struct rst_remap, remaps_off);
  for (uint32_t i = 0; i < a->nr_remaps; i++) {
    long r = sys5(__NR_mremap, remaps[i].from, remaps[i].len, remaps[i].len, MREMAP_MAYMOVE | MREMAP_FIXED,
                  remaps[i].park);
    if (r != (long)remaps[i].park) die(a, "park vdso", remaps[i].from, r);
  }
  /* Everything of thaw's goes: only this region survives, and a tree's
   * staging area until its pages are moved into place. */
  uint64_t keep[2][2] = {{a->region_start, a->region_end}, {a->stage_start, a->stage_end}};
  if (a->stage_start && a->stage_start < a->region_start) {
    keep[0][0] = a->stage_start, keep[0][1] = a->stage_end;
    keep[1][0] = a->region_start, keep[1][1] = a->region_end;
  }
  uint64_t at = 0;
  for (int k = 0; k < 2; k++) {
    if (keep[k][0] == keep[k][1]) continue;
    if (keep[k][0] > at) sys2(__NR_munmap, at, keep[k][0] - at);
    at = keep[k][1];
  }
  sys2(__NR_munmap, at, a->task_size - at);

  struct rst_vma* vmas = ARR(a, struct rst_vma, vmas_off);
  for (uint32_t i = 0; i < a->nr_vmas; i++) map_vma(a, &vmas[i], i ? &vmas[i - 1] : 0);
  if (a->stage_end > a->stage_start) sys2(__NR_munmap, a->stage_start, a->stage_end - a->stage_start);
  fill_memory(a);
  for (uint32_t i = 0; i < a->nr_vmas; i++) finish_vma(a, &vmas[i]);

  uint64_t t_memory = now_ns();
  for (uint32_t i = 0; i < a->nr_remaps; i++) {
    long r = sys5(__NR_mremap, remaps[i].park, remaps[i].len, remaps[i].len, MREMAP_MAYMOVE | MREMAP_FIXED,
                  remaps[i].to);
    if (r != (long)remaps[i].to) die(a, "move vdso", remaps[i].to, r);
  }

  a->mm.auxv_ptr = (uint64_t)a + a->auxv_off;
  long r = sys4(__NR_prctl, PR_SET_MM, PR_SET_MM_MAP, &a->mm, sizeof a->mm);
  if (r) die(a, "prctl(PR_SET_MM_MAP)", a->mm.start_brk, r);

  int32_t* closes = ARR(a, int32_t, close_off);
  for (uint32_t i = 0; i < a->nr_close; i++) sys1(__NR_close, closes[i]);
  sys1(__NR_close, a->pages_fd);
  take_posix_locks(a);

  struct rst_thread* threads = ARR(a, struct rst_thread, threads_off);
  for (uint32_t i = 1; i < a->nr_threads; i++) {
    struct rst_thread* t = &threads[i];
    *(struct rst_args**)(t->stack_top - 16) = a;
    int64_t tid = t->tid;
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    ca.stack = t->stack_top - RST_STACK_BYTES;
    ca.stack_size = RST_STACK_BYTES - 64;
    ca.set_tid = (uint64_t)&tid;
    ca.set_tid_size = 1;
    long c = rst_clone_thread(&ca, sizeof ca, thread_main, t);
    if (c < 0) die(a, "clone3 thread with tid", (uint64_t)tid, c);
  }
  restore_thread_state(a, &threads[0]);
  for (;;) {
    int32_t ready = __atomic_load_n(&a->threads_ready, __ATOMIC_SEQ_CST);
    if (ready >= (int32_t)a->nr_threads - 1) break;
    sys6(__NR_futex, (long)&a->threads_ready, FUTEX_WAIT, ready, 0, 0, 0);
  }

  /* Every thread has its credentials now; each change of them made the
   * process dumpable (or not) by the kernel's rule, not by its choice. */
  if (a->dumpable >= 0) {
    r = sys2(__NR_prctl, PR_SET_DUMPABLE, a->dumpable);
    if (r) die(a, "prctl(PR_SET_DUMPABLE)", (uint64_t)a->dumpable, r);
  }
  restore_posix_timers(a);

  /* Pending signals are queued while every signal is still blocked; thaw
   * sets the real masks last, and they are delivered when the threads run. */
  struct rst_siginfo* sigs = ARR(a, struct rst_siginfo, sigs_off);
  for (uint32_t i = 0; i < a->nr_sigs; i++) {
    if (sigs[i].tid) continue; /* queued by its thread (restore_thread_state) */
    long q = sys3(__NR_rt_sigqueueinfo, threads[0].tid, sigs[i].signo, sigs[i].info);
    if (q) die(a, "queue a signal pending for the process (signal number, error)", (uint64_t)sigs[i].signo, q);
  }

  /* "R <region start> <region end> <ns in memory> <ns in the rest>": thaw
   * unmaps exactly this range, and reports the times when asked. */
  uint64_t t_end = now_ns();
  char msg[128];
  char* p = put_str(msg, "R ");
  p = put_hex(p, a->region_start);
  *p++ = ' ';
  p = put_hex(p, a->region_end);
  *p++ = ' ';
  p = put_dec(p, (long)(t_memory - t_start));
  *p++ = ' ';
  p = put_dec(p, (long)(t_end - t_memory));
  *p++ = '\n';
  sys3(__NR_write, a->status_fd, msg, p - msg);
  sys1(__NR_close, a->status_fd);
  park(a);
}
