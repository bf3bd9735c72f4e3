#include "runtime/serialized_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <set>

#include "common/error.h"
#include "container/fsutil.h"

namespace thaw::runtime {

using nlohmann::json;

namespace {

std::string dir_of(const Store& store) { return store.home() + "/serialized"; }

// The pickles (file names) an app's current version names.
void names_of_current(const Store& store, std::set<std::string>& out) {
  for (const auto& app : store.apps()) {
    auto v = store.current_version(app);
    if (!v) continue;
    json record = store.read_version(app, *v);
    const json& functions = record.value("introspection", json::object()).value("functions", json::object());
    for (const auto& [name, entry] : functions.items()) {
      if (!entry.is_object()) continue;
      auto s = entry.find("serialized_function");
      if (s == entry.end() || !s->is_object()) continue;
      std::string sha = s->value("sha256", std::string());
      std::string path = s->value("path", std::string());
      if (!sha.empty()) out.insert(sha + ".pkl");
      if (auto slash = path.rfind('/'); slash != std::string::npos) out.insert(path.substr(slash + 1));
    }
  }
}

// Unlinks path if no process holds it; true when it did.
bool remove_unheld(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return false;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return false;
  // Still the file of that name (not one written again meanwhile), unlinked
  // while locked: a process that opened it before sees it gone once it
  // has its lock, and writes it again.
  struct stat held, named;
  if (::fstat(fd.get(), &held) != 0 || ::lstat(path.c_str(), &named) != 0) return false;
  if (held.st_ino != named.st_ino || held.st_dev != named.st_dev) return false;
  return ::unlink(path.c_str()) == 0;
}

}  // namespace

UniqueFd hold_serialized(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fd;
  while (::flock(fd.get(), LOCK_SH) != 0)
    if (errno != EINTR) return UniqueFd();
  return fd;
}

DeployingSerialized::DeployingSerialized(const Store& store) {
  std::string dir = dir_of(store);
  container::mkdir_p(dir);
  std::string path = dir + "/.lock";
  fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd_) fail_errno("open ", path);
  while (::flock(fd_.get(), LOCK_SH) != 0)
    if (errno != EINTR) fail_errno("lock ", path, " (shared)");
}

int sweep_serialized(const Store& store, Log& log) {
  std::string dir = dir_of(store);
  if (!container::exists(dir)) return 0;
  std::vector<std::string> names = container::list_dir(dir);
  bool any = false;
  for (const auto& n : names) any = any || n != ".lock";
  if (!any) return 0;
  std::string lock_path = dir + "/.lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock) fail_errno("open ", lock_path);
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) return 0;  // a deploy is under way: a later sweep
  std::set<std::string> used;
  try {
    names_of_current(store, used);
  } catch (const std::exception& e) {
    // Which pickles a version needs is not known: keep them all.
    log.line(cat("Warning: serialized function files in ", dir, " are kept: ", e.what()));
    return 0;
  }
  int removed = 0;
  for (const auto& n : names) {
    std::string path = dir + "/" + n;
    bool pickle = n[0] != '.' && n.size() > 4 && n.compare(n.size() - 4, 4, ".pkl") == 0;
    // A writer's temporary file (.<sha>.<pid>.<thread>.tmp) is renamed into
    // place within moments; one an hour old was left by a writer that died.
    bool stale_tmp = false;
    if (n[0] == '.' && n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) {
      struct stat st;
      stale_tmp = ::lstat(path.c_str(), &st) == 0 && std::time(nullptr) - st.st_mtime > 3600;
    }
    if ((pickle && !used.count(n)) || stale_tmp) removed += remove_unheld(path) ? 1 : 0;
  }
  if (removed)
    log.line(cat("Removed ", removed, " serialized function file", removed == 1 ? "" : "s", " from ", dir,
                 " that no deployed version or running process uses."));
  return removed;
}

}  // namespace thaw::runtime
