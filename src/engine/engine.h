// The two sequences, as the CLI and the function runtime call them.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace thaw::image {
class Reader;
}

namespace thaw::engine {

struct PagerStats {
  uint64_t lazy_bytes = 0;      // stored bytes left to the pager
  uint64_t fault_bytes = 0;     // copied because the process touched them
  uint64_t faults = 0, zero_faults = 0;
  // Faults on blocks of the working set that its copy had not reached yet:
  // how many there are depends on which of the two ran faster, not on what
  // the working set holds.
  uint64_t early_faults = 0;
  uint64_t background_bytes = 0;
  uint64_t prefetch_bytes = 0;  // the working set, copied first as the process started
  uint64_t dropped_bytes = 0;   // unmapped or discarded by the process first
  unsigned forks = 0;
  double done_ms = 0;           // from the start of the pager to the last page
  // False if a page could not be given: its block of the image failed its
  // checksum, or the kernel refused a copy. The process is then killed
  // rather than left to run on with memory missing.
  bool ok = true;
};
// What went wrong when !PagerStats::ok.
inline constexpr const char* kPagerFailed =
    "memory the process had not touched yet could not be given (page data checksum mismatch: corrupt image); "
    "the process was stopped";

// A checkpoint refused for a state that passes by itself — a connection
// that lives while it hands over a file descriptor, a child between vfork
// and exec, another checkpoint of the process still reading its pages —
// says so with these words: the same checkpoint a moment later may succeed
// (the runtime tries again, snapshots.cpp).
inline constexpr const char* kPassingState = "a passing state";
inline bool passing_state(const std::string& reason) { return reason.find(kPassingState) != std::string::npos; }

struct CheckpointOptions {
  pid_t pid = 0;
  std::string out;
  bool kill = false;  // kill the target once the image is safely written
  // A target that runs on is held only until a copy-on-write fork of it
  // exists (proc/cow_fork.h), not until all its pages are read.
  bool copy_on_write = true;
  // TCP connections (established, connecting, closing) come back closed,
  // as connections their peer reset (their peers are outside; the first
  // read or write fails with ECONNRESET, then reads see EOF), instead of
  // failing the checkpoint: what a client that reconnects needs, and what
  // memory snapshots of serverless functions do. CRIU calls it --tcp-close.
  bool tcp_close = false;
  // Pipes and unix sockets whose other end a process outside the target
  // holds are recorded as dropped (restored as if that process had closed
  // its end: EOF, EPIPE) instead of "external" (given by the restoring
  // side, `--inherit-fd`), except on the fds in keep_outside, which the
  // restoring side gives (a function container's stdio and channel). A
  // dup of a kept fd shares its replacement.
  bool drop_outside = false;
  std::set<int> keep_outside{0, 1, 2};
  // Run once the process state is captured, before the image is committed,
  // while every process of the target is still held (a target that runs on
  // is then not let go early): for what the caller saves beside the image
  // and must match it (the runtime's copy of a container's own /dev/shm).
  // What it throws fails the checkpoint, which lets the target go as any
  // failure does.
  std::function<void()> while_held;
};

struct CheckpointStats {
  double seize_ms = 0, dump_ms = 0, write_ms = 0, total_ms = 0;
  // How long the target was held (from the start, GPU lock included): with
  // it left running, only until everything was captured, not written.
  double stopped_ms = 0;
  std::string pages_from;  // "a copy-on-write fork", or why the target was held while its pages were read
  uint64_t pages_bytes = 0;
  double gpu_ms = 0;        // the driver's lock + checkpoint (0: not a CUDA process)
  std::string gpu_detail;   // where gpu_ms went
  uint64_t gpu_bytes = 0;   // device memory it moved into host memory
  size_t threads = 0, vmas = 0, fds = 0;  // of every process
  size_t processes = 1;                   // the target and its running descendants
  // What the image leaves out by design ("fd 5 (socket:[12]): TCP
  // 10.0.0.2:41000 -> 10.0.0.9:5432: restored closed"), for the caller to show.
  std::vector<std::string> notes;
};

CheckpointStats checkpoint(const CheckpointOptions& o);

struct RestoreOptions {
  std::string dir;
  // An image already read and verified (a server restoring one snapshot
  // many times keeps it): skips reading and parsing the manifest again.
  const image::Reader* preloaded = nullptr;
  std::map<int, int> inherit;  // fd in the image -> our fd to give it
  bool detach = false;         // return once it runs instead of waiting for it
  std::string pidfile;         // where to write the host pid of the restored process
  // The caller holds SIGINT/SIGTERM/SIGHUP/SIGQUIT (common/interrupt.h):
  // one that comes before the process runs stops the restore, and the
  // half-restored process with it, instead of leaving it parked.
  bool stop_on_interrupt = false;
  // Extra namespaces (CLONE_NEWNS, CLONE_NEWUTS, ...) to create besides the
  // pid namespace, and code to run inside them (as pid 1, before the process
  // is created): a container's mounts, hostname.
  int namespaces = 0;
  std::function<void()> in_namespace;
  // An empty /dev/shm of its own (a tmpfs in its mount namespace): the
  // named semaphores and shared memory it had come from the image and are
  // shared with no other restore of it. Without, restores running at once
  // share them by name, as the processes of one host do.
  bool private_shm = false;
  // Leave the large anonymous mappings empty and fill them from the image
  // as the process runs (engine/pager.h): it runs again sooner. The pager
  // is a thread of the caller until every page is in, or with `detach` a
  // daemon process of its own. Falls back to filling everything first
  // where the kernel has no userfaultfd.
  bool lazy = true;
  // With `lazy`: also copy in the background what the process does not
  // touch. Off, only faults are served (tests of the fault paths, diagnosis).
  bool lazy_background = true;
  // With `lazy` (and `lazy_background`): copy the image's working set
  // (image/working_set.h) first, at once, and add to it the blocks this
  // restore faults on.
  bool working_set = true;
  // With `lazy`, for an image with GPU state: leave its memory to the pager
  // too, started before the driver's restore, so that the driver's fixed
  // cost (contexts, channels) runs while memory is still coming in. Off by
  // default until measured on a GPU: the driver reads its host copy of
  // device memory from pages the pager may not have given yet.
  bool gpu_lazy = false;
  // Called once the process runs again, before waiting for it.
  std::function<void(const struct RestoreResult&)> on_running;
};

struct RestoreResult {
  pid_t host_pid = 0;     // the restored process, as this pid namespace sees it
  pid_t init_pid = 0;     // pid 1 of its namespace (our child)
  double ready_ms = 0;    // until the process runs again
  // Where the time went: reading and checking the image, the new process's
  // own setup (fds, attributes), the restorer's memory work, the rest of the
  // restorer (threads, mm), and loading registers from outside.
  double load_ms = 0, setup_ms = 0, memory_ms = 0, threads_ms = 0, finish_ms = 0;
  double gpu_ms = 0;      // the driver's restore + unlock, part of finish_ms (0: no GPU state)
  std::string gpu_detail;  // where gpu_ms went
  int exit_status = 0;    // when waited for: its exit code, 128+signal if killed
  uint64_t lazy_bytes = 0;  // stored bytes left to the pager when the process started
  PagerStats pager;         // when waited for: what the pager did
};

RestoreResult restore(const RestoreOptions& o);

// A human-readable or JSON summary of an image.
std::string inspect(const std::string& dir, bool json);

}  // namespace thaw::engine
