/* The contract between thaw (C++) and the restorer blob (freestanding C):
 * one flat block of plain structs, copied into the restorer's own region of
 * the new process. Offsets are relative to the start of struct rst_args so
 * the block can be placed anywhere. */
#ifndef THAW_RESTORER_H
#define THAW_RESTORER_H
#include <stdint.h>

#define RST_MAGIC 0x7468617772737472ULL /* "thawrstr" */
#define RST_STACK_BYTES (64 * 1024)
#define RST_MAX_FILLERS 7
#define RST_HASH_BLOCK (64 * 1024) /* image::kHashBlock */

/* `len` bytes of page data at `off` in pages.img go to `addr`; their
 * per-block XXH3s start at hashes[first_hash]. */
struct rst_seg {
  uint64_t addr, len, off, first_hash;
};

struct rst_vma {
  uint64_t start, end, pgoff;
  int32_t prot, flags; /* final PROT_*, mmap MAP_* flags (without MAP_FIXED) */
  int32_t fd;          /* -1: anonymous */
  uint32_t madv;       /* image::MadvFlag bits */
  uint32_t fill_huge;  /* fill through transparent huge pages (large, dense, anonymous) */
  uint32_t separate;   /* keep apart from the mapping below, which the kernel would merge it into */
  uint32_t first_seg, nr_segs;
  /* Not 0: the mapping's pages are moved from here (a tree's staging area,
   * shared copy-on-write with the other processes), then ranges
   * zeros[first_zero, +nr_zeros) are emptied (MADV_DONTNEED: zeros, or a
   * file's own pages) and its segs read over it. */
  uint64_t inherit_from;
  uint32_t first_zero, nr_zeros;
  char anon_name[64];  /* PR_SET_VMA_ANON_NAME, "" for none */
};

struct rst_range {
  uint64_t addr, len;
};

struct rst_thread {
  int32_t tid;
  int32_t altstack_flags;
  uint64_t clear_tid, robust_head, robust_len;
  uint64_t rseq_ptr;
  uint32_t rseq_len, rseq_sig;
  uint64_t altstack_sp, altstack_size;
  char comm[16];
  uint64_t timer_slack_ns; /* 0: leave */
  int32_t keep_caps, pdeath_signal;
  uint64_t stack_top; /* the restorer's stack for this thread, in the region */
};

struct rst_siginfo {
  int32_t tid; /* 0: process-wide (shared pending) */
  int32_t signo;
  uint8_t info[128];
};

/* The vdso pieces ([vvar], [vvar_vclock], [vdso]) of the restoring process
 * are moved to `park` inside the region, then to `to`, where the image has
 * them. */
struct rst_remap {
  uint64_t from, park, to, len;
};

/* A POSIX timer, recreated with its old id once every thread exists. */
struct rst_timer {
  int32_t id, clock, signo, notify, tid;
  int32_t pad;
  uint64_t sigval;
  int64_t value_ns, interval_ns;
};

/* A POSIX record lock the process held, taken again once the restorer has
 * closed every fd of thaw's (a close of any fd of a file drops the
 * process's POSIX locks on it). type: F_RDLCK or F_WRLCK; len 0: to EOF. */
struct rst_lock {
  int32_t fd;
  int16_t type, pad;
  int64_t start, len;
};

struct rst_mm {
  uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
  uint64_t arg_start, arg_end, env_start, env_end;
  uint64_t auxv_ptr; /* filled in by the restorer: absolute address */
  uint32_t auxv_size;
  uint32_t exe_fd;
};

struct rst_args {
  uint64_t magic;
  uint64_t region_start, region_end, task_size;
  uint64_t stage_start, stage_end; /* kept until the mappings are in, then unmapped; 0, 0: none */
  int32_t pages_fd, status_fd;
  uint32_t nr_vmas, nr_segs, nr_threads, nr_sigs, nr_remaps, nr_close, nr_timers, nr_locks;
  uint64_t vmas_off, segs_off, threads_off, sigs_off, remaps_off, close_off, auxv_off, timers_off, hashes_off, zeros_off,
      locks_off;
  struct rst_mm mm;
  int32_t set_creds;
  int32_t dumpable; /* -1: leave; set once every thread has its credentials */
  int32_t hash_avx2; /* the CPU has AVX2: hash page data with it */
  uint32_t uids[4], gids[4];
  uint32_t nr_groups;
  uint32_t groups[64];
  /* Extra threads that fill memory alongside the main one, with tids no
   * thread of the image has; they exit before the image's threads exist. */
  uint32_t nr_fillers;
  int32_t filler_tids[RST_MAX_FILLERS];
  uint64_t filler_stack_tops[RST_MAX_FILLERS];
  /* shared between the restorer's threads */
  uint32_t next_seg;
  int32_t filler_alive[RST_MAX_FILLERS];
  int32_t threads_ready;
  int32_t park;
};

#endif
