// Memory: every mapping of the process and the pages that cannot be had
// again from a file. Checkpoint reads /proc maps+smaps for kinds and flags,
// pagemap for which pages exist, and the pages themselves with
// process_vm_readv (or /proc/PID/mem for unreadable ones). Restore turns the
// list into rst_vma/rst_seg entries for the restorer and opens the files.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "common/xxh64.h"
#include "engine/resources/resources.h"
#include "engine/resources/tree.h"
#include "proc/cow_fork.h"

namespace thaw::engine {

using image::kPageSize;
using image::kSegmentBytes;

namespace {

constexpr uint64_t kPmPresent = 1ull << 63, kPmSwapped = 1ull << 62, kPmFile = 1ull << 61;
constexpr uint64_t kPmPfn = (1ull << 55) - 1;

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// The name a mapped file has now in the directory of its old one, or ""
// when it has none there.
std::string name_in_dir(pid_t pid, const std::string& old, const struct stat& st) {
  std::string path = proc::without_deleted(old);
  std::string dir = path.substr(0, path.rfind('/') + 1);
  DIR* d = ::opendir(cat("/proc/", pid, "/root", dir).c_str());
  if (!d) return "";
  std::string found;
  while (auto* ent = ::readdir(d)) {
    struct stat at;
    if (ent->d_ino == st.st_ino && ::fstatat(::dirfd(d), ent->d_name, &at, AT_SYMLINK_NOFOLLOW) == 0 &&
        at.st_dev == st.st_dev && at.st_ino == st.st_ino) {
      found = dir + ent->d_name;
      break;
    }
  }
  ::closedir(d);
  return found;
}

// A mapping of a file that was deleted from a tmpfs (/dev/shm). One whose
// name in maps no longer leads to it but that still has links is not:
// glibc's sem_open makes a new semaphore under a temporary name, maps it,
// links it to its real name and removes the temporary one, so the maps of
// the process that created a named semaphore show "/dev/shm/sem.XXXXXX
// (deleted)" for the file that others open by name. It is that file, and
// `path` is set to its name now (in the same directory); taken for a
// deleted one, the process would come back with a copy of its own, no
// longer shared with them. Linked elsewhere only, it is refused.
bool deleted_tmpfs_file(pid_t pid, const proc::MapEntry& e, const std::string& mf, const struct stat& st,
                        std::string* path) {
  struct statfs fs;
  if (!proc::unlinked(pid, e.name, st) || ::statfs(mf.c_str(), &fs) != 0 || fs.f_type != TMPFS_MAGIC) return false;
  if (st.st_nlink == 0) return true;
  std::string now = name_in_dir(pid, e.name, st);
  if (now.empty())
    fail("the mapped file of a tmpfs was renamed away from ", proc::without_deleted(e.name), " (it has ",
         st.st_nlink, " links, none in that directory); not supported: a restore could not find it to share it");
  *path = now;
  return false;
}

// A regular file mapped and deleted (no link left): of a disk, or of a
// tmpfs mapped privately (a library unpacked into /tmp and removed once
// loaded); the caller takes a shared mapping of a tmpfs file for
// deleted_tmpfs_file's first.
bool deleted_file(const struct stat& st) { return S_ISREG(st.st_mode) && st.st_nlink == 0; }

bool is_shmem_mapping(const proc::MapEntry& e) {
  return starts_with(e.name, "/memfd:") || (e.shared && (starts_with(e.name, "/dev/zero") ||
                                                         starts_with(e.name, "/SYSV") ||
                                                         starts_with(e.name, "[anon_shmem:")));
}

image::FileId file_id_of(const std::string& path, const struct stat& st) {
  image::FileId f;
  f.path = path;
  f.dev = st.st_dev;
  f.ino = st.st_ino;
  f.size = st.st_size;
  f.mtime_ns = mtime_ns(st);
  return f;
}

uint32_t madv_bits(const proc::MapEntry& e) {
  uint32_t b = 0;
  if (e.has_flag("dc")) b |= image::kMadvDontFork;
  if (e.has_flag("dd")) b |= image::kMadvDontDump;
  if (e.has_flag("hg")) b |= image::kMadvHugePage;
  if (e.has_flag("nh")) b |= image::kMadvNoHugePage;
  if (e.has_flag("wf")) b |= image::kMadvWipeOnFork;
  if (e.has_flag("mg")) b |= image::kMadvMergeable;
  if (e.has_flag("lo")) b |= image::kLocked;
  if (e.has_flag("nr")) b |= image::kNoReserve;
  return b;
}

bool page_is_zero(const unsigned char* p) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < kPageSize / 8; i += 8)
    if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7]) return false;
  return true;
}

