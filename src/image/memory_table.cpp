#include "image/memory_table.h"

#include <cstring>

#include "common/error.h"

namespace thaw::image {

namespace {

constexpr char kMagic[8] = {'T', 'H', 'A', 'W', 'M', 'E', 'M', '1'};

struct Header {
  char magic[8];
  uint32_t nr_vmas, nr_runs;
  uint64_t nr_hashes, names_bytes;
};

struct VmaRec {
  uint64_t start, end, pgoff;
  int32_t prot;
  uint32_t flags;  // kShared | kGrowsDown
  uint32_t kind;   // index into kKinds
  int32_t file, shmem;
  uint32_t madv;
  uint32_t name_off, name_len;
  uint32_t first_run, nr_runs;
};

struct RunRec {
  uint64_t addr, len, offset, first_hash;
};

static_assert(sizeof(Header) == 32 && sizeof(VmaRec) == 64 && sizeof(RunRec) == 32);

constexpr uint32_t kShared = 1, kGrowsDown = 2;
constexpr const char* kKinds[] = {"anon", "file", "shmem", "vdso", "vvar", "vvar_vclock", "vsyscall"};
constexpr uint32_t kNrKinds = sizeof kKinds / sizeof kKinds[0];

uint32_t kind_index(const std::string& kind) {
  for (uint32_t i = 0; i < kNrKinds; i++)
    if (kind == kKinds[i]) return i;
  fail("mapping kind '", kind, "' has no code in ", kMemoryName);
}

template <typename T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

}  // namespace

std::string encode_memory_table(const std::vector<Vma>& vmas) {
  std::vector<VmaRec> vrecs;
  std::vector<RunRec> rrecs;
  std::vector<uint64_t> hashes;
  std::string names;
  for (const auto& v : vmas) {
    VmaRec r{};
    r.start = v.start;
    r.end = v.end;
    r.pgoff = v.pgoff;
    r.prot = v.prot;
    r.flags = (v.shared ? kShared : 0) | (v.growsdown ? kGrowsDown : 0);
    r.kind = kind_index(v.kind);
    r.file = v.file;
    r.shmem = v.shmem;
    r.madv = v.madv;
    r.name_off = static_cast<uint32_t>(names.size());
    r.name_len = static_cast<uint32_t>(v.name.size());
    names += v.name;
    r.first_run = static_cast<uint32_t>(rrecs.size());
    r.nr_runs = static_cast<uint32_t>(v.runs.size());
    for (const auto& run : v.runs) {
      rrecs.push_back(RunRec{run.addr, run.len, run.offset, hashes.size()});
      hashes.insert(hashes.end(), run.hashes.begin(), run.hashes.end());
    }
    vrecs.push_back(r);
  }
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.nr_vmas = static_cast<uint32_t>(vrecs.size());
  h.nr_runs = static_cast<uint32_t>(rrecs.size());
  h.nr_hashes = hashes.size();
  h.names_bytes = names.size();
  std::string out;
  out.reserve(sizeof h + vrecs.size() * sizeof(VmaRec) + rrecs.size() * sizeof(RunRec) + hashes.size() * 8 +
              names.size());
  put(out, h);
  out.append(reinterpret_cast<const char*>(vrecs.data()), vrecs.size() * sizeof(VmaRec));
  out.append(reinterpret_cast<const char*>(rrecs.data()), rrecs.size() * sizeof(RunRec));
  out.append(reinterpret_cast<const char*>(hashes.data()), hashes.size() * 8);
  out += names;
  return out;
}

std::vector<Vma> decode_memory_table(const std::string& data, const std::string& what) {
  auto bad = [&](const char* why) -> void { fail(what, ": ", why, " (corrupt image)"); };
  Header h;
  if (data.size() < sizeof h) bad("shorter than its header");
  std::memcpy(&h, data.data(), sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) bad("bad magic");
  // Sizes in 64 bits: the counts come from the file and must not overflow.
  uint64_t want = sizeof h + uint64_t(h.nr_vmas) * sizeof(VmaRec) + uint64_t(h.nr_runs) * sizeof(RunRec) +
                  h.nr_hashes * 8 + h.names_bytes;
  if (h.nr_hashes > data.size() || h.names_bytes > data.size() || want != data.size())
    bad("size does not match its counts");
  const char* p = data.data() + sizeof h;
  std::vector<VmaRec> vrecs(h.nr_vmas);
  std::memcpy(vrecs.data(), p, vrecs.size() * sizeof(VmaRec));
  p += vrecs.size() * sizeof(VmaRec);
  std::vector<RunRec> rrecs(h.nr_runs);
  std::memcpy(rrecs.data(), p, rrecs.size() * sizeof(RunRec));
  p += rrecs.size() * sizeof(RunRec);
  const char* hashes = p;
  const char* names = p + h.nr_hashes * 8;

  std::vector<Vma> vmas(h.nr_vmas);
  for (size_t i = 0; i < vrecs.size(); i++) {
    const VmaRec& r = vrecs[i];
    Vma& v = vmas[i];
    if (r.kind >= kNrKinds) bad("unknown mapping kind");
    if (uint64_t(r.name_off) + r.name_len > h.names_bytes) bad("mapping name out of range");
    if (uint64_t(r.first_run) + r.nr_runs > h.nr_runs) bad("run index out of range");
    if (r.end <= r.start) bad("empty mapping");
    v.start = r.start;
    v.end = r.end;
    v.pgoff = r.pgoff;
    v.prot = r.prot;
    v.shared = r.flags & kShared;
    v.growsdown = r.flags & kGrowsDown;
    v.kind = kKinds[r.kind];
    v.name.assign(names + r.name_off, r.name_len);
    v.file = r.file;
    v.shmem = r.shmem;
    v.madv = r.madv;
    v.runs.reserve(r.nr_runs);
    for (uint32_t k = r.first_run; k < r.first_run + r.nr_runs; k++) {
      const RunRec& rr = rrecs[k];
      uint64_t n = hash_blocks(rr.len);
      if (rr.first_hash > h.nr_hashes || n > h.nr_hashes - rr.first_hash) bad("hash index out of range");
      PageRun run{rr.addr, rr.len, rr.offset, std::vector<uint64_t>(n)};
      std::memcpy(run.hashes.data(), hashes + rr.first_hash * 8, n * 8);
      v.runs.push_back(std::move(run));
    }
  }
  return vmas;
}

}  // namespace thaw::image
