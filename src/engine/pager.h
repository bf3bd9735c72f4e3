// Lazy memory restore. Most of a restore's time is the kernel handing out
// fresh pages (in this VM about 1 GB/s), and a process answering its first
// request touches a small part of its memory (a torch worker: ~10 of 118
// MiB). So the large private anonymous mappings are left empty at restore
// and registered with userfaultfd; the process runs at once, its first
// touches are served from the image on demand, and the pager copies the
// rest in the background until every page is in. Then it closes the
// userfaultfd, which unregisters the mappings: nothing of thaw is left.
//
// The pager follows the process's changes to its memory while it works
// (fork, mremap, munmap, MADV_DONTNEED): a page the process dropped reads as
// zero, never as the image's content, and a forked child is served too.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <vector>

#include "common/mapping.h"
#include "common/unique_fd.h"
#include "engine/engine.h"
#include "image/schema.h"

namespace thaw::engine {

// Which of the image's mappings a lazy restore leaves to the pager (true at
// that index): private, anonymous, readable and writable, not locked, not a
// stack that grows, with enough stored data to be worth a fault.
std::vector<bool> choose_lazy(const image::Manifest& m);


class Pager {
 public:
  // `uffd`: a userfaultfd created inside the restored process, not yet
  // initialised. `pages_fd`: the image's pages.img. `working_set`: the
  // blocks (pages.img offsets) earlier restores touched first, in that
  // order (image/working_set.h); copied before the rest, without waiting
  // for the process to pause.
  Pager(const image::Manifest& m, const std::vector<bool>& lazy, int pages_fd, UniqueFd uffd,
        const std::vector<uint64_t>& working_set = {});
  Pager(const Pager&) = delete;
  Pager& operator=(const Pager&) = delete;

  // Enables the events and registers the lazy mappings; the process must
  // not run yet.
  void arm();
  // Serves faults and copies in the background until every page is in, or
  // the process is gone (`exit_pidfd`, a pidfd of it, becomes readable).
  // Does not throw: a page it cannot provide is reported in the stats.
  // Without `background` only faults are served (to test the fault paths,
  // and to diagnose): then it ends only when the process does.
  PagerStats run(int exit_pidfd, bool background = true);
  uint64_t lazy_bytes() const { return stats_.lazy_bytes; }
  // The working set given, then the blocks this restore faulted on that it
  // did not hold, in fault order; grew: there were such blocks.
  std::vector<uint64_t> working_set() const;
  bool working_set_grew() const { return !faulted_.empty(); }
  // The fds the pager works with (to keep when closing everything else).
  std::vector<int> fds() const;

 private:
  struct Run {
    uint64_t addr, len, offset;
    const image::PageRun* stored;  // in the manifest, which outlives the pager
    size_t first_page;  // index of its first page in the handled maps
  };
  // Where the image's memory is in a space once the process has moved some
  // of it (mremap): address now -> (length, address in the image). Empty
  // until the first move; before it every address is its own.
  using Layout = std::map<uint64_t, std::pair<uint64_t, uint64_t>>;
  static constexpr uint64_t kNowhere = ~0ull;
  // One address space the pager serves: the restored process, then each
  // child it forks while pages are still missing.
  struct Space {
    UniqueFd fd;
    Layout layout;
    bool moved = false;
    std::vector<uint8_t> handled;      // per stored page: copied or dropped
    uint64_t left = 0;                 // pages not yet handled
    size_t cursor = 0;                 // next run for the background copy
    std::vector<std::pair<uint64_t, bool>> retry;  // faults to serve again (address, write)
    bool done = false;
  };
  // kGone: the address space no longer exists (exit, exec); kFailed: see
  // PagerStats::ok.
  enum class Copy { kOk, kRetry, kGone, kFailed };

  const Run* run_of(uint64_t orig) const;
  // kNowhere where there is no image memory (any more).
  static uint64_t to_image(const Space& s, uint64_t addr);
  static uint64_t to_process(const Space& s, uint64_t orig);
  void move(Space& s, uint64_t from, uint64_t to, uint64_t len);
  bool verify_block(const Run& r, uint64_t block);
  Copy fill(Space& s, const Run& r, uint64_t page_lo, uint64_t page_hi, uint64_t& counter);
  // Adds a faulted block to the working set, or counts an early fault.
  void note_fault(const Run& r, uint64_t block);
  void drop(Space& s, uint64_t start, uint64_t end);
  void fault(Space& s, uint64_t addr, bool write);
  std::pair<uint64_t, uint64_t> zero_neighbours(const Space& s, uint64_t page) const;
  int zero_fill(Space& s, uint64_t lo, uint64_t hi, bool write);
  bool drain(size_t si);
  void serve_retries(Space& s);
  void background(Space& s);
  void prefetch(Space& s);
  void finish(Space& s);
  void fail_space(Space& s);

  std::vector<Run> runs_;               // sorted by address
  std::vector<std::pair<uint64_t, uint64_t>> ranges_;  // the registered mappings
  std::vector<uint8_t> verified_;       // per hash block of runs_, in order
  std::vector<size_t> first_block_;     // per run: its first block in verified_
  Mapping pages_;
  std::vector<Space> spaces_;
  std::vector<UniqueFd> failed_;        // spaces given up on, kept registered
  // The working set as (run, block) to copy first, and how far that got.
  std::vector<std::pair<size_t, uint64_t>> hot_;
  size_t hot_cursor_ = 0;
  std::vector<uint8_t> in_working_set_;  // per hash block of runs_
  std::vector<uint64_t> faulted_;        // pages.img offsets of new blocks
  PagerStats stats_;
};

}  // namespace thaw::engine
