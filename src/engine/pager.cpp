#include "engine/pager.h"

#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

#include "common/error.h"
#include "common/timing.h"
#include "image/image.h"

namespace thaw::engine {

namespace {

using image::kHashBlock;
using image::kPageSize;

constexpr uint64_t kPagesPerBlock = kHashBlock / kPageSize;
// Below this, a mapping is cheaper to fill than to fault in.
constexpr uint64_t kLazyMinBytes = 64ull << 10;
constexpr uint64_t kEagerMinBytes = 128ull << 20;
// The background copy looks for faults again after this much.
constexpr uint64_t kBackgroundStep = 4 * kHashBlock;
// ... and resumes only after this long without one.
constexpr int kQuietMs = 1;

alignas(4096) const char kZeroBlock[kHashBlock] = {};

}  // namespace

std::vector<bool> choose_lazy(const image::Manifest& m) {
  std::vector<bool> lazy(m.vmas.size(), false);
  for (size_t i = 0; i < m.vmas.size(); i++) {
    const auto& v = m.vmas[i];
    // Locked memory must be there before it runs; wipe-on-fork memory must
    // reach a child as zeros, not be served from the image.
    if (v.kind != "anon" || v.shared || v.growsdown || (v.madv & (image::kLocked | image::kMadvWipeOnFork)))
      continue;
    if ((v.prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE)) continue;
    uint64_t stored = 0;
    for (const auto& r : v.runs) stored += r.len;
    // Very large, mostly filled mappings (model weights, big arrays) go in
    // eagerly through huge pages: per byte these fill several times faster
    // in this VM than the 4 KiB pages a userfaultfd copy makes, and such
    // memory tends to be read whole soon (benchmarks.md: a 2 GiB heap read
    // right after restore is ready sooner eagerly, a torch worker's first
    // answer sooner lazily, its 64 MiB heap included).
    bool huge = v.end - v.start >= kEagerMinBytes && stored * 2 >= v.end - v.start;
    lazy[i] = stored >= kLazyMinBytes && !huge;
  }
  return lazy;
}

Pager::Pager(const image::Manifest& m, const std::vector<bool>& lazy, int pages_fd, UniqueFd uffd,
             const std::vector<uint64_t>& working_set) {
  size_t pages = 0, blocks = 0;
  for (size_t i = 0; i < m.vmas.size(); i++) {
    if (!lazy[i]) continue;
    ranges_.emplace_back(m.vmas[i].start, m.vmas[i].end);
    for (const auto& r : m.vmas[i].runs) {
      runs_.push_back(Run{r.addr, r.len, r.offset, &r, pages});
      first_block_.push_back(blocks);
      pages += r.len / kPageSize;
      blocks += r.hashes.size();
      stats_.lazy_bytes += r.len;
    }
  }
  // Mappings come in address order and runs within each too.
  verified_.assign(blocks, 0);
  struct stat st;
  if (::fstat(pages_fd, &st) != 0) fail_errno("stat pages.img");
  if (st.st_size > 0) {
    void* p = ::mmap(nullptr, st.st_size, PROT_READ, MAP_SHARED, pages_fd, 0);
    if (p == MAP_FAILED) fail_errno("map pages.img for the pager");
    pages_ = Mapping(p, st.st_size);
  }
  for (const auto& r : runs_)
    if (r.offset + r.len > pages_.size()) fail("image: page run beyond the end of pages.img (corrupt image)");
  // Blocks of the working set that are in lazy runs (the rest of the image
  // is in already), found through the runs in pages.img order.
  in_working_set_.assign(blocks, 0);
  std::vector<size_t> by_offset(runs_.size());
  for (size_t i = 0; i < runs_.size(); i++) by_offset[i] = i;
  std::sort(by_offset.begin(), by_offset.end(), [&](size_t a, size_t b) { return runs_[a].offset < runs_[b].offset; });
  for (uint64_t off : working_set) {
    auto it = std::upper_bound(by_offset.begin(), by_offset.end(), off,
                               [&](uint64_t o, size_t i) { return o < runs_[i].offset; });
    if (it == by_offset.begin()) continue;
    const Run& r = runs_[*--it];
    if (off >= r.offset + r.len || (off - r.offset) % kHashBlock != 0) continue;
    uint64_t block = (off - r.offset) / kHashBlock;
    uint8_t& in = in_working_set_[first_block_[*it] + block];
    if (in) continue;
    in = 1;
    hot_.emplace_back(*it, block);
  }
  Space s;
  s.fd = std::move(uffd);
  s.handled.assign(pages, 0);
  s.left = pages;
  spaces_.push_back(std::move(s));
}

std::vector<uint64_t> Pager::working_set() const {
  std::vector<uint64_t> out;
  out.reserve(hot_.size() + faulted_.size());
  for (auto [run, block] : hot_) out.push_back(runs_[run].offset + block * kHashBlock);
  out.insert(out.end(), faulted_.begin(), faulted_.end());
  return out;
}

void Pager::note_fault(const Run& r, uint64_t block) {
  uint8_t& in = in_working_set_[first_block_[&r - runs_.data()] + block];
  // A block faults once (the fault brings all of it): one already in the
  // working set was recorded by an earlier restore, its copy not there yet.
  if (in) {
    stats_.early_faults++;
    return;
  }
  in = 1;
  faulted_.push_back(r.offset + block * kHashBlock);
}

std::vector<int> Pager::fds() const {
  std::vector<int> out;
  for (const auto& s : spaces_)
    if (s.fd) out.push_back(s.fd.get());
  return out;
}

void Pager::arm() {
  Space& s = spaces_[0];
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |
                 UFFD_FEATURE_EVENT_UNMAP;
  if (::ioctl(s.fd.get(), UFFDIO_API, &api) != 0)
    fail_errno("userfaultfd: enable fork/mremap/munmap/madvise events (restore with --eager on this kernel)");
  for (auto [start, end] : ranges_) {
    uffdio_register reg{};
    reg.range.start = start;
    reg.range.len = end - start;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(s.fd.get(), UFFDIO_REGISTER, &reg) != 0)
      fail_errno("userfaultfd: register mapping 0x", std::hex, start, "-0x", end);
    if (!(reg.ioctls & (1ull << _UFFDIO_COPY)))
      fail("userfaultfd: mapping 0x", std::hex, start, " cannot be filled with UFFDIO_COPY");
  }
}