class PageReader {
 public:
  explicit PageReader(pid_t pid) : pid_(pid) {
    mem_.reset(::open(cat("/proc/", pid, "/mem").c_str(), O_RDONLY | O_CLOEXEC));
    if (!mem_) fail_errno("open /proc/", pid, "/mem");
  }
  void read(uint64_t addr, void* buf, uint64_t len) {
    iovec local{buf, len}, remote{reinterpret_cast<void*>(addr), len};
    if (::process_vm_readv(pid_, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len)) return;
    // Pages the process cannot read itself (PROT_NONE, write-only) are still
    // readable through /proc/PID/mem, which forces access.
    pread_all(mem_.get(), buf, len, addr, cat("memory at 0x", std::hex, addr));
  }

 private:
  pid_t pid_;
  UniqueFd mem_;
};

// A piece of memory to store: at most kSegmentBytes of one mapping.
struct Chunk {
  size_t vma;
  uint64_t addr, len;
  bool skip_zero;  // anonymous memory: zero pages come back by themselves
  std::vector<image::PageRun> runs;
  std::vector<uint64_t> pfns;  // per page, in a tree (SharedPages); 0: not known
};

// Reads one chunk and stores it: whole, or only its non-zero pages. It is
// read straight into the writer's staging memory where there is some. In a
// tree, pages another process stored already are not stored again: their
// run points at that copy (hashed anew, from what was read here).
void store_chunk(image::Writer& w, PageReader& rd, std::vector<unsigned char>& buf, Chunk& ch, SharedPages* shared) {
  auto* data = static_cast<unsigned char*>(w.stage_space(ch.len));
  if (!data) data = buf.data();
  rd.read(ch.addr, data, ch.len);
  if (!shared || ch.pfns.empty()) shared = nullptr;
  if (!ch.skip_zero && !shared) {
    ch.runs.push_back(w.append(ch.addr, data, ch.len));
    return;
  }
  const uint64_t npages = ch.len / kPageSize;
  auto page_hash = [&](uint64_t i) { return thaw_xxh64(data + i * kPageSize, kPageSize, 0); };
  auto stored_at = [&](uint64_t i, uint64_t* off) {
    if (!shared || ch.pfns[i] == 0) return false;
    std::lock_guard<std::mutex> lock(shared->mu);
    auto it = shared->at.find(ch.pfns[i]);
    if (it == shared->at.end() || it->second.hash != page_hash(i)) return false;
    *off = it->second.offset;
    return true;
  };
  auto skipped = [&](uint64_t i) { return ch.skip_zero && page_is_zero(data + i * kPageSize); };
  uint64_t i = 0, off = 0;
  while (i < npages) {
    uint64_t s = i;
    if (stored_at(i, &off)) {
      uint64_t first = off;
      while (++i < npages && stored_at(i, &off) && off == first + (i - s) * kPageSize) {
      }
      uint64_t len = (i - s) * kPageSize;
      ch.runs.push_back(image::PageRun{ch.addr + s * kPageSize, len, first, image::hash_run(data + s * kPageSize, len)});
      continue;
    }
    if (skipped(i)) {
      i++;
      continue;
    }
    while (++i < npages && !skipped(i) && !stored_at(i, &off)) {
    }
    image::PageRun run = w.append(ch.addr + s * kPageSize, data + s * kPageSize, (i - s) * kPageSize);
    if (shared) {
      std::lock_guard<std::mutex> lock(shared->mu);
      for (uint64_t k = s; k < i; k++)
        if (ch.pfns[k]) shared->at.insert_or_assign(ch.pfns[k], SharedPages::Stored{run.offset + (k - s) * kPageSize, page_hash(k)});
    }
    ch.runs.push_back(std::move(run));
  }
}

