/* A fake CUDA driver (libcuda.so.1) for tests. It is NOT a model of the real
 * driver: it implements just enough of the driver API's shape that thaw's
 * GPU code runs end to end on a machine without a GPU, with misbehaviour on
 * demand. Only cuInit, cuDriverGetVersion, cuGetErrorName and
 * cuGetProcAddress(_v2) are exported; everything else is reachable only
 * through cuGetProcAddress, as thaw must resolve it.
 *
 * State of each "CUDA process" lives in a file $THAW_FAKE_CUDA_DIR/<pid>,
 * <pid> as the process's own pid namespace sees it (a restored process keeps
 * its pid there), holding the CUprocessState number. A process counts as a
 * CUDA process when it has a libcuda.so* mapped (tests LD_PRELOAD this
 * library into an ordinary program).
 *
 * Loaded into a process without THAW_FAKE_CUDA_DIR (an application, not
 * thaw), it starts a thread named "cuda-restore" that only sleeps, as the
 * real driver has a thread of its own in every CUDA process; it is what
 * cuCheckpointProcessGetRestoreThreadId reports.
 *
 * In a target, FAKE_CUDA_TARGET_UNINITIALIZED=1 starts no restore thread: a
 * process with libcuda loaded and no CUDA state.
 *
 * In a target, FAKE_CUDA_TARGET_BACKUP_MIB=N stands for the driver's host
 * copy of device memory: N MiB of the process's own anonymous memory, filled
 * with a known pattern, that the restore thread must read back at restore, as
 * the real driver's restore thread copies its backup to the device from
 * inside the process. cuCheckpointProcessRestore (with THAW_FAKE_CUDA_BACKUP=1
 * in thaw) then asks that thread through FAKE_CUDA_TARGET_DIR (the target's
 * name for THAW_FAKE_CUDA_DIR) to check every word, waits for its answer, and
 * fails if any word differs: memory the restore has not brought back yet (a
 * lazy restore with nobody serving its faults) hangs or fails the restore.
 *
 * Environment, read in the calling process (thaw):
 *   THAW_FAKE_CUDA_DIR        state directory (default /tmp/thaw-fake-cuda)
 *   THAW_FAKE_CUDA_LOG        append one line per call here
 *   THAW_FAKE_CUDA_VERSION    cuDriverGetVersion result (default 13000)
 *   THAW_FAKE_CUDA_HANG       call that never returns: init, lock, checkpoint,
 *                             restore, unlock, state
 *   THAW_FAKE_CUDA_FAIL       call that returns CUDA_ERROR_ILLEGAL_STATE; "wedge":
 *                             lock returns CUDA_ERROR_OPERATING_SYSTEM and every
 *                             later state query fails the same way
 *   THAW_FAKE_CUDA_STATE_AFTER_CHECKPOINT  state left by checkpoint (default 2)
 *   THAW_FAKE_CUDA_MODEL      device name (default "Fake GPU 80GB")
 *   THAW_FAKE_CUDA_UUID_BYTE  first byte of the device UUID (default 0x11)
 *   THAW_FAKE_CUDA_TOTAL_MIB  device memory (default 81920)
 *   THAW_FAKE_CUDA_PROCESS_MIB  device memory each unsuspended process holds (default 1024)
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum { OK = 0, NOT_INITIALIZED = 3, INVALID_VALUE = 1, OPERATING_SYSTEM = 304, ILLEGAL_STATE = 401, NOT_FOUND = 500 };
enum { RUNNING = 0, LOCKED = 1, CHECKPOINTED = 2, FAILED = 3 };

static const char* env(const char* name, const char* def) {
  const char* v = getenv(name);
  return v && *v ? v : def;
}

static void logf_(const char* fmt, ...) {
  const char* path = getenv("THAW_FAKE_CUDA_LOG");
  if (!path || !*path) return;
  FILE* f = fopen(path, "a");
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fclose(f);
}

/* The misbehaviour asked for, if it is for `call`. */
static int misbehave(const char* call) {
  if (strcmp(env("THAW_FAKE_CUDA_HANG", ""), call) == 0) {
    logf_("hang %s", call);
    for (;;) pause();
  }
  if (strcmp(env("THAW_FAKE_CUDA_FAIL", ""), call) == 0) {
    logf_("fail %s", call);
    return ILLEGAL_STATE;
  }
  return OK;
}

/* The target's stand-in for device memory copied to host (see the top). */
static uint64_t* backup;
static size_t backup_words;