const Pager::Run* Pager::run_of(uint64_t orig) const {
  auto it = std::upper_bound(runs_.begin(), runs_.end(), orig, [](uint64_t a, const Run& r) { return a < r.addr; });
  if (it == runs_.begin()) return nullptr;
  --it;
  return orig < it->addr + it->len ? &*it : nullptr;
}

uint64_t Pager::to_image(const Space& s, uint64_t addr) {
  if (!s.moved) return addr;
  auto it = s.layout.upper_bound(addr);
  if (it == s.layout.begin()) return kNowhere;
  --it;
  auto [len, orig] = it->second;
  return addr < it->first + len ? orig + (addr - it->first) : kNowhere;
}

uint64_t Pager::to_process(const Space& s, uint64_t orig) {
  if (!s.moved) return orig;
  for (const auto& [at, piece] : s.layout)
    if (orig >= piece.second && orig < piece.second + piece.first) return at + (orig - piece.second);
  return kNowhere;
}

// mremap moved [from, from+len) to `to` (replacing whatever was there):
// the image memory in the old range is now at the new one, and the old
// range holds none (the unmap event for it that follows must not drop it).
void Pager::move(Space& s, uint64_t from, uint64_t to, uint64_t len) {
  if (!s.moved) {
    for (auto [start, end] : ranges_) s.layout[start] = {end - start, start};
    s.moved = true;
  }
  auto cut = [&](uint64_t lo, uint64_t hi) {  // takes [lo, hi) out, returns the pieces
    Layout out;
    auto it = s.layout.upper_bound(lo);
    if (it != s.layout.begin()) --it;
    while (it != s.layout.end() && it->first < hi) {
      uint64_t at = it->first, len_ = it->second.first, orig = it->second.second;
      if (at + len_ <= lo) {
        ++it;
        continue;
      }
      it = s.layout.erase(it);
      if (at < lo) s.layout[at] = {lo - at, orig};
      if (at + len_ > hi) s.layout[hi] = {at + len_ - hi, orig + (hi - at)};
      uint64_t a = std::max(at, lo), e = std::min(at + len_, hi);
      out[a] = {e - a, orig + (a - at)};
    }
    return out;
  };
  Layout pieces = cut(from, from + len);
  cut(to, to + len);
  for (const auto& [at, piece] : pieces) s.layout[to + (at - from)] = piece;
}

bool Pager::verify_block(const Run& r, uint64_t block) {
  uint8_t& ok = verified_[first_block_[&r - runs_.data()] + block];
  if (!ok) {
    ok = image::block_intact(*r.stored, block, static_cast<const char*>(pages_.get()) + r.offset + block * kHashBlock);
  }
  return ok;
}