// Copying pages out is most of a checkpoint: spread it over the CPUs. Each
// run gets its own place in pages.img, so the order of work does not matter.
void store_chunks(CheckpointContext& c, pid_t from, std::vector<Chunk*>& chunks) {
  if (chunks.empty()) return;
  PageReader rd(from);
  cpu_set_t cpus;
  int ncpu = ::sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  size_t nthreads = std::clamp<size_t>(ncpu, 1, 4);
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr error;
  auto work = [&] {
    std::vector<unsigned char> buf(kSegmentBytes);
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= chunks.size()) return;
      try {
        store_chunk(c.writer, rd, buf, *chunks[i], c.shared_pages.get());
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
        next = chunks.size();
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < nthreads; t++) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

// Reads the pages, letting the target go as early as it can: with a forked
// copy, once the pages the copy lacks are read; without one, once all are.
// They are read into memory (Writer::stage_in_memory), within half of what
// thaw may still allocate (its memory cgroup's limit included), rather than
// the page cache: new page-cache pages are filled one thread at a time, at
// ~1 GB/s here. Half, because a target running on from a copy takes new
// memory for each page it writes.
void store_pages(CheckpointContext& c, std::vector<Chunk>& chunks) {
  c.writer.stage_in_memory(proc::memory_headroom_bytes() / 2);
  std::unique_ptr<proc::CowFork> copy;
  if (c.release_early) {
    std::string why = "asked to (--no-cow)";
    // A process that locks memory does not want page faults; it would take
    // one on each page it writes while the copy lives.
    bool locked = std::any_of(c.m.vmas.begin(), c.m.vmas.end(),
                              [](const image::Vma& v) { return v.madv & image::kLocked; });
    if (locked) why = "it has locked memory (mlock), where a copy would cost it page faults";
    if (c.copy_on_write && !locked) copy = proc::CowFork::make(c.seizure, &why);
    c.pages_from = copy ? "a copy-on-write fork" : cat("the process, held because ", why);
  }
  std::vector<Chunk*> from_target, from_copy;
  for (auto& ch : chunks) {
    bool not_in_copy = c.m.vmas[ch.vma].madv & (image::kMadvDontFork | image::kMadvWipeOnFork);
    (copy && !not_in_copy ? from_copy : from_target).push_back(&ch);
  }
  store_chunks(c, c.pid, from_target);
  if (c.release_early) c.release_early();
  if (copy) {
    store_chunks(c, copy->pid(), from_copy);
    char again[96];
    std::snprintf(again, sizeof again, "; its main thread stopped again %.1f ms to reap it", copy->finish());
    c.pages_from += again;
  }
}

}  // namespace

namespace {

bool filled_by_userfaultfd(const std::vector<proc::MapEntry>& maps) {
  for (const auto& e : maps)
    if (e.has_flag("um")) return true;
  return false;
}

}  // namespace

