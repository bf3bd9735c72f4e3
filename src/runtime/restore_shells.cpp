#include "runtime/restore_shells.h"

#include <sys/stat.h>

#include <vector>

#include "common/error.h"
#include "image/image.h"

namespace thaw::runtime {

namespace {

// Reading a torch image takes tens of milliseconds; a shell that has not
// answered in this long is not going to.
constexpr int kShellStartTimeoutMs = 60000;

}  // namespace

std::optional<RestoreShells::Identity> RestoreShells::identify(const std::string& image) {
  struct stat dir, header;
  if (::stat(image.c_str(), &dir) != 0) return std::nullopt;
  if (::stat((image + "/" + image::kHeaderName).c_str(), &header) != 0) return std::nullopt;
  return Identity{dir.st_dev, dir.st_ino, header.st_ino,
                  int64_t(header.st_mtim.tv_sec) * 1000000000 + header.st_mtim.tv_nsec};
}

std::shared_ptr<container::RestoreShell> RestoreShells::get(const std::string& image) {
  auto id = identify(image);
  if (!id) fail("no snapshot image at ", image);
  std::shared_ptr<container::RestoreShell> stale;  // stopped after the lock is released
  // Held while a shell starts: concurrent first restores of one image wait
  // for the one shell rather than each reading the image.
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = shells_.find(image); it != shells_.end()) {
    if (it->second.id == *id && it->second.shell->usable()) return it->second.shell;
    stale = std::move(it->second.shell);
    shells_.erase(it);
  }
  std::shared_ptr<container::RestoreShell> shell =
      container::RestoreShell::start(image, ctx_.thaw_exe, ctx_.log.fd(), kShellStartTimeoutMs, live_templates_);
  shells_[image] = Entry{*id, shell};
  return shell;
}

void RestoreShells::prepare(const std::string& image) {
  try {
    get(image);
  } catch (const std::exception&) {
    // The restore that needs it reports why, and falls back.
  }
}

void RestoreShells::forget(const std::string& image) {
  std::shared_ptr<container::RestoreShell> gone;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = shells_.find(image); it != shells_.end()) {
    gone = std::move(it->second.shell);
    shells_.erase(it);
  }
}

void RestoreShells::prune() {
  std::vector<std::shared_ptr<container::RestoreShell>> gone;
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = shells_.begin(); it != shells_.end();) {
    auto id = identify(it->first);
    if (id && *id == it->second.id && it->second.shell->usable()) {
      ++it;
      continue;
    }
    gone.push_back(std::move(it->second.shell));
    it = shells_.erase(it);
  }
}

void RestoreShells::clear() {
  std::map<std::string, Entry> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(shells_);
  }
}

}  // namespace thaw::runtime
