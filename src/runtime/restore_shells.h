// The restore shells (container/restore_shell.h) of the snapshot images
// this runtime restores from: one per image, started at its first restore
// (or ahead of it, by prepare) and kept while the image stays the same.
// A snapshot that is recreated gets a new image directory, and one that is
// retired loses it: get() and prune() compare the image found at the path
// with the one the shell read, and replace or stop the shell, so that no
// restore uses a manifest its pages.img no longer matches, and no retired
// image is kept alive on disk by a shell holding it open.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "container/restore_shell.h"
#include "runtime/context.h"

namespace thaw::runtime {

class RestoreShells {
 public:
  explicit RestoreShells(const Context& ctx) : ctx_(ctx) {}

  // The shell of the image now at `image`, started (and the image read)
  // if there is none or the image changed since. Throws with the reason
  // the image cannot be read.
  std::shared_ptr<container::RestoreShell> get(const std::string& image);
  // Starts the shell of `image` now, off the critical path of a call;
  // errors are left for the restore to report.
  void prepare(const std::string& image);
  // Stops the shell of `image` (it was recreated or removed here).
  void forget(const std::string& image);
  // Stops the shells whose image is gone or was replaced, or that ended.
  void prune();
  // Stops every shell.
  void clear();
  // Shells started from now on keep a live template of their image
  // (container::RestoreShell::start): for a long-lived runtime.
  void set_live_templates(bool on) { live_templates_ = on; }

 private:
  // What tells one image at a path from the next: the directory and its
  // header are new files each time an image is written.
  struct Identity {
    dev_t dev = 0;
    ino_t dir_ino = 0, header_ino = 0;
    int64_t header_mtime_ns = 0;
    bool operator==(const Identity&) const = default;
  };
  static std::optional<Identity> identify(const std::string& image);
  struct Entry {
    Identity id;
    std::shared_ptr<container::RestoreShell> shell;
  };

  const Context& ctx_;
  std::mutex mu_;
  std::map<std::string, Entry> shells_;  // by image directory
  std::atomic<bool> live_templates_{false};
};

}  // namespace thaw::runtime