void dump_memory(CheckpointContext& c) {
  // Memory registered with a userfaultfd is what a lazy thaw restore is
  // still filling from outside (the process holds no userfaultfd itself:
  // that is refused with its fds). Its missing pages are not zero, only not
  // there yet, and pagemap (and a copy-on-write fork) cannot tell: give the
  // pager a moment to finish, then read what is left through the process,
  // which faults it in (a restore with --lazy-faults-only fills nothing by
  // itself).
  for (int waited_ms = 0; filled_by_userfaultfd(c.maps) && waited_ms < 2000; waited_ms += 10) {
    ::usleep(10000);
    c.maps = proc::read_maps(c.pid, true);
  }
  if (filled_by_userfaultfd(c.maps)) {
    // In the process itself: a userfaultfd serves no other process's
    // faults (reading /proc/PID/mem there fails).
    constexpr int kMadvPopulateRead = 22;
    for (const auto& e : c.maps) {
      if (!e.has_flag("um") || !(e.prot & PROT_READ)) continue;
      long r = c.seizure.syscall(c.seizure.leader(), SYS_madvise, e.start, e.end - e.start, kMadvPopulateRead);
      if (r < 0)
        fail("bring in the memory a lazy restore has not filled yet (0x", std::hex, e.start, "-0x", e.end,
             "): ", std::strerror(static_cast<int>(-r)));
    }
  }

  UniqueFd pagemap(::open(cat("/proc/", c.pid, "/pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (!pagemap) fail_errno("open /proc/", c.pid, "/pagemap");
  std::vector<uint64_t> pm;
  std::vector<Chunk> chunks;

  for (const auto& e : c.maps) {
    image::Vma v;
    v.start = e.start;
    v.end = e.end;
    v.prot = e.prot;
    v.shared = e.shared;
    v.growsdown = e.has_flag("gd");
    v.pgoff = e.pgoff;
    v.name = e.name;
    v.madv = madv_bits(e);
    std::string where = cat("mapping 0x", std::hex, e.start, "-0x", e.end, std::dec,
                            e.name.empty() ? "" : " (" + e.name + ")");
    if (e.name == "[vdso]" || e.name == "[vvar]" || e.name == "[vvar_vclock]" || e.name == "[vsyscall]") {
      v.kind = e.name.substr(1, e.name.size() - 2);
      c.m.vmas.push_back(std::move(v));
      continue;
    }
    if (e.has_flag("io") || e.has_flag("pf"))
      fail(where, ": device memory (VM_IO/VM_PFNMAP) is not supported; GPU processes need "
                  "the GPU checkpoint path");
    bool want_private_pages = !e.shared;
    if (e.shared && starts_with(e.name, "/SYSV"))
      // Its pages could be saved, but the restored process would hold a
      // private copy, no longer the segment (shmdt fails, peers lose it).
      fail(where, ": a System V shared memory segment (shmat, key 0x", e.name.substr(5, 8),
           ") is attached; not supported: detach it (shmdt) before the checkpoint, or use "
           "POSIX shared memory (shm_open) or a memfd");
    // Shared anonymous memory also looks like a deleted tmpfs file
    // ("/dev/zero (deleted)" on the kernel's internal shmem mount): it is
    // not one, and must come back as shared anonymous memory, not a memfd.
    std::string path = e.name;  // a mapped file's name, now
    // A mapped file as the mapping holds it, whatever its name leads to now:
    // stat once for every question below.
    std::string mf = cat("/proc/", c.pid, "/map_files/", std::hex, e.start, "-", e.end);
    struct stat st{};
    bool named_file = e.ino != 0 && !e.name.empty() && e.name[0] == '/' && !is_shmem_mapping(e);
    if (named_file && ::stat(mf.c_str(), &st) != 0) fail_errno(where, ": stat mapped file");
    bool deleted_shm = named_file && e.shared &&
                       with_context(where, [&] { return deleted_tmpfs_file(c.pid, e, mf, st, &path); });
    if (path != e.name) v.name = path;
    if (named_file && !deleted_shm && deleted_file(st)) {
      // Its content lives on only in the kernel: it comes back from the
      // image, made anew without a name where it was (shmem.cpp), mapped
      // shared or privately as it was (a private one's own pages on top).
      v.kind = "shmem";
      UniqueFd obj(::open(mf.c_str(), O_RDONLY | O_CLOEXEC));
      if (!obj) fail_errno(where, ": open the deleted file");
      v.shmem = with_context(where, [&] { return dump_deleted_file(c, obj.get(), e.name); });
    } else if (is_shmem_mapping(e) || deleted_shm) {
      v.kind = "shmem";
      UniqueFd obj(::open(mf.c_str(), O_RDONLY | O_CLOEXEC));
      if (!obj) fail_errno(where, ": open shared memory object");
      // A deleted file of a tmpfs (a POSIX semaphore or shm_open object
      // unlinked once every process had it mapped, as Python's
      // multiprocessing does) lives in memory only, like a memfd: it comes
      // back as one, under its base name.
      bool memfd = starts_with(e.name, "/memfd:") || deleted_shm;
      std::string name;
      if (deleted_shm) {
        name = proc::without_deleted(e.name);
        name = name.substr(name.rfind('/') + 1);
      } else if (memfd) {
        name = proc::without_deleted(e.name.substr(7));
      }
      v.shmem = with_context(where, [&] { return dump_shmem_object(c, obj.get(), memfd, name); });
    } else if (named_file) {
      v.kind = "file";
      if (proc::unlinked(c.pid, path, st))
        fail(where, ": the mapped file was removed from this name but has other links (hard links); not supported: "
                    "keep it under its name until after the checkpoint");
      image::FileId id = file_id_of(path, st);
      // Only what keep_tmpfs_file may keep is opened (not every library).
      if (starts_with(path, "/dev/shm/") || (e.shared && uint64_t(st.st_size) <= kKeptSharedFileMax)) {
        UniqueFd file(::open(mf.c_str(), O_RDONLY | O_CLOEXEC));
        if (!file) fail_errno(where, ": open mapped file");
        id.kept = with_context(where, [&] { return keep_tmpfs_file(c, file.get(), path, e.shared); });
      }
      auto it = std::find_if(c.m.mapped_files.begin(), c.m.mapped_files.end(),
                             [&](const image::FileId& f) { return f.dev == id.dev && f.ino == id.ino; });
      if (it == c.m.mapped_files.end()) {
        c.m.mapped_files.push_back(id);
        v.file = static_cast<int>(c.m.mapped_files.size() - 1);
      } else {
        v.file = static_cast<int>(it - c.m.mapped_files.begin());
      }
    } else {
      if (e.shared) fail(where, ": shared mapping of an unknown kind is not supported");
      v.kind = "anon";
    }

    if (want_private_pages) {
      uint64_t npages = (e.end - e.start) / kPageSize;
      pm.resize(npages);
      pread_all(pagemap.get(), pm.data(), npages * 8, (e.start / kPageSize) * 8, "pagemap");
      bool anon = v.kind == "anon";
      auto wanted = [&](uint64_t i) {
        uint64_t x = pm[i];
        if (x & kPmSwapped) return true;
        if (!(x & kPmPresent)) return false;
        return anon || !(x & kPmFile);  // a private copy of a file page
      };
      for (uint64_t i = 0; i < npages;) {
        if (!wanted(i)) {
          i++;
          continue;
        }
        uint64_t s = i;
        while (i < npages && wanted(i)) i++;
        // Zero pages of anonymous memory come back by themselves; a zeroed
        // private copy of a file page does not, so it is stored.
        for (uint64_t at = s * kPageSize; at < i * kPageSize; at += kSegmentBytes) {
          Chunk ch{c.m.vmas.size(), e.start + at, std::min(kSegmentBytes, i * kPageSize - at), anon, {}, {}};
          if (c.shared_pages)
            for (uint64_t k = at / kPageSize; k < (at + ch.len) / kPageSize; k++)
              ch.pfns.push_back((pm[k] & kPmPresent) && !(pm[k] & kPmSwapped) ? pm[k] & kPmPfn : 0);
          chunks.push_back(std::move(ch));
        }
      }
    }
    c.m.vmas.push_back(std::move(v));
  }
  store_pages(c, chunks);
  for (auto& ch : chunks) {
    auto& runs = c.m.vmas[ch.vma].runs;
    runs.insert(runs.end(), ch.runs.begin(), ch.runs.end());
  }
}

// A file mapped only MAP_SHARED (a SQLite WAL database's -shm index, a
// named semaphore) has none of its pages in the image: the process sees
// the file as it is, and other processes writing it is what sharing it is
// for. Its content may change after the checkpoint (a restored copy that
// writes the database changed it for every later restore); only another
// file in its place is refused. A file with a private mapping must be as
// it was: the pages the process never wrote come from it.
std::vector<bool> files_mapped_shared_only(const image::Manifest& m) {
  std::vector<bool> shared_only(m.mapped_files.size(), true);
  for (const auto& v : m.vmas)
    if (v.file >= 0 && size_t(v.file) < shared_only.size() && !v.shared) shared_only[v.file] = false;
  return shared_only;
}

void check_mapped_files(const image::Manifest& m, const nlohmann::json& pool) {
  std::vector<bool> shared_only = files_mapped_shared_only(m);
  for (size_t i = 0; i < m.mapped_files.size(); i++) {
    const auto& f = m.mapped_files[i];
    // A kept one (a file of /dev/shm) is made again where it is gone
    // (restore_shmem_objects) and found by its name, as the processes
    // that open it by name find it: another inode, maybe written since.
    // Mapped privately too, its content must be as it was (one made again
    // has the size and time it had).
    if (f.kept >= 0 && shared_only[i]) continue;
    struct stat st;
    if (::stat(f.path.c_str(), &st) != 0)
      fail_errno("mapped file ", f.path, " is gone (it was mapped at checkpoint)");
    int64_t mtime = mtime_ns(st);
    // SQLite's index follows its path (sqlite_wal.cpp).
    bool replaced = f.kept < 0 && (st.st_ino != f.ino || st.st_dev != f.dev) &&
                    !(shared_only[i] && sqlite_wal_file(m, pool, f.path));
    if (replaced || (!shared_only[i] && (uint64_t(st.st_size) != f.size || mtime != f.mtime_ns)))
      fail("mapped file ", f.path, ": file changed since checkpoint (", file_changes(f.size, f.ino, f.mtime_ns, st),
           "); take a new checkpoint");
  }
}

// Beside the image's mappings a restore makes a few of its own at once (the
// restorer's region, the vdso pieces parked in it, a mapping made elsewhere
// before it is moved into place). Past vm.max_map_count the kernel fails an
// mmap deep in the restorer with a bare ENOMEM, so the count is checked
// before anything is created.
constexpr size_t kRestoreOwnMappings = 16;

void check_mapping_count(size_t mappings, uint64_t max_map_count) {
  size_t need = mappings + kRestoreOwnMappings;
  if (need > max_map_count)
    fail("the image has ", mappings, " mappings and a restore needs up to ", need, " at once, but vm.max_map_count "
         "here is ", max_map_count, "; raise it (sysctl vm.max_map_count=", need, ") and restore again");
}

void check_mapping_count(const image::Manifest& m, size_t extra) {
  std::string text;
  if (!try_read_file("/proc/sys/vm/max_map_count", &text)) return;  // the kernel will say
  check_mapping_count(m.vmas.size() + extra, std::strtoull(text.c_str(), nullptr, 10));
}

uint64_t reserve_free_range(const std::vector<const image::Manifest*>& layouts, uint64_t size, int prot) {
  constexpr uint64_t kTaskSize = 0x7ffffffff000ull, kGuard = 16ull << 20;
  std::vector<std::pair<uint64_t, uint64_t>> used;
  for (const image::Manifest* m : layouts)
    for (const auto& v : m->vmas)
      if (v.kind != "vsyscall") used.emplace_back(v.start, v.end);
  std::sort(used.begin(), used.end());
  uint64_t room = ((size + kPageSize - 1) & ~(kPageSize - 1)) + 2 * kGuard;
  uint64_t prev = 1ull << 32;  // keep clear of low memory
  std::vector<uint64_t> candidates;
  for (auto [s, e] : used) {
    if (s > prev && s - prev >= room) {
      candidates.push_back(prev + kGuard);
      candidates.push_back(s - room + kGuard);
    }
    prev = std::max(prev, e);
  }
  if (kTaskSize > prev && kTaskSize - prev >= room) candidates.push_back(prev + kGuard);
  for (uint64_t c : candidates) {
    c &= ~uint64_t{kPageSize - 1};
    void* p = ::mmap(reinterpret_cast<void*>(c), size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE |
                     (prot == PROT_NONE ? MAP_NORESERVE : 0), -1, 0);
    if (p == reinterpret_cast<void*>(c)) return c;
    if (p != MAP_FAILED) ::munmap(p, size);
  }
  fail("no free address range of ", size, " bytes for the restore");
}

void plan_memory(RestoreContext& r) {
  auto& p = r.plan;
  std::vector<int> file_fds(r.m.mapped_files.size(), -1);
  for (const auto& v : r.m.vmas) {
    if (v.kind == "vdso" || v.kind == "vvar" || v.kind == "vvar_vclock" || v.kind == "vsyscall") continue;
    rst_vma rv{};
    rv.start = v.start;
    rv.end = v.end;
    rv.pgoff = v.pgoff;
    rv.prot = v.prot;
    rv.madv = v.madv;
    rv.fd = -1;
    rv.flags = v.shared ? MAP_SHARED : MAP_PRIVATE;
    if (v.growsdown) rv.flags |= MAP_GROWSDOWN;
    if (v.madv & image::kNoReserve) rv.flags |= MAP_NORESERVE;
    std::vector<image::PageRun> runs = v.runs;
    if (v.kind == "anon") {
      rv.flags |= MAP_ANONYMOUS;
      rv.pgoff = 0;
      if (v.name.rfind("[anon:", 0) == 0 && v.name.size() > 7)
        std::strncpy(rv.anon_name, v.name.substr(6, v.name.size() - 7).c_str(), sizeof rv.anon_name - 1);
      // Pages shared with the rest of a tree: moved, not read.
      plan_inherited(r, v, rv, runs);
    } else if (v.kind == "file") {
      const auto& f = r.m.mapped_files.at(v.file);
      int& fd = file_fds[v.file];
      bool need_write = v.shared && (v.prot & PROT_WRITE);
      if (fd < 0 || need_write) {
        int nfd = ::open(f.path.c_str(), (need_write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        if (nfd < 0) fail_errno("mapping 0x", std::hex, v.start, std::dec, " (", f.path, "): open");
        nfd = r.park_fd(nfd);
        p.close_fds.push_back(nfd);
        if (!need_write) fd = nfd;
        rv.fd = nfd;
      } else {
        rv.fd = fd;
      }
      if (!v.shared) plan_inherited(r, v, rv, runs);
    } else if (v.kind == "shmem") {
      const auto& obj = r.shmem().at(v.shmem);
      if (r.shmem_fds.at(v.shmem) >= 0) {  // a memfd, or any object of a tree
        rv.fd = r.shmem_fds.at(v.shmem);
      } else {
        // Shared anonymous memory: recreated by mmap itself, filled from
        // the object's stored runs that fall inside this mapping.
        rv.flags |= MAP_ANONYMOUS;
        for (const auto& run : obj.runs) {
          uint64_t lo = std::max(run.addr, v.pgoff), hi = std::min(run.addr + run.len, v.pgoff + (v.end - v.start));
          if (lo >= hi) continue;
          if (lo != run.addr || hi != run.addr + run.len)
            fail("mapping 0x", std::hex, v.start, ": shared memory run straddles the mapping; not supported");
          image::PageRun t = run;
          t.addr = v.start + (run.addr - v.pgoff);
          runs.push_back(t);
        }
        rv.pgoff = 0;
      }
    } else {
      fail("image: mapping 0x", std::hex, v.start, " has unknown kind '", v.kind, "'");
    }
    // A lazy mapping is created empty; the pager fills it once the
    // process runs.
    size_t index = &v - r.m.vmas.data();
    if (index < r.lazy.size() && r.lazy[index]) runs.clear();
    uint64_t stored = 0;
    for (const auto& run : runs) stored += run.len;
    rv.fill_huge = (rv.flags & MAP_ANONYMOUS) && !v.shared && !v.growsdown && v.end - v.start >= (4u << 20) &&
                   stored * 2 >= v.end - v.start && !rv.inherit_from;
    // The kernel merges an anonymous mapping into an identical one right
    // below it; the process had them apart, so keep them apart.
    if (!p.vmas.empty()) {
      const rst_vma& b = p.vmas.back();
      // (A moved mapping has an anon_vma of its own already.)
      rv.separate = (rv.flags & MAP_ANONYMOUS) && !v.shared && !v.growsdown && b.end == rv.start &&
                    !rv.inherit_from && !b.inherit_from &&
                    b.flags == rv.flags && b.prot == rv.prot && b.madv == rv.madv && b.fill_huge == rv.fill_huge &&
                    std::strcmp(b.anon_name, rv.anon_name) == 0;
    }
    rv.first_seg = static_cast<uint32_t>(p.segs.size());
    for (const auto& run : runs) {
      p.segs.push_back(rst_seg{run.addr, run.len, run.offset, p.hashes.size()});
      p.hashes.insert(p.hashes.end(), run.hashes.begin(), run.hashes.end());
    }
    rv.nr_segs = static_cast<uint32_t>(runs.size());
    p.vmas.push_back(rv);
  }
}

}  // namespace thaw::engine
