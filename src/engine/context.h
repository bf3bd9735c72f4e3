// What the checkpoint and restore sequences hand to each resource.
#pragma once
#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <set>
#include <string>
#include <vector>

#include "common/unique_fd.h"
#include "engine/restorer/restorer.h"
#include "image/image.h"
#include "proc/procfs.h"
#include "proc/ptrace.h"

namespace thaw::engine {

// The pages a tree's processes share (a fork's copy-on-write memory, not
// written since): by physical page (pagemap's PFN, which only a
// CAP_SYS_ADMIN reader sees), where pages.img holds it. A page is stored
// once, by the first process that has it; the others' runs point there.
struct SharedPages {
  struct Stored {
    uint64_t offset;  // in pages.img
    uint64_t hash;    // of the page's bytes: a page moved by the kernel (compaction, KSM) since
                      // its pagemap was read may have left its PFN to another
  };
  std::mutex mu;
  std::unordered_map<uint64_t, Stored> at;  // by PFN
};

struct CheckpointContext {
  pid_t pid;
  proc::Seizure& seizure;
  image::Writer& writer;
  image::Manifest& m;
  UniqueFd pidfd;
  std::vector<proc::MapEntry> maps;                   // with smaps VmFlags
  std::map<std::pair<uint64_t, uint64_t>, int> shmem_index;  // (dev, ino) -> Manifest::shmem
  // In a process tree, the root's context: its manifest holds the shared
  // memory objects of every process (they may be shared between them).
  CheckpointContext* shmem_owner = nullptr;
  // Set when the target runs on after the checkpoint: dump_memory (last in
  // the sequence) calls it as soon as the rest of the pages can be read
  // without holding the target.
  std::function<void()> release_early;
  bool copy_on_write = true;  // read pages from a forked copy (proc/cow_fork.h) where possible
  std::string pages_from;     // for the stats: where the pages were read
  // TCP connections are recorded as closed (CheckpointOptions::tcp_close)
  // instead of refused.
  bool tcp_close = false;
  // Pipes and unix sockets connected outside the process are recorded as
  // dropped (CheckpointOptions::drop_outside), except on these fds.
  bool drop_outside = false;
  std::set<int> keep_outside;
  std::vector<std::string> notes;  // what the image leaves out by design, for the caller to show
  std::shared_ptr<SharedPages> shared_pages;  // a tree's, one for all its processes; null otherwise
  // Every process of the checkpoint: its pid here -> the pid it is restored
  // with (what a pidfd of it names then). Filled before the files are.
  std::map<pid_t, pid_t> tree_pids;
  // How errors name the process: "" for the target, "child process 12
  // (python3 worker.py)" for one of its descendants.
  std::string who;
};

// Builds the flat block the restorer reads (engine/restorer/restorer.h).
struct RestorerPlan {
  std::vector<rst_vma> vmas;
  std::vector<rst_seg> segs;
  std::vector<uint64_t> hashes;  // per-block XXH3s the segs point into
  std::vector<rst_thread> threads;
  std::vector<rst_siginfo> sigs;
  std::vector<rst_remap> remaps;
  std::vector<int32_t> close_fds;
  std::vector<uint64_t> auxv;
  std::vector<rst_timer> timers;
  std::vector<rst_range> zeros;  // inherited pages this process did not have
  std::vector<rst_lock> locks;   // POSIX locks, taken after the last close (locks.cpp)
  rst_args args{};
};

struct RestoreContext {
  const image::Manifest& m;
  const image::Reader& img;
  std::map<int, int> inherit;   // fd in the image -> fd of ours to install there
  int spare_fd_base = 0;        // thaw's own fds live at or above this number
  std::vector<int> shmem_fds;   // per shmem() entry, -1 if none (anonymous, outside a tree)
  RestorerPlan plan;
  int pages_fd = -1;            // pages.img, as this process holds it now
  // This process's status pipe to thaw (-1: none, a template copy's ns_init):
  // where it reports the files it makes (made_paths.cpp, report_made).
  int status_fd = -1;
  std::vector<bool> lazy;       // per Manifest::vmas entry: left to the pager (engine/pager.h)
  // A template's held process (restore_held): its parent-death signal is
  // SIGKILL (set again after credentials), its copies get the image's
  // (prctl.cpp).
  bool held = false;
  // A process tree (Manifest::children): every process's manifest, the
  // root first, and which of them this one is; per process, our fd of its
  // status pipe (restore.cpp; -1: not held here); the pool's descriptions
  // as this process holds them (open_pool; closed by finish_fd_table).
  std::vector<const image::Manifest*> tree;
  size_t member = 0;
  std::vector<int> status_fds;
  std::vector<int> pool_fds;
  // The caller's stdio is a terminal (the root's stdio_is_tty): then no
  // process of the tree takes a group or session of its own.
  bool on_tty = false;
  // Fork-shared memory (fork_shared.cpp): per root mapping, whether the
  // root stages it (the same in thaw, which leaves it out of the lazy
  // ones), and where it did (0: not); the whole staging area.
  std::vector<bool> stage;
  std::vector<uint64_t> staged;
  uint64_t stage_start = 0, stage_end = 0;
  // The tree's shared descriptions (open_pool): the root's, which a
  // child's "pooled" entries refer to.
  const nlohmann::json& pool() const { return tree.empty() ? m.pool : tree[0]->pool; }
  std::string read_run(const image::PageRun& run) const { return image::read_run(pages_fd, run); }
  // The shared memory objects mappings and memfds refer to: in a tree, the
  // root's (made by it for every process, restore_shmem_objects).
  const std::vector<image::Shmem>& shmem() const { return tree.empty() ? m.shmem : tree[0]->shmem; }
  // Moves fd to a number >= spare_fd_base (closing the original) and keeps it
  // open across the restorer's fd work; returns the new number.
  int park_fd(int fd);
};

// A restored process that never ran: every page in, registers loaded, its
// one thread (`m` must have one) held stopped by the returned seizure (which kills it when
// destroyed). It is our child, in our pid namespace, with whatever pid it
// got (engine/template.h: it only serves to fork copies).
struct HeldProcess {
  pid_t pid = 0;
  std::unique_ptr<proc::Seizure> seizure;
};
// `m` is img's manifest, or a copy with only the main thread.
HeldProcess restore_held(const image::Reader& img, const image::Manifest& m, const std::map<int, int>& inherit);

}  // namespace thaw::engine
