#include "image/image.h"

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/io.h"
#include "common/xxh3.h"
#include "common/xxh64.h"
#include "image/memory_table.h"

namespace thaw::image {

using nlohmann::json;

void remove_tree(const std::string& path) {
  ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

static void fsync_path(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) fail_errno("fsync ", path);
}

static std::string parent_of(const std::string& dir) {
  auto pos = dir.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return dir.substr(0, pos);
}

// What a checkpoint killed before it finished left beside `dir`: its
// temporary directories, named for a thaw no longer running.
static void remove_abandoned_tmps(const std::string& dir) {
  std::string parent = parent_of(dir), prefix = dir.substr(dir.find_last_of('/') + 1) + ".tmp.";
  DIR* d = ::opendir(parent.c_str());
  if (!d) return;
  std::vector<std::string> gone;
  while (auto* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string digits = name.substr(prefix.size());
    if (!std::all_of(digits.begin(), digits.end(), ::isdigit) || digits.size() > 9) continue;
    if (::kill(std::atoi(digits.c_str()), 0) != 0 && errno == ESRCH) gone.push_back(parent + "/" + name);
  }
  ::closedir(d);
  for (const auto& p : gone) remove_tree(p);
}

Writer::Writer(std::string dir) : dir_(std::move(dir)) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  struct stat st;
  if (::lstat(dir_.c_str(), &st) == 0)
    fail("image directory ", dir_, " already exists; remove it or choose another --out");
  struct rlimit fsize;
  if (::getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY) size_limit_ = fsize.rlim_cur;
  remove_abandoned_tmps(dir_);
  tmp_ = cat(dir_, ".tmp.", ::getpid());
  remove_tree(tmp_);
  if (::mkdir(tmp_.c_str(), 0700) != 0) fail_errno("create ", tmp_);
  pages_.reset(::open((tmp_ + "/" + kPagesName).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!pages_) fail_errno("create ", tmp_, "/", kPagesName);
}

Writer::~Writer() {
  if (!committed_) {
    pages_.reset();
    remove_tree(tmp_);
  }
}

static uint64_t page_up(uint64_t n) { return (n + kPageSize - 1) & ~(kPageSize - 1); }

void Writer::check_size_limit(uint64_t end, const char* name) const {
  if (end > size_limit_)
    fail("write ", name, ": the image needs ", end, " bytes in it, over this process's file-size limit of ",
         size_limit_, " bytes (RLIMIT_FSIZE); raise it (ulimit -f unlimited) and take the checkpoint again");
}

PageRun Writer::append(uint64_t addr, const void* data, uint64_t len) {
  uint64_t at = offset_.fetch_add(page_up(len));
  check_size_limit(at + page_up(len), kPagesName);
  PageRun run{addr, len, at, hash_run(data, len)};
  auto* p = static_cast<const char*>(data);
  auto* stage = static_cast<const char*>(stage_.get());
  if (stage && p >= stage && p + len <= stage + stage_.size()) {
    std::lock_guard<std::mutex> lock(staged_mu_);
    staged_.push_back(Staged{at, p, len});
    return run;
  }
  // No writeback is started here: it would make the collection (while the
  // target is held) wait for the disk. commit() writes it all.
  pwrite_all(pages_.get(), data, len, at, kPagesName);
  return run;
}

void Writer::stage_in_memory(uint64_t max_bytes) {
  max_bytes &= ~((2ull << 20) - 1);  // whole huge pages
  if (max_bytes == 0 || stage_.get()) return;
  void* p = ::mmap(nullptr, max_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return;  // an optimisation only: write directly
  ::madvise(p, max_bytes, MADV_HUGEPAGE);
  stage_ = Mapping(p, max_bytes);
}

void* Writer::stage_space(uint64_t len) {
  if (!stage_.get()) return nullptr;
  // Room for whole huge pages starts on one, so that giving it back after
  // the write frees huge pages instead of splitting them.
  const uint64_t kHuge = 2ull << 20, need = page_up(len);
  uint64_t seen = stage_used_.load(), at;
  do {
    at = need % kHuge == 0 ? (seen + kHuge - 1) & ~(kHuge - 1) : seen;
    if (at + need > stage_.size()) return nullptr;  // a smaller chunk may still fit
  } while (!stage_used_.compare_exchange_weak(seen, at + need));
  return static_cast<char*>(stage_.get()) + at;
}

// Runs after the target was released, in file order. The disk starts on
// each 64 MiB while the next is copied, and staged memory is given back as
// soon as it is in the page cache, so the writer never holds much more than
// the image.
void Writer::flush_staged() {
  std::sort(staged_.begin(), staged_.end(), [](const Staged& x, const Staged& y) { return x.offset < y.offset; });
  const uint64_t kWriteback = 64ull << 20;
  uint64_t synced = 0;
  for (const auto& s : staged_) {
    pwrite_all(pages_.get(), s.data, s.len, s.offset, kPagesName);
    ::madvise(const_cast<char*>(s.data), page_up(s.len), MADV_DONTNEED);
    uint64_t end = s.offset + s.len;
    if (end - synced >= kWriteback) {
      ::sync_file_range(pages_.get(), static_cast<off_t>(synced), static_cast<off_t>(end - synced),
                        SYNC_FILE_RANGE_WRITE);
      synced = end;
    }
  }
  staged_.clear();
  stage_.reset();
}

void Writer::commit(Manifest& m) {
  m.pages_bytes = offset_.load();
  flush_staged();
  if (::ftruncate(pages_.get(), m.pages_bytes) != 0) fail_errno("truncate ", kPagesName);
  if (::fsync(pages_.get()) != 0) fail_errno("fsync ", kPagesName);
  pages_.reset();

  // The root's mappings, then each child's (Manifest::children).
  std::string memory = encode_memory_table(m.vmas);
  for (auto& kid : m.children) {
    std::string table = encode_memory_table(kid.vmas);
    kid.memory_table_bytes = table.size();
    memory += table;
  }
  {
    UniqueFd fd(::open((tmp_ + "/" + kMemoryName).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) fail_errno("create ", kMemoryName);
    check_size_limit(memory.size(), kMemoryName);
    write_all(fd.get(), memory.data(), memory.size(), kMemoryName);
    if (::fsync(fd.get()) != 0) fail_errno("fsync ", kMemoryName);
  }
  std::string manifest = json(m).dump();
  {
    UniqueFd fd(::open((tmp_ + "/" + kManifestName).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) fail_errno("create ", kManifestName);
    check_size_limit(manifest.size(), kManifestName);
    write_all(fd.get(), manifest.data(), manifest.size(), kManifestName);
    if (::fsync(fd.get()) != 0) fail_errno("fsync ", kManifestName);
  }
  json header = {{"format", "thaw-image"},
                 {"version", kFormatVersion},
                 {"manifest_bytes", manifest.size()},
                 {"manifest_xxh64", hex64(thaw_xxh64(manifest.data(), manifest.size(), 0))},
                 {"memory_bytes", memory.size()},
                 {"memory_xxh64", hex64(thaw_xxh64(memory.data(), memory.size(), 0))},
                 {"pages_bytes", m.pages_bytes}};
  std::string h = header.dump(1) + "\n";
  {
    UniqueFd fd(::open((tmp_ + "/" + kHeaderName).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) fail_errno("create ", kHeaderName);
    check_size_limit(h.size(), kHeaderName);
    write_all(fd.get(), h.data(), h.size(), kHeaderName);
    if (::fsync(fd.get()) != 0) fail_errno("fsync ", kHeaderName);
  }
  fsync_path(tmp_);
  // Never over something made meanwhile (rename would replace an empty
  // directory in silence).
  if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST || errno == ENOTEMPTY)
      fail("publish image as ", dir_, ": it exists (made while the checkpoint ran); remove it and take the "
           "checkpoint again");
    fail_errno("publish image ", tmp_, " as ", dir_);
  }
  fsync_path(parent_of(dir_));
  committed_ = true;
}

Reader::Reader(const std::string& dir) : dir_(dir) {
  std::string raw;
  if (!try_read_file(dir + "/" + kHeaderName, &raw))
    fail_errno("image ", dir, ": cannot read ", kHeaderName, " (is this a thaw image directory?)");
  json header;
  try {
    header = json::parse(raw);
  } catch (const std::exception& e) {
    fail("image ", dir, ": ", kHeaderName, " is not valid JSON (corrupt image)");
  }
  if (header.value("format", "") != "thaw-image")
    fail("image ", dir, ": not a thaw image (format field missing)");
  int version = header.value("version", 0);
  if (version != kFormatVersion)
    fail("image ", dir, ": format version ", version, " is not supported by this thaw (it reads version ",
         kFormatVersion, "); take the image again with this thaw");
  // A file missing beside a valid header is an image damaged after it was
  // published (the writer publishes all of them at once).
  auto read_part = [&](const char* name) {
    std::string text;
    if (!try_read_file(dir + "/" + name, &text)) {
      if (errno == ENOENT)
        fail_errno("image ", dir, ": cannot read ", name, " (incomplete or damaged image; take the checkpoint again)");
      fail_errno("image ", dir, ": cannot read ", name);
    }
    return text;
  };
  std::string manifest = read_part(kManifestName);
  std::string want = header.value("manifest_xxh64", "");
  if (hex64(thaw_xxh64(manifest.data(), manifest.size(), 0)) != want)
    fail("image ", dir, ": ", kManifestName, " checksum mismatch (corrupt image)");
  try {
    m_ = json::parse(manifest).get<Manifest>();
  } catch (const std::exception& e) {
    fail("image ", dir, ": ", kManifestName, " does not parse: ", e.what());
  }
  std::string memory = read_part(kMemoryName);
  memory_id_ = thaw_xxh64(memory.data(), memory.size(), 0);
  if (memory.size() != header.value("memory_bytes", uint64_t{0}) || hex64(memory_id_) != header.value("memory_xxh64", ""))
    fail("image ", dir, ": ", kMemoryName, " checksum mismatch (corrupt image)");
  uint64_t kids_bytes = 0;
  for (const auto& kid : m_.children) kids_bytes += kid.memory_table_bytes;
  if (kids_bytes > memory.size()) fail("image ", dir, ": ", kMemoryName, " is shorter than its processes' tables (corrupt image)");
  uint64_t at = memory.size() - kids_bytes;
  m_.vmas = decode_memory_table(memory.substr(0, at), cat("image ", dir, ": ", kMemoryName));
  for (auto& kid : m_.children) {
    kid.vmas = decode_memory_table(memory.substr(at, kid.memory_table_bytes),
                                   cat("image ", dir, ": ", kMemoryName, " (process ", kid.process.pid, ")"));
    at += kid.memory_table_bytes;
  }
  pages_.reset(::open((dir + "/" + kPagesName).c_str(), O_RDONLY | O_CLOEXEC));
  if (!pages_) fail_errno("image ", dir, ": open ", kPagesName);
  struct stat st;
  if (::fstat(pages_.get(), &st) != 0) fail_errno("stat ", kPagesName);
  if (static_cast<uint64_t>(st.st_size) != m_.pages_bytes ||
      header.value("pages_bytes", uint64_t{0}) != m_.pages_bytes)
    fail("image ", dir, ": ", kPagesName, " is ", st.st_size, " bytes, manifest says ", m_.pages_bytes,
         " (truncated or corrupt image)");
}

// XXH3 with AVX2 where the CPU has it: the same hash, three times faster.
static uint64_t hash_block(const void* data, uint64_t len) {
  static const bool avx2 = __builtin_cpu_supports("avx2");
  return avx2 ? thaw_xxh3_avx2(data, len) : thaw_xxh3(data, len);
}

std::vector<uint64_t> hash_run(const void* data, uint64_t len) {
  std::vector<uint64_t> h(hash_blocks(len));
  for (uint64_t b = 0; b < h.size(); b++)
    h[b] = hash_block(static_cast<const char*>(data) + b * kHashBlock, std::min(kHashBlock, len - b * kHashBlock));
  return h;
}

bool block_intact(const PageRun& run, uint64_t block, const void* block_data) {
  return block < run.hashes.size() &&
         hash_block(block_data, std::min(kHashBlock, run.len - block * kHashBlock)) == run.hashes[block];
}

bool run_intact(const PageRun& run, const void* data) {
  if (run.hashes.size() != hash_blocks(run.len)) return false;
  for (uint64_t b = 0; b < run.hashes.size(); b++)
    if (!block_intact(run, b, static_cast<const char*>(data) + b * kHashBlock)) return false;
  return true;
}

std::string read_run(int pages_fd, const PageRun& run) {
  std::string data(run.len, '\0');
  pread_all(pages_fd, data.data(), run.len, run.offset, kPagesName);
  if (!run_intact(run, data.data()))
    fail("image: page data checksum mismatch at offset ", run.offset, " of ", kPagesName, " (corrupt image)");
  return data;
}

std::string Reader::read_run(const PageRun& run) const { return image::read_run(pages_.get(), run); }

}  // namespace thaw::image
