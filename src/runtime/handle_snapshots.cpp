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
  // t's own is made: it counts as one of the `max`.
  struct Found {
    std::string key;
    int64_t used;
  };
  std::vector<Found> others;
  for (const auto& key : store.snapshot_keys()) {
    if (key == t.key) continue;
    auto meta = store.read_meta(key);
    if (!meta || !meta->is_object() || !meta->value("handle", false)) continue;
    if (meta->value("app", std::string()) != t.app || meta->value("function", std::string()) != t.fn.name) continue;
    if (!store.has_image(key)) continue;
    others.push_back({key, last_used_ns(store, key)});
  }
  std::sort(others.begin(), others.end(), [](const Found& a, const Found& b) { return a.used < b.used; });
  std::vector<std::string> removed;
  size_t keep = static_cast<size_t>(max - 1);
  for (size_t i = 0; i < others.size() && others.size() - removed.size() > keep; i++) {
    // One being made or recreated right now is not the least recently used.
    auto lock = FileLock::try_lock(store.snapshot_dir(others[i].key) + ".lock");
    if (!lock) continue;
    std::string image = store.snapshot_image(others[i].key);
    store.remove_snapshot(others[i].key);
    removed.push_back(image);
    log.line(cat("Removed memory snapshot ", others[i].key.substr(0, 12), " of a handle of ", t.label(),
                 ", the least recently used (at most ", max,
                 " per function; THAW_MAX_HANDLE_SNAPSHOTS sets how many)."));
  }
  return removed;
}

}  // namespace thaw::runtime