static uint64_t pattern(uint64_t i) {
  uint64_t z = i + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Request and answer files of the restore handshake, named by pid as the
 * target's own namespace sees it (the only pid both sides know): two targets
 * restored at the same time in the same state directory would share names,
 * so tests using the backup restore one at a time. */
static void handshake_path(const char* dir, long pid, const char* what, char* out, size_t n) {
  snprintf(out, n, "%s/%ld.%s", dir, pid, what);
}

/* In the target: answers restore requests by checking the backup. */
static void serve_restores(void) {
  const char* dir = env("FAKE_CUDA_TARGET_DIR", "/tmp/thaw-fake-cuda");
  char req[4200], ans[4200];
  for (;;) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    long pid = getpid();
    handshake_path(dir, pid, "restore", req, sizeof req);
    if (access(req, F_OK) != 0) continue;
    size_t bad = 0;
    for (size_t i = 0; i < backup_words; i++) bad += backup[i] != pattern(i);
    handshake_path(dir, pid, "restored.tmp", ans, sizeof ans);
    FILE* f = fopen(ans, "w");
    if (!f) continue;
    fprintf(f, "%zu %zu\n", backup_words, bad);
    fclose(f);
    char final_[4200];
    handshake_path(dir, pid, "restored", final_, sizeof final_);
    unlink(req);
    rename(ans, final_);
  }
}

static void* restore_thread(void* arg) {
  (void)arg;
  if (backup) serve_restores();
  for (;;) pause();
  return NULL;
}

__attribute__((constructor)) static void loaded(void) {
  logf_("loaded");
  if (getenv("THAW_FAKE_CUDA_DIR")) return;
  /* A target that loaded libcuda and never called cuInit (torch at import). */
  if (getenv("FAKE_CUDA_TARGET_UNINITIALIZED")) return;
  size_t mib_ = (size_t)atol(env("FAKE_CUDA_TARGET_BACKUP_MIB", "0"));
  if (mib_) {
    void* p = mmap(NULL, mib_ << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
      backup = p;
      backup_words = (mib_ << 20) / sizeof(uint64_t);
      for (size_t i = 0; i < backup_words; i++) backup[i] = pattern(i);
    }
  }
  pthread_t t;
  if (pthread_create(&t, NULL, restore_thread, NULL) == 0) pthread_setname_np(t, "cuda-restore");
}

/* The "cuda-restore" thread of pid, or 0. */
static int find_restore_thread(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR* d = opendir(path);
  if (!d) return 0;
  int found = 0;
  struct dirent* e;
  while (!found && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char comm_path[128], comm[32] = "";
    snprintf(comm_path, sizeof comm_path, "/proc/%d/task/%s/comm", pid, e->d_name);
    FILE* f = fopen(comm_path, "r");
    if (!f) continue;
    if (fgets(comm, sizeof comm, f) && strncmp(comm, "cuda-restore", 12) == 0) found = atoi(e->d_name);
    fclose(f);
  }
  closedir(d);
  return found;
}

static int initialized;

EXPORT int cuInit(unsigned flags) {
  (void)flags;
  int rc = misbehave("init");
  if (rc) return rc;
  logf_("cuInit");
  initialized = 1;
  return OK;
}

EXPORT int cuDriverGetVersion(int* v) {
  *v = atoi(env("THAW_FAKE_CUDA_VERSION", "13000"));
  return OK;
}

EXPORT int cuGetErrorName(int rc, const char** s) {
  switch (rc) {
    case OK: *s = "CUDA_SUCCESS"; return OK;
    case INVALID_VALUE: *s = "CUDA_ERROR_INVALID_VALUE"; return OK;
    case NOT_INITIALIZED: *s = "CUDA_ERROR_NOT_INITIALIZED"; return OK;
    case ILLEGAL_STATE: *s = "CUDA_ERROR_ILLEGAL_STATE"; return OK;
    case NOT_FOUND: *s = "CUDA_ERROR_NOT_FOUND"; return OK;
    case OPERATING_SYSTEM: *s = "CUDA_ERROR_OPERATING_SYSTEM"; return OK;
  }
  return INVALID_VALUE;
}

/* ---------------------------------------------------------------- devices */

