// On-disk image directory: thaw-image.json (format header with the checksums
// of the others), manifest.json, memory.bin (mappings and page runs),
// pages.img (page-aligned page data).
#pragma once
#include <atomic>
#include <mutex>
#include <vector>
#include <string>

#include "common/mapping.h"
#include "common/unique_fd.h"
#include "image/schema.h"

namespace thaw::image {

constexpr const char* kHeaderName = "thaw-image.json";
constexpr const char* kManifestName = "manifest.json";
constexpr const char* kPagesName = "pages.img";

// Writes an image under a temporary name next to `dir`, and publishes it with
// rename() only in commit(): a crash or an error never leaves a partial image
// under the final name. Destroying an uncommitted writer removes the
// temporary directory.
class Writer {
 public:
  explicit Writer(std::string dir);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Appends page-aligned data to pages.img; returns the run describing it.
  // Safe to call from several threads at once (each gets its own place).
  PageRun append(uint64_t addr, const void* data, uint64_t len);
  // Staging: page data is collected into memory the writer owns (huge
  // pages, up to `max_bytes`) and written to pages.img only in commit(). A
  // checkpoint whose target runs on uses it: writing new page-cache pages
  // runs at ~1 GB/s here, serialised by the file's lock, and would keep the
  // target held; reading its memory straight into huge pages costs next to
  // nothing over reading it at all.
  void stage_in_memory(uint64_t max_bytes);
  // Page-aligned room for `len` bytes in the staging memory, or nullptr when
  // staging is off or full. append() of data inside it keeps the bytes
  // there until commit() instead of writing them.
  void* stage_space(uint64_t len);
  void commit(Manifest& m);
  uint64_t pages_bytes() const { return offset_.load(); }
  const std::string& dir() const { return dir_; }

 private:
  // Writing past RLIMIT_FSIZE would kill thaw with SIGXFSZ mid-image
  // (leaving its temporary directory), so each write is checked first.
  void check_size_limit(uint64_t end, const char* name) const;

  std::string dir_, tmp_;
  UniqueFd pages_;
  uint64_t size_limit_ = UINT64_MAX;  // RLIMIT_FSIZE's soft limit
  std::atomic<uint64_t> offset_{0};
  struct Staged {
    uint64_t offset;
    const char* data;
    uint64_t len;
  };
  Mapping stage_;
  std::atomic<uint64_t> stage_used_{0};
  std::mutex staged_mu_;
  std::vector<Staged> staged_;  // guarded by staged_mu_
  bool committed_ = false;
  void flush_staged();
};

class Reader {
 public:
  // Validates the header, the manifest checksum and the page data size.
  explicit Reader(const std::string& dir);
  const Manifest& manifest() const { return m_; }
  int pages_fd() const { return pages_.get(); }
  const std::string& dir() const { return dir_; }
  // Names this image's memory (the XXH64 of memory.bin, which holds a hash
  // of every page block): files kept beside the image tie themselves to it.
  uint64_t memory_id() const { return memory_id_; }
  // Reads and checks one run (used for small objects: shmem, pipe data).
  std::string read_run(const PageRun& run) const;

 private:
  std::string dir_;
  Manifest m_;
  UniqueFd pages_;
  uint64_t memory_id_ = 0;
};

void remove_tree(const std::string& path);
// The per-block XXH3-64s of `len` bytes, as PageRun::hashes holds them.
std::vector<uint64_t> hash_run(const void* data, uint64_t len);
// Whether `data` (run.len bytes) matches every block hash of the run.
bool run_intact(const PageRun& run, const void* data);
// Whether `block_data` (block `block` of the run) matches its hash.
bool block_intact(const PageRun& run, uint64_t block, const void* block_data);
// Reads one run from a pages.img fd and checks its hash.
std::string read_run(int pages_fd, const PageRun& run);

}  // namespace thaw::image
