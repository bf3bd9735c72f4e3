// Memory a process tree shares copy-on-write comes back shared. A fork
// leaves parent and child the same physical pages until either writes one;
// the checkpoint stores such a page once (SharedPages), and a child's run
// then points at the root's copy of it, at the same address. At restore the
// root reads each of its mappings that its descendants share pages of into
// a staging area before it makes its children, so that they inherit those
// pages by fork as the originals had; each process's restorer then moves
// its part of the staging area into place (mremap keeps the sharing) and
// reads only its pages that differ. Without this each child read its own
// copy of everything it shared, and the tree took that much more memory.
#include <fcntl.h>
#include <sys/mman.h>

#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#include "common/error.h"
#include "common/io.h"
#include "common/unique_fd.h"
#include "engine/resources/resources.h"
#include "engine/resources/tree.h"

namespace thaw::engine {

namespace {

constexpr uint64_t kHuge = 2ull << 20, kPageSize = image::kPageSize;
constexpr uint64_t kFillChunk = 4 * image::kHashBlock;

// Private memory a fork hands on (the root's side) or takes (a
// descendant's side): anonymous, or a file's private mapping (its pages a
// process wrote, the relocations of a library, are anonymous copies).
bool forkable(const image::Vma& v) {
  return (v.kind == "anon" || v.kind == "file") && !v.shared && !v.growsdown && !(v.madv & image::kMadvWipeOnFork);
}

// Whether mapping `v` of process `m` maps what the root's mapping `rv`
// maps at the same addresses: anonymous memory, or the same file at the
// same offsets.
bool same_backing(const image::Manifest& root, const image::Vma& rv, const image::Manifest& m, const image::Vma& v) {
  if (v.kind != rv.kind) return false;
  if (v.kind == "anon") return true;
  if (v.file < 0 || rv.file < 0 || size_t(v.file) >= m.mapped_files.size() ||
      size_t(rv.file) >= root.mapped_files.size())
    return false;
  const auto &f = m.mapped_files[v.file], &rf = root.mapped_files[rv.file];
  return f.dev == rf.dev && f.ino == rf.ino && v.pgoff == rv.pgoff + (v.start - rv.start);
}

bool runs_sorted(const image::Vma& v) {
  for (size_t i = 1; i < v.runs.size(); i++)
    if (v.runs[i].addr < v.runs[i - 1].addr + v.runs[i - 1].len) return false;
  return true;
}

// The root's mapping holding [start, end) whole, or -1.
int containing(const image::Manifest& root, uint64_t start, uint64_t end) {
  auto it = std::upper_bound(root.vmas.begin(), root.vmas.end(), start,
                             [](uint64_t a, const image::Vma& v) { return a < v.start; });
  if (it == root.vmas.begin()) return -1;
  --it;
  return it->end >= end ? static_cast<int>(it - root.vmas.begin()) : -1;
}

// Whether every page of `run` is the root's page at that address, read
// from the same place of pages.img: the page the fork left shared.
bool same_as_root(const image::Vma& root_vma, const image::PageRun& run) {
  const auto& rr = root_vma.runs;
  auto it = std::upper_bound(rr.begin(), rr.end(), run.addr,
                             [](uint64_t a, const image::PageRun& r) { return a < r.addr + r.len; });
  uint64_t at = run.addr, end = run.addr + run.len;
  for (; it != rr.end() && at < end; ++it) {
    if (it->addr > at || it->offset + (at - it->addr) != run.offset + (at - run.addr)) return false;
    at = std::min(end, it->addr + it->len);
  }
  return at == end;
}

// The root's mapping a descendant's mapping `v` (of `m`) takes its pages
// from, or -1: the same private memory in both (its runs in order), inside it whole, with at
// least one run the same as the root's.
int inherits_from(const image::Manifest& root, const std::vector<bool>& staged, const image::Manifest& m,
                  const image::Vma& v) {
  if (!forkable(v) || !runs_sorted(v)) return -1;
  int i = containing(root, v.start, v.end);
  if (i < 0 || !staged[i] || !same_backing(root, root.vmas[i], m, v)) return -1;
  for (const auto& run : v.runs)
    if (same_as_root(root.vmas[i], run)) return i;
  return -1;
}

// [lo, hi) ranges covered by `a` and by no run of `b`: where the root has
// pages and the descendant has none (zeros there, or the file's own pages
// in a file's mapping: emptying a range gives back either).
std::vector<rst_range> covered_only_by(const std::vector<image::PageRun>& a, const std::vector<image::PageRun>& b,
                                       uint64_t lo, uint64_t hi) {
  std::vector<rst_range> out;
  auto add = [&](uint64_t s, uint64_t e) {
    if (s >= e) return;
    if (!out.empty() && out.back().addr + out.back().len == s)
      out.back().len += e - s;
    else
      out.push_back(rst_range{s, e - s});
  };
  size_t j = 0;
  for (const auto& r : a) {
    uint64_t s = std::max(lo, r.addr), e = std::min(hi, r.addr + r.len);
    while (j < b.size() && b[j].addr + b[j].len <= s) j++;
    for (size_t k = j; s < e && k < b.size() && b[k].addr < e; k++) {
      add(s, std::min(e, b[k].addr));
      s = std::max(s, b[k].addr + b[k].len);
    }
    add(s, e);
  }
  return out;
}

}  // namespace

std::vector<bool> staged_mappings(const std::vector<const image::Manifest*>& tree) {
  if (tree.size() < 2) return {};
  const image::Manifest& root = *tree[0];
  std::vector<bool> candidate(root.vmas.size()), staged(root.vmas.size(), false);
  for (size_t i = 0; i < root.vmas.size(); i++) {
    const auto& v = root.vmas[i];
    candidate[i] = forkable(v) && !(v.madv & image::kMadvDontFork) && !v.runs.empty() && runs_sorted(v);
  }
  for (size_t k = 1; k < tree.size(); k++)
    for (const auto& v : tree[k]->vmas)
      if (int i = inherits_from(root, candidate, *tree[k], v); i >= 0) staged[i] = true;
  return staged;
}

void stage_shared_memory(RestoreContext& r) {
  const image::Manifest& root = r.m;
  r.staged.assign(root.vmas.size(), 0);
  uint64_t total = 0;
  for (size_t i = 0; i < root.vmas.size(); i++)
    if (i < r.stage.size() && r.stage[i]) total += root.vmas[i].end - root.vmas[i].start + kHuge + kPageSize;
  if (total == 0) return;
  // Files are mapped here already: they must be the ones of the checkpoint
  // (SQLite's WAL files gone since were made again before: restore.cpp).
  check_mapped_files(root);
  // Clear of every process's mappings: no restorer maps over it before it
  // has moved its part away. Where there is no such room, each process
  // reads its own copy, as it would without sharing.
  try {
    r.stage_start = reserve_free_range(r.tree, total, PROT_NONE);
  } catch (const std::exception&) {
    return;
  }
  r.stage_end = r.stage_start + total;
  struct Job {
    const image::PageRun* run;
    char* to;
  };
  std::vector<Job> jobs;
  uint64_t cursor = r.stage_start;
  for (size_t i = 0; i < root.vmas.size(); i++) {
    if (i >= r.stage.size() || !r.stage[i]) continue;
    const auto& v = root.vmas[i];
    uint64_t len = v.end - v.start;
    // Where huge pages would line up with the mapping's: moving it does
    // not split them then.
    // A page of the reservation left between two slots: two mappings
    // side by side would be merged into one, and come back as one.
    uint64_t slot = cursor + ((v.start - cursor) & (kHuge - 1));
    cursor = slot + len + kPageSize;
    UniqueFd file;
    if (v.kind == "file") {
      const auto& f = root.mapped_files.at(v.file);
      file.reset(::open(f.path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!file) fail_errno("mapping 0x", std::hex, v.start, std::dec, " (", f.path, "): open");
    }
    int flags = MAP_PRIVATE | MAP_FIXED | (file ? 0 : MAP_ANONYMOUS) | (v.madv & image::kNoReserve ? MAP_NORESERVE : 0);
    if (::mmap(reinterpret_cast<void*>(slot), len, PROT_READ | PROT_WRITE, flags, file ? file.get() : -1,
               file ? v.pgoff : 0) == MAP_FAILED) {
      // No room (commit limits): each process reads its own copy instead.
      if (errno != ENOMEM) fail_errno("stage shared memory for mapping 0x", std::hex, v.start, ": mmap");
      ::munmap(reinterpret_cast<void*>(r.stage_start), total);
      r.staged.assign(root.vmas.size(), 0);
      r.stage_start = r.stage_end = 0;
      return;
    }
    uint64_t stored = 0;
    for (const auto& run : v.runs) stored += run.len;
    if (!file && len >= (4u << 20) && stored * 2 >= len)
      ::madvise(reinterpret_cast<void*>(slot), len, MADV_HUGEPAGE);
    for (const auto& run : v.runs) jobs.push_back(Job{&run, reinterpret_cast<char*>(slot + (run.addr - v.start))});
    r.staged[i] = slot;
  }
  // Filled by as many threads as there are CPUs, all gone again before the
  // children are made (a thread holds a pid one of them may need).
  cpu_set_t cpus;
  int ncpu = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  size_t nthreads = std::clamp<size_t>(ncpu, 1, RST_MAX_FILLERS + 1);
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr error;
  std::vector<pid_t> tids(nthreads, 0);
  auto work = [&](size_t me) {
    tids[me] = static_cast<pid_t>(::gettid());
    for (size_t j; (j = next.fetch_add(1)) < jobs.size();) {
      try {
        // A few blocks at a time, each checked while it is still in the
        // cache (as the restorer's fill_segment does).
        const image::PageRun& run = *jobs[j].run;
        if (run.hashes.size() != image::hash_blocks(run.len))
          fail("page data at 0x", std::hex, run.addr, ": no checksum for every block (corrupt image)");
        for (uint64_t at = 0; at < run.len; at += kFillChunk) {
          uint64_t len = std::min(kFillChunk, run.len - at);
          pread_all(r.pages_fd, jobs[j].to + at, len, run.offset + at, "page data");
          for (uint64_t b = at; b < at + len; b += image::kHashBlock)
            if (!image::block_intact(run, b / image::kHashBlock, jobs[j].to + b))
              fail("page data checksum mismatch at 0x", std::hex, run.addr + b, " (corrupt image)");
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        next = jobs.size();
      }
    }
  };
  std::vector<std::thread> threads;
  try {
    for (size_t t = 1; t < nthreads && t < jobs.size(); t++) threads.emplace_back(work, t);
  } catch (const std::system_error&) {
    // Fewer threads (a pids limit, say): the ones made take the rest.
  }
  work(0);
  for (auto& t : threads) t.join();
  // A joined thread's id is given back a moment after join returns; a
  // child about to be made with it (clone3 with set_tid) must find it free.
  for (size_t t = 1; t <= threads.size(); t++)
    while (tids[t] && ::syscall(SYS_tgkill, ::getpid(), tids[t], 0) == 0) ::sched_yield();
  if (error) std::rethrow_exception(error);
}

bool plan_inherited(RestoreContext& r, const image::Vma& v, rst_vma& rv, std::vector<image::PageRun>& runs) {
  if (r.staged.empty() || r.tree.empty() || r.stage.size() != r.tree[0]->vmas.size()) return false;
  const image::Manifest& root = *r.tree[0];
  size_t index = &v - r.m.vmas.data();
  int from;
  if (r.member == 0) {
    from = index < r.staged.size() && r.staged[index] ? static_cast<int>(index) : -1;
  } else {
    from = inherits_from(root, r.stage, r.m, v);
  }
  if (from < 0 || !r.staged[from]) return false;
  const image::Vma& rv_root = root.vmas[from];
  rv.inherit_from = r.staged[from] + (v.start - rv_root.start);
  rv.first_zero = static_cast<uint32_t>(r.plan.zeros.size());
  if (r.member != 0) {
    for (const auto& z : covered_only_by(rv_root.runs, v.runs, v.start, v.end)) r.plan.zeros.push_back(z);
    runs.erase(std::remove_if(runs.begin(), runs.end(),
                              [&](const image::PageRun& run) { return same_as_root(rv_root, run); }),
               runs.end());
  } else {
    runs.clear();
  }
  rv.nr_zeros = static_cast<uint32_t>(r.plan.zeros.size() - rv.first_zero);
  return true;
}

}  // namespace thaw::engine