static int dev_count(int* n) {
  if (!initialized) return NOT_INITIALIZED;
  *n = 1;
  return OK;
}
static int dev_get(int* d, int ordinal) {
  if (ordinal != 0) return INVALID_VALUE;
  *d = 0;
  return OK;
}
static int dev_name(char* name, int len, int d) {
  (void)d;
  snprintf(name, len, "%s", env("THAW_FAKE_CUDA_MODEL", "Fake GPU 80GB"));
  return OK;
}
static int dev_uuid(unsigned char* uuid, int d) {
  (void)d;
  for (int i = 0; i < 16; i++) uuid[i] = (unsigned char)(0x10 + i);
  uuid[0] = (unsigned char)strtol(env("THAW_FAKE_CUDA_UUID_BYTE", "0x11"), NULL, 0);
  return OK;
}
static int dev_attr(int* v, int attr, int d) {
  (void)d;
  *v = attr == 75 ? 9 : 0; /* compute capability 9.0 */
  return OK;
}
static uint64_t mib(const char* name, const char* def) { return strtoull(env(name, def), NULL, 10) << 20; }
static int dev_total(size_t* bytes, int d) {
  (void)d;
  *bytes = mib("THAW_FAKE_CUDA_TOTAL_MIB", "81920");
  return OK;
}
static int ctx_retain(void** ctx, int d) {
  (void)d;
  *ctx = (void*)0x1;
  return OK;
}
static int ctx_release(int d) {
  (void)d;
  return OK;
}
static int ctx_set_current(void* ctx) {
  (void)ctx;
  return OK;
}

/* ------------------------------------------------------ process state */

static const char* state_dir(void) { return env("THAW_FAKE_CUDA_DIR", "/tmp/thaw-fake-cuda"); }

/* pid as its own namespace sees it: the last NSpid field. */
static long ns_pid(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  long last = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "NSpid:", 6) != 0) continue;
    char* p = line + 6;
    char* end;
    for (;;) {
      long v = strtol(p, &end, 10);
      if (end == p) break;
      last = v;
      p = end;
    }
  }
  fclose(f);
  return last;
}

static int maps_libcuda(int pid) {
  char path[64], line[4096];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) found = strstr(line, "/libcuda.so") != NULL;
  fclose(f);
  return found;
}

static void state_path(int pid, char* out, size_t n) { snprintf(out, n, "%s/%ld", state_dir(), ns_pid(pid)); }

/* The process's state; a CUDA process never seen before is RUNNING. */
static int read_state(int pid, int* st) {
  char path[4200];
  state_path(pid, path, sizeof path);
  FILE* f = fopen(path, "r");
  if (f) {
    int ok = fscanf(f, "%d", st) == 1;
    fclose(f);
    if (ok) return OK;
  }
  if (!maps_libcuda(pid)) return NOT_INITIALIZED;
  *st = RUNNING;
  return OK;
}

static void write_state(int pid, int st) {
  char path[4200];
  state_path(pid, path, sizeof path);
  FILE* f = fopen(path, "w");
  if (!f) return;
  fprintf(f, "%d\n", st);
  fclose(f);
}

/* Device memory in use: every known process not CHECKPOINTED holds some. */
static uint64_t used_bytes(void) {
  uint64_t used = 0;
  DIR* d = opendir(state_dir());
  if (!d) return 0;
  struct dirent* e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", state_dir(), e->d_name);
    FILE* f = fopen(path, "r");
    int st = CHECKPOINTED;
    if (f) {
      if (fscanf(f, "%d", &st) != 1) st = CHECKPOINTED;
      fclose(f);
    }
    if (st == RUNNING || st == LOCKED) used += mib("THAW_FAKE_CUDA_PROCESS_MIB", "1024");
  }
  closedir(d);
  return used;
}

static int mem_get_info(size_t* free_, size_t* total) {
  *total = mib("THAW_FAKE_CUDA_TOTAL_MIB", "81920");
  uint64_t used = used_bytes();
  *free_ = used > *total ? 0 : *total - used;
  return OK;
}

static int get_restore_tid(int pid, int* tid) {
  if (!initialized) return NOT_INITIALIZED;
  int st;
  if (read_state(pid, &st) != OK) return NOT_INITIALIZED;
  int t = find_restore_thread(pid);
  if (!t) return NOT_INITIALIZED;
  write_state(pid, st);
  *tid = t;
  logf_("restore_thread_id %d", pid);
  return OK;
}

/* Set by a refused "wedge" lock: as on an H100 for a process that ran cuInit
 * with no GPU visible, every later query of it fails too. */
static int wedged;

static int get_state(int pid, int* st) {
  int rc = misbehave("state");
  if (rc) return rc;
  if (wedged) return OPERATING_SYSTEM;
  return read_state(pid, st);
}

/* One state transition: from `from` to `to`, as call `name`. */
static int transition(const char* name, int pid, int from, int to) {
  int rc = misbehave(name);
  if (rc) return rc;
  int st;
  if (read_state(pid, &st) != OK) return NOT_INITIALIZED;
  logf_("%s %d", name, pid);
  if (st != from) return ILLEGAL_STATE;
  write_state(pid, to);
  return OK;
}

