// thaw's on-disk store ($THAW_HOME, default /var/lib/thaw), laid out as
// docs/runtime-protocol.md says: deployed app versions with a copy of their
// code, snapshots by key (engine image + meta.json), and Volume contents.
// Several thaw processes may share one store: files are replaced atomically,
// and snapshot creation is serialized by a lock file per key.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/unique_fd.h"

namespace thaw::runtime {

// An exclusive flock, released on destruction. Each one opens the lock file
// anew, so it excludes other threads of this process as well as others.
class FileLock {
 public:
  explicit FileLock(const std::string& path);
  // The lock if no one holds it now; nullopt otherwise.
  static std::optional<FileLock> try_lock(const std::string& path);

 private:
  FileLock() = default;
  UniqueFd fd_;
};

class Store {
 public:
  explicit Store(std::string home);
  // $THAW_HOME or /var/lib/thaw.
  static std::string default_home();
  const std::string& home() const { return home_; }

  // Apps and their versions.
  std::vector<std::string> apps() const;
  std::string version_dir(const std::string& app, int version) const;
  std::optional<int> current_version(const std::string& app) const;
  std::vector<int> versions(const std::string& app) const;
  int next_version(const std::string& app) const;
  void set_current(const std::string& app, int version);
  // Stopped apps keep their versions but have no current one.
  void stop_app(const std::string& app);
  nlohmann::json read_version(const std::string& app, int version) const;
  void write_version(const std::string& app, int version, const nlohmann::json& j);
  FileLock lock_app(const std::string& app);
  // Held by a deploy of `version` for as long as it runs, so that
  // `thaw app history` tells a deploy under way from one that died.
  FileLock mark_deploying(const std::string& app, int version);
  bool deploying(const std::string& app, int version) const;

  // Snapshots.
  std::vector<std::string> snapshot_keys() const;
  std::string snapshot_dir(const std::string& key) const;
  std::string snapshot_image(const std::string& key) const { return snapshot_dir(key) + "/image"; }
  bool has_image(const std::string& key) const;
  std::optional<nlohmann::json> read_meta(const std::string& key) const;
  void write_meta(const std::string& key, const nlohmann::json& meta);
  void remove_snapshot(const std::string& key);
  FileLock lock_snapshot(const std::string& key);

  // Volumes: created on first use.
  std::string volume_dir(const std::string& name);

 private:
  std::string home_;
};

// App and Volume names become directory names: letters, digits, . _ - only.
void check_name(const std::string& what, const std::string& name);
// check_name, and as the SDK checks the names of Volumes and Secrets
// (python/thaw/_volume.py check_name): a letter or digit first, 64 at most.
void check_sdk_name(const std::string& what, const std::string& name);
// Where a deployed app's containers' output is kept ($THAW_HOME/logs/<app>.log).
inline std::string app_log_path(const Store& store, const std::string& app) {
  return store.home() + "/logs/" + app + ".log";
}

}  // namespace thaw::runtime
