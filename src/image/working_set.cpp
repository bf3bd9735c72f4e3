#include "image/working_set.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstring>

#include "common/error.h"
#include "common/io.h"
#include "common/unique_fd.h"
#include "common/xxh64.h"
#include "image/schema.h"

namespace thaw::image {

namespace {

// Little-endian, as the machines that restore it.
constexpr char kMagic[8] = {'T', 'H', 'A', 'W', 'W', 'S', 'E', 'T'};
constexpr uint32_t kVersion = 1;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t count;
  uint64_t memory_id;
  uint64_t entries_xxh64;
};
static_assert(sizeof(Header) == 32);

// Far more than an image of any size this thaw writes has blocks in its
// lazy mappings: a bigger count means a damaged file, not a big one.
constexpr uint32_t kMaxEntries = 1u << 26;

}  // namespace

std::vector<uint64_t> load_working_set(const std::string& image_dir, uint64_t memory_id, uint64_t pages_bytes) {
  std::string raw;
  if (!try_read_file(image_dir + "/" + kWorkingSetName, &raw) || raw.size() < sizeof(Header)) return {};
  Header h;
  std::memcpy(&h, raw.data(), sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0 || h.version != kVersion || h.memory_id != memory_id ||
      h.count > kMaxEntries || raw.size() != sizeof h + uint64_t(h.count) * 8)
    return {};
  const char* data = raw.data() + sizeof h;
  if (thaw_xxh64(data, raw.size() - sizeof h, 0) != h.entries_xxh64) return {};
  std::vector<uint64_t> out(h.count);
  std::memcpy(out.data(), data, out.size() * 8);
  for (uint64_t off : out)
    if (off % kPageSize != 0 || off >= pages_bytes) return {};
  return out;
}

bool store_working_set(const std::string& image_dir, uint64_t memory_id, const std::vector<uint64_t>& offsets) {
  if (offsets.size() > kMaxEntries) return false;
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kVersion;
  h.count = static_cast<uint32_t>(offsets.size());
  h.memory_id = memory_id;
  h.entries_xxh64 = thaw_xxh64(offsets.data(), offsets.size() * 8, 0);
  std::string buf(reinterpret_cast<const char*>(&h), sizeof h);
  buf.append(reinterpret_cast<const char*>(offsets.data()), offsets.size() * 8);
  // Several restores may finish at once: each writes its own file, and the
  // last rename wins whole.
  uint32_t salt = 0;
  if (::getrandom(&salt, sizeof salt, 0) != sizeof salt) salt = static_cast<uint32_t>(::getpid());
  std::string final_path = image_dir + "/" + kWorkingSetName;
  std::string tmp = cat(final_path, ".tmp-", ::getpid(), "-", salt);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return false;
  bool ok = true;
  try {
    write_all(fd.get(), buf.data(), buf.size(), tmp);
  } catch (const std::exception&) {
    ok = false;
  }
  fd.reset();
  if (ok && ::rename(tmp.c_str(), final_path.c_str()) == 0) return true;
  ::unlink(tmp.c_str());
  return false;
}

}  // namespace thaw::image