// Copies the pages [page_lo, page_hi) of run r that are still missing,
// in as few UFFDIO_COPYs as their addresses allow.
Pager::Copy Pager::fill(Space& s, const Run& r, uint64_t page_lo, uint64_t page_hi, uint64_t& counter) {
  auto mark = [&](uint64_t page) {
    uint8_t& h = s.handled[r.first_page + page];
    if (!h) {
      h = 1;
      s.left--;
    }
  };
  uint64_t p = page_lo;
  while (p < page_hi) {
    if (s.handled[r.first_page + p]) {
      p++;
      continue;
    }
    uint64_t dst = to_process(s, r.addr + p * kPageSize);
    if (dst == kNowhere) {  // the process unmapped it
      mark(p);
      p++;
      continue;
    }
    uint64_t q = p + 1;
    while (q < page_hi && !s.handled[r.first_page + q] && to_process(s, r.addr + q * kPageSize) == dst + (q - p) * kPageSize)
      q++;
    for (uint64_t b = p / kPagesPerBlock; b <= (q - 1) / kPagesPerBlock; b++)
      if (!verify_block(r, b)) return Copy::kFailed;  // corrupt image: never hand out wrong memory
    uffdio_copy c{};
    c.dst = dst;
    c.src = reinterpret_cast<uint64_t>(pages_.get()) + r.offset + p * kPageSize;
    c.len = (q - p) * kPageSize;
    int rc = ::ioctl(s.fd.get(), UFFDIO_COPY, &c);
    int err = rc == 0 ? 0 : errno;
    uint64_t copied = c.copy > 0 ? uint64_t(c.copy) / kPageSize : 0;
    for (uint64_t i = 0; i < copied; i++) mark(p + i);
    counter += copied * kPageSize;
    if (rc == 0) {
      p = q;
      continue;
    }
    p += copied;
    // A partial copy reports EAGAIN too: go on from where it stopped.
    if (err == EAGAIN && copied > 0) continue;
    if (err == EEXIST || err == ENOENT) {
      // Already there, or no longer mapped (its unmap event follows).
      mark(p);
      p++;
      continue;
    }
    if (err == EAGAIN) return Copy::kRetry;  // the mm is changing: read its events first
    if (err == ESRCH) return Copy::kGone;
    return Copy::kFailed;
  }
  return Copy::kOk;
}

void Pager::drop(Space& s, uint64_t start, uint64_t end) {
  for (uint64_t a = start & ~(kPageSize - 1); a < end; a += kPageSize) {
    uint64_t orig = to_image(s, a);
    const Run* r = orig == kNowhere ? nullptr : run_of(orig);
    if (!r) continue;
    uint8_t& h = s.handled[r->first_page + (orig - r->addr) / kPageSize];
    if (!h) {
      h = 1;
      s.left--;
      stats_.dropped_bytes += kPageSize;
    }
  }
}

// The pages around `page`, within its 64 KiB block and its mapping, that
// the image holds nothing for: memory the process had never touched, which
// it now reads or writes in order.
std::pair<uint64_t, uint64_t> Pager::zero_neighbours(const Space& s, uint64_t page) const {
  uint64_t orig = to_image(s, page);
  if (orig == kNowhere) return {page, page + kPageSize};
  auto range = std::upper_bound(ranges_.begin(), ranges_.end(), orig,
                                [](uint64_t a, const std::pair<uint64_t, uint64_t>& r) { return a < r.first; });
  if (range == ranges_.begin()) return {page, page + kPageSize};
  --range;
  if (orig >= range->second) return {page, page + kPageSize};
  // A neighbour qualifies if it is the same piece of the same mapping (no
  // mremap split them) and holds no stored data.
  auto fresh = [&](uint64_t a) {
    uint64_t o = to_image(s, a);
    return o == orig + (a - page) && o >= range->first && o < range->second && !run_of(o);
  };
  uint64_t blk = page & ~(kHashBlock - 1);
  uint64_t lo = page, hi = page + kPageSize;
  while (lo > blk && fresh(lo - kPageSize)) lo -= kPageSize;
  while (hi < blk + kHashBlock && fresh(hi)) hi += kPageSize;
  return {lo, hi};
}

