#include "runtime/handle_snapshots.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "common/error.h"
#include "common/unique_fd.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

std::string used_file(const Store& store, const std::string& key) { return store.snapshot_dir(key) + "/used"; }

// When the snapshot was last restored, else made (ns since the epoch).
int64_t last_used_ns(const Store& store, const std::string& key) {
  struct stat st;
  if (::stat(used_file(store, key).c_str(), &st) != 0 &&
      ::stat((store.snapshot_dir(key) + "/meta.json").c_str(), &st) != 0)
    return 0;
  return int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

int max_handle_snapshots_from_env() {
  const char* v = std::getenv("THAW_MAX_HANDLE_SNAPSHOTS");
  if (!v || !*v) return kDefaultMaxHandleSnapshots;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < 1 || n > 100000)
    fail("THAW_MAX_HANDLE_SNAPSHOTS=", v, ": give a whole number of snapshots per function, from 1 to 100000");
  return static_cast<int>(n);
}

bool note_handle_snapshot_used(const Store& store, const std::string& key) {
  // A timestamp, not a write of meta.json; and never a new file, which
  // could land in a directory being removed.
  return ::utimensat(AT_FDCWD, used_file(store, key).c_str(), nullptr, 0) == 0;
}

void mark_handle_snapshot_made(const Store& store, const std::string& key) {
  UniqueFd fd(::open(used_file(store, key).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
}

std::vector<std::string> make_room_for_handle_snapshot(Store& store, const Target& t, int max, Log& log) {
  struct Found {
    std::string key;
    int64_t used;
  };
  // Those with an image, and the records of refused ones (a meta.json
  // saying why, so that calls do not try again): each kind capped at max,
  // t's own counted in its kind.
  std::vector<Found> images, refused;
  for (const auto& key : store.snapshot_keys()) {
    if (key == t.key) continue;
    auto meta = store.read_meta(key);
    if (!meta || !meta->is_object() || !meta->value("handle", false)) continue;
    if (meta->value("app", std::string()) != t.app || meta->value("function", std::string()) != t.fn.name) continue;
    if (store.has_image(key))
      images.push_back({key, last_used_ns(store, key)});
    else if (meta->contains("create_failed"))
      refused.push_back({key, last_used_ns(store, key)});
  }
  // t's own was made, unless its record says it was refused.
  auto own_meta = store.read_meta(t.key);
  bool own_image = !(own_meta && own_meta->is_object() && own_meta->contains("create_failed"));
  std::vector<std::string> removed;
  auto evict = [&](std::vector<Found>& found, size_t keep, bool with_image) {
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.used < b.used; });
    size_t gone = 0;
    for (size_t i = 0; i < found.size() && found.size() - gone > keep; i++) {
      // One being made or recreated right now is not the least recently used.
      auto lock = FileLock::try_lock(store.snapshot_dir(found[i].key) + ".lock");
      if (!lock) continue;
      std::string image = store.snapshot_image(found[i].key);
      store.remove_snapshot(found[i].key);
      gone++;
      if (!with_image) continue;  // only a record: its handle tries again when next called
      removed.push_back(image);
      log.line(cat("Removed memory snapshot ", found[i].key.substr(0, 12), " of a handle of ", t.label(),
                   ", the least recently used (at most ", max,
                   " per function; THAW_MAX_HANDLE_SNAPSHOTS sets how many)."));
    }
  };
  evict(images, static_cast<size_t>(max - (own_image ? 1 : 0)), true);
  // Records are small, and one removed costs a whole snapshot attempt when
  // its handle is next called: many more are kept.
  evict(refused, static_cast<size_t>(max) * kRefusedRecordsPerSnapshot - (own_image ? 0 : 1), false);
  return removed;
}

}  // namespace thaw::runtime