struct lock_args { unsigned timeout_ms, reserved0; uint64_t reserved1[7]; };
struct restore_args { unsigned char (*pairs)[32]; unsigned count; char reserved[44]; uint64_t reserved1; };

static int ck_lock(int pid, struct lock_args* a) {
  if (a) logf_("lock_timeout_ms %u", a->timeout_ms);
  if (strcmp(env("THAW_FAKE_CUDA_FAIL", ""), "wedge") == 0) {
    logf_("fail lock");
    wedged = 1;
    return OPERATING_SYSTEM;
  }
  return transition("lock", pid, RUNNING, LOCKED);
}
static int ck_checkpoint(int pid, void* a) {
  (void)a;
  int after = atoi(env("THAW_FAKE_CUDA_STATE_AFTER_CHECKPOINT", "2"));
  return transition("checkpoint", pid, LOCKED, after);
}
/* Asks the target's restore thread to read its backup back and waits for
 * the answer, as the real cuCheckpointProcessRestore waits for its thread
 * (thaw's watchdog cuts a wait that never ends). */
static int check_backup(int pid) {
  long ns = ns_pid(pid);
  char req[4200], ans[4200];
  handshake_path(state_dir(), ns, "restore", req, sizeof req);
  handshake_path(state_dir(), ns, "restored", ans, sizeof ans);
  unlink(ans);
  FILE* f = fopen(req, "w");
  if (!f) return OPERATING_SYSTEM;
  fclose(f);
  for (;;) {
    f = fopen(ans, "r");
    if (f) break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  size_t words = 0, bad = 0;
  int ok = fscanf(f, "%zu %zu", &words, &bad) == 2;
  fclose(f);
  unlink(ans);
  logf_("backup_checked %d %zu words, %zu differ", pid, words, bad);
  return ok && bad == 0 ? OK : ILLEGAL_STATE;
}

static int ck_restore(int pid, struct restore_args* a) {
  if (a && a->count) {
    char old[40], new_[40];
    for (int i = 0; i < 16; i++) {
      sprintf(old + 2 * i, "%02x", a->pairs[0][i]);
      sprintf(new_ + 2 * i, "%02x", a->pairs[0][16 + i]);
    }
    logf_("restore_pairs %u %s %s", a->count, old, new_);
  }
  if (strcmp(env("THAW_FAKE_CUDA_BACKUP", ""), "1") == 0) {
    int rc = misbehave("restore");
    if (rc) return rc;
    int st;
    if (read_state(pid, &st) != OK) return NOT_INITIALIZED;
    if (st != CHECKPOINTED) return ILLEGAL_STATE;
    rc = check_backup(pid);
    if (rc) return rc;
  }
  return transition("restore", pid, CHECKPOINTED, LOCKED);
}
static int ck_unlock(int pid, void* a) {
  (void)a;
  return transition("unlock", pid, LOCKED, RUNNING);
}

/* ------------------------------------------------------- symbol lookup */

static const struct {
  const char* name;
  void* fn;
} table[] = {
    {"cuDeviceGetCount", (void*)dev_count},
    {"cuDeviceGet", (void*)dev_get},
    {"cuDeviceGetName", (void*)dev_name},
    {"cuDeviceGetUuid", (void*)dev_uuid},
    {"cuDeviceGetAttribute", (void*)dev_attr},
    {"cuDeviceTotalMem", (void*)dev_total},
    {"cuDevicePrimaryCtxRetain", (void*)ctx_retain},
    {"cuDevicePrimaryCtxRelease", (void*)ctx_release},
    {"cuCtxSetCurrent", (void*)ctx_set_current},
    {"cuMemGetInfo", (void*)mem_get_info},
    {"cuCheckpointProcessGetRestoreThreadId", (void*)get_restore_tid},
    {"cuCheckpointProcessGetState", (void*)get_state},
    {"cuCheckpointProcessLock", (void*)ck_lock},
    {"cuCheckpointProcessCheckpoint", (void*)ck_checkpoint},
    {"cuCheckpointProcessRestore", (void*)ck_restore},
    {"cuCheckpointProcessUnlock", (void*)ck_unlock},
};

EXPORT int cuGetProcAddress_v2(const char* symbol, void** pfn, int version, uint64_t flags, int* status) {
  (void)version;
  (void)flags;
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(table[i].name, symbol) == 0) {
      *pfn = table[i].fn;
      if (status) *status = 0;
      return OK;
    }
  *pfn = NULL;
  if (status) *status = 1;
  return NOT_FOUND;
}