// Maps zero pages at [lo, hi): the shared zero page for a read, fresh
// zeroed pages for a write (which would otherwise fault again at once).
// Returns 0 or the errno of the first page that failed.
int Pager::zero_fill(Space& s, uint64_t lo, uint64_t hi, bool write) {
  int rc;
  if (write) {
    uffdio_copy c{};
    c.dst = lo;
    c.src = reinterpret_cast<uint64_t>(kZeroBlock);
    c.len = hi - lo;
    rc = ::ioctl(s.fd.get(), UFFDIO_COPY, &c);
  } else {
    uffdio_zeropage z{};
    z.range.start = lo;
    z.range.len = hi - lo;
    rc = ::ioctl(s.fd.get(), UFFDIO_ZEROPAGE, &z);
  }
  return rc == 0 ? 0 : errno;
}

void Pager::fault(Space& s, uint64_t addr, bool write) {
  uint64_t page = addr & ~(kPageSize - 1);
  uint64_t orig = to_image(s, page);
  const Run* r = orig == kNowhere ? nullptr : run_of(orig);
  stats_.faults++;
  if (r && !s.handled[r->first_page + (orig - r->addr) / kPageSize]) {
    // The whole hash block around the fault: neighbours are likely next,
    // and the block is verified anyway.
    uint64_t pg = (orig - r->addr) / kPageSize;
    uint64_t lo = pg / kPagesPerBlock * kPagesPerBlock;
    uint64_t hi = std::min(lo + kPagesPerBlock, r->len / kPageSize);
    note_fault(*r, pg / kPagesPerBlock);
    Copy c = fill(s, *r, lo, hi, stats_.fault_bytes);
    if (c == Copy::kRetry) {
      s.retry.emplace_back(addr, write);
      return;
    }
    if (c == Copy::kGone) finish(s);
    if (c == Copy::kFailed) fail_space(s);
    if (c != Copy::kOk) return;
  } else {
    // A page the image holds as zero, or one the process dropped since.
    stats_.zero_faults++;
    auto [lo, hi] = zero_neighbours(s, page);
    if (hi - lo > kPageSize && zero_fill(s, lo, hi, write) == 0) {
      // done, the faulting page with its fresh neighbours
    } else {
      int err = zero_fill(s, page, page + kPageSize, write);
      if (err == EAGAIN) {
        s.retry.emplace_back(addr, write);
        return;
      }
    }
  }
  // The page may have been there already (served for another thread):
  // wake whoever waits on it.
  uffdio_range wake{page, kPageSize};
  ::ioctl(s.fd.get(), UFFDIO_WAKE, &wake);
}

// Reads and handles every message queued on space si; false once the
// space can no longer be served.
bool Pager::drain(size_t si) {
  uffd_msg msgs[16];
  for (;;) {
    ssize_t n = ::read(spaces_[si].fd.get(), msgs, sizeof msgs);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) return false;
    if (spaces_[si].done) return true;
    for (ssize_t i = 0; i < n / ssize_t(sizeof(uffd_msg)); i++) {
      const uffd_msg& msg = msgs[i];
      switch (msg.event) {
        case UFFD_EVENT_PAGEFAULT:
          if (!spaces_[si].done)
            fault(spaces_[si], msg.arg.pagefault.address, msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE);
          break;
        case UFFD_EVENT_FORK: {
          // The child has what the parent had at the fork: the same pages
          // in, the same ones missing, the same moves.
          Space child;
          child.fd = UniqueFd(static_cast<int>(msg.arg.fork.ufd));
          child.layout = spaces_[si].layout;
          child.moved = spaces_[si].moved;
          child.handled = spaces_[si].handled;
          child.left = spaces_[si].left;
          stats_.forks++;
          spaces_.push_back(std::move(child));
          break;
        }
        case UFFD_EVENT_REMAP:
          move(spaces_[si], msg.arg.remap.from, msg.arg.remap.to, msg.arg.remap.len);
          break;
        case UFFD_EVENT_REMOVE:
        case UFFD_EVENT_UNMAP:
          drop(spaces_[si], msg.arg.remove.start, msg.arg.remove.end);
          break;
        default:
          break;
      }
    }
  }
  serve_retries(spaces_[si]);
  return true;
}

// Faults that met a changing mm, once its events are read.
void Pager::serve_retries(Space& s) {
  auto retry = std::move(s.retry);
  s.retry.clear();
  for (auto [addr, write] : retry)
    if (!s.done) fault(s, addr, write);
}

void Pager::background(Space& s) {
  if (s.cursor >= runs_.size()) {  // cannot happen while the counts agree; never spin on it
    fail_space(s);
    return;
  }
  uint64_t budget = kBackgroundStep / kPageSize;
  while (budget > 0 && s.cursor < runs_.size()) {
    const Run& r = runs_[s.cursor];
    uint64_t npages = r.len / kPageSize, p = 0;
    while (p < npages && s.handled[r.first_page + p]) p++;
    if (p == npages) {
      s.cursor++;
      continue;
    }
    uint64_t hi = std::min(npages, p + budget);
    Copy c = fill(s, r, p, hi, stats_.background_bytes);
    if (c == Copy::kRetry) return;  // events first
    if (c == Copy::kGone) finish(s);
    if (c == Copy::kFailed) fail_space(s);
    if (c != Copy::kOk) return;
    budget -= std::min(budget, hi - p);
  }
}

// The next few blocks of the working set, as long as the process (the
// first space) has blocks missing from it.
void Pager::prefetch(Space& s) {
  for (uint64_t n = 0; n < kBackgroundStep / kHashBlock && hot_cursor_ < hot_.size(); n++) {
    auto [run, block] = hot_[hot_cursor_];
    const Run& r = runs_[run];
    uint64_t lo = block * kPagesPerBlock, hi = std::min(lo + kPagesPerBlock, r.len / kPageSize);
    Copy c = fill(s, r, lo, hi, stats_.prefetch_bytes);
    if (c == Copy::kRetry) return;  // events first; this block again next time
    if (c == Copy::kGone) finish(s);
    if (c == Copy::kFailed) fail_space(s);
    if (c != Copy::kOk) return;
    hot_cursor_++;
  }
}

void Pager::finish(Space& s) {
  s.fd.reset();
  s.done = true;
}

// Stops serving a space whose memory cannot be completed. Its fd stays
// open: closing it would let the kernel fill the missing pages with zeros
// under a process that runs on; the owner kills the process instead.
void Pager::fail_space(Space& s) {
  stats_.ok = false;
  s.done = true;
  failed_.push_back(std::move(s.fd));
}

PagerStats Pager::run(int exit_pidfd, bool background_copy) {
  auto t0 = std::chrono::steady_clock::now();
  std::vector<pollfd> pfds;
  std::vector<size_t> idx;
  uint64_t faults_seen = 0;
  for (;;) {
    pfds.clear();
    idx.clear();
    for (size_t i = 0; i < spaces_.size(); i++) {
      Space& s = spaces_[i];
      if (!s.done && s.left == 0 && s.retry.empty()) finish(s);
      if (s.done) continue;
      pfds.push_back(pollfd{s.fd.get(), POLLIN, 0});
      idx.push_back(i);
    }
    if (pfds.empty()) break;
    pfds.push_back(pollfd{exit_pidfd, POLLIN, 0});
    // While the process is faulting it is busy with work that needs its
    // memory: the background copy waits for a pause rather than compete.
    bool quiet = stats_.faults == faults_seen;
    faults_seen = stats_.faults;
    bool retrying = std::any_of(idx.begin(), idx.end(), [&](size_t i) { return !spaces_[i].retry.empty(); });
    // The working set is copied at once: the process is about to need it.
    bool prefetching = background_copy && hot_cursor_ < hot_.size() && !spaces_[0].done && spaces_[0].left > 0;
    int timeout = retrying ? kQuietMs : !background_copy ? -1 : quiet || prefetching ? 0 : kQuietMs;
    int n = ::poll(pfds.data(), pfds.size(), timeout);
    if (n < 0 && errno != EINTR) {
      for (size_t i : idx) fail_space(spaces_[i]);
      break;
    }
    if (n > 0 && pfds.back().revents) {
      // The process is gone; its children die with its namespace.
      for (size_t i : idx) finish(spaces_[i]);
      break;
    }
    for (size_t k = 0; n > 0 && k < idx.size(); k++) {
      if (!pfds[k].revents) continue;
      if (!drain(idx[k]) || (pfds[k].revents & (POLLERR | POLLHUP | POLLNVAL))) finish(spaces_[idx[k]]);
    }
    for (size_t i : idx)
      if (!spaces_[i].done && !spaces_[i].retry.empty()) serve_retries(spaces_[i]);
    if (prefetching && !spaces_[0].done) {
      prefetch(spaces_[0]);
      continue;
    }
    if (!background_copy || !quiet) continue;
    // Parent first: a child's copies only matter once it touches them.
    for (size_t i : idx) {
      Space& s = spaces_[i];
      if (s.done || s.left == 0) continue;
      background(s);
      break;
    }
  }
  stats_.done_ms = ms_since(t0);
  return stats_;
}

}  // namespace thaw::engine
